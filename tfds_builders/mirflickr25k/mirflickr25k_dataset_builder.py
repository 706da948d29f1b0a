"""MIRFLICKR-25000 (Huiskes & Lew, ACM MIR 2008): 25,000 Flickr images with multi-label concept annotations.

Two label sets: `labels24` (the 24 "potential label" concepts) and `labels38` (those plus the 14 strict `_r1`
variants). The release has no train/test split, so a seeded 80/20 permutation of the image numbers is used.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

import tfds_common as common

POTENTIAL_LABELS = (
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake", "male",
    "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures", "sunset", "transport",
    "tree", "water",
)
STRICT_LABELS = tuple(f"{c}_r1" for c in (
    "baby", "bird", "car", "clouds", "dog", "female", "flower", "male", "night", "people", "portrait", "river",
    "sea", "tree",
))
SPLIT_FRACTIONS = {"train": 0.8, "test": 0.2}
SPLIT_SEED = 0
IMAGE_NAME = re.compile(r"im([1-9][0-9]*)\.jpg")

LAYOUT = """\
<manual_dir>/
  mirflickr/im1.jpg ... im25000.jpg   (mirflickr25k.zip extracted)
  annotations/<concept>.txt           (mirflickr25k_annotations_v080.zip extracted into annotations/):
                                      one image number per line, for the 24 concepts and the 14 <concept>_r1"""


@dataclasses.dataclass(eq=False)
class MirflickrConfig(tfds.core.BuilderConfig):
    """The concept files that make up the label vector, in label order."""

    concepts: tuple = POTENTIAL_LABELS


def read_concept(path: epath.PathLike) -> set[int]:
    """Image numbers listed in one annotation file; raises naming file and line for a non-number."""
    path = epath.Path(path)
    numbers = set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            if not line.strip().isdigit():
                raise common.DataLayoutError(f"{path.name} line {number}: {line!r} is not an image number")
            numbers.add(int(line))
    return numbers


def image_numbers(images_dir: epath.Path) -> list[int]:
    """Numbers N of the im<N>.jpg files present; other files are ignored."""
    return sorted(int(m.group(1)) for p in images_dir.iterdir() if (m := IMAGE_NAME.fullmatch(p.name)))


def split_numbers(numbers, seed: int = SPLIT_SEED) -> dict[str, list[int]]:
    """Image numbers per split: 80/20 of a permutation seeded by `seed` (20,000/5,000 for the full release)."""
    return common.seeded_split(numbers, SPLIT_FRACTIONS, seed)


class Builder(tfds.core.GeneratorBasedBuilder):
    """MIRFLICKR-25000 multi-label concepts."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: seeded 80/20 split, seed 0."}
    BUILDER_CONFIGS = [
        MirflickrConfig(name="labels24", description="The 24 potential-label concepts.",
                        concepts=POTENTIAL_LABELS),
        MirflickrConfig(name="labels38", description="The 24 concepts plus the 14 strict (_r1) ones.",
                        concepts=POTENTIAL_LABELS + STRICT_LABELS),
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download mirflickr25k.zip and mirflickr25k_annotations_v080.zip (MIRFLICKR site, Leiden University) and arrange:
{LAYOUT}
"""

    def _info(self) -> tfds.core.DatasetInfo:
        concepts = self.builder_config.concepts
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image_id": np.int32,
                "labels": tfds.features.Tensor(shape=(len(concepts),), dtype=np.bool_),
            }),
            supervised_keys=("image", "labels"),
            homepage="https://press.liacs.nl/mirflickr/",
            metadata=common.new_metadata(concepts=list(concepts), split_seed=SPLIT_SEED),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        concepts = self.builder_config.concepts
        files = [f"annotations/{c}.txt" for c in concepts]
        root = common.require(dl_manager.manual_dir, ["mirflickr", *files], LAYOUT)
        numbers = image_numbers(root / "mirflickr")
        present = set(numbers)
        members = []
        for name in files:
            listed = read_concept(root / name)
            unknown = sorted(listed - present)
            if unknown:
                raise common.DataLayoutError(
                    f"{name} lists images with no mirflickr/im<N>.jpg: {unknown[:20]}. Expected layout:\n{LAYOUT}"
                )
            members.append(listed)
        labels = {n: np.array([n in m for m in members]) for n in numbers}
        common.reset_skipped(self.info.metadata)
        return {
            split: self._generate_examples(root / "mirflickr", [(n, labels[n]) for n in part])
            for split, part in split_numbers(numbers).items()
        }

    def _generate_examples(self, images: epath.Path, rows: list[tuple[int, np.ndarray]]):
        for number, labels in rows:
            name = f"im{number}.jpg"
            image = common.load_jpeg(images / name, f"mirflickr/{name}", self.info.metadata)
            if image is not None:
                yield number, {"image": image, "image_id": number, "labels": labels}
