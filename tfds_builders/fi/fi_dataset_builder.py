"""FI (You et al., AAAI 2016): Flickr and Instagram images in Mikels' eight emotion categories.

Images come from the FI release (`<Emotion>/<file>.jpg`); the train/test split from the JSON lists widely used
with it (`["Amusement/<file>.jpg", 0]`). The JSON label is checked against the folder, since a mismatch means a
list from another release.
"""
from __future__ import annotations

import json

import tensorflow_datasets as tfds
from etils import epath

import tfds_common as common

EMOTIONS = common.MIKELS8_NAMES  # FI's label order: the JSON's label i is EMOTIONS[i]
SPLIT_FILES = {"train": "train.json", "test": "test.json"}

LAYOUT = """\
<manual_dir>/
  train.json, test.json   JSON lists of ["<Emotion>/<file>.jpg", <label 0-7>], labels in the order
                          amusement, anger, awe, contentment, disgust, excitement, fear, sadness
  <Emotion>/<file>.jpg    the FI images, at exactly the paths the JSON lists (e.g. Amusement/1234_5678_z.jpg)"""


def read_split(path: epath.PathLike) -> list[tuple[str, int]]:
    """(relative image path, label) rows of one split file; raises `DataLayoutError` naming the row for a
    malformed entry, an unknown label, a duplicate, or a label that disagrees with the folder name."""
    path = epath.Path(path)
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise common.DataLayoutError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, list):
        raise common.DataLayoutError(f"{path}: expected a JSON list of [path, label] rows")
    rows, seen = [], set()
    for index, row in enumerate(data):
        where = f"{path.name} row {index}"
        if not (isinstance(row, list) and len(row) == 2 and isinstance(row[0], str)
                and isinstance(row[1], int) and not isinstance(row[1], bool)):
            raise common.DataLayoutError(f"{where}: {row!r} is not [\"<Emotion>/<file>.jpg\", <int label>]")
        relpath, label = row
        if not 0 <= label < len(EMOTIONS):
            raise common.DataLayoutError(f"{where}: label {label} of {relpath} is outside 0-{len(EMOTIONS) - 1}")
        folder = relpath.split("/", 1)[0] if relpath.count("/") == 1 else None
        if folder is None or folder.lower() != EMOTIONS[label]:
            raise common.DataLayoutError(
                f"{where}: {relpath} has label {label} ({EMOTIONS[label]}) but its folder is not "
                f"{EMOTIONS[label].capitalize()}/"
            )
        if relpath in seen:
            raise common.DataLayoutError(f"{where}: {relpath} is listed twice")
        seen.add(relpath)
        rows.append((relpath, label))
    return rows


class Builder(tfds.core.GeneratorBasedBuilder):
    """FI with the published train/test lists."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Request the FI images from the authors (You et al., AAAI 2016), get the train/test JSON lists, and arrange:
{LAYOUT}
"""

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "label": tfds.features.ClassLabel(names=EMOTIONS),
                "file_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
            metadata=common.new_metadata(),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = common.require(dl_manager.manual_dir, SPLIT_FILES.values(), LAYOUT)
        splits = {split: read_split(root / name) for split, name in SPLIT_FILES.items()}
        both = sorted({p for p, _ in splits["train"]} & {p for p, _ in splits["test"]})
        if both:
            raise common.DataLayoutError(f"images listed in both train.json and test.json: {', '.join(both[:20])}")
        missing = [p for rows in splits.values() for p in common.missing_images(root, [r[0] for r in rows])]
        common.raise_if_missing_images(missing, "rows of train.json/test.json", LAYOUT)
        common.reset_skipped(self.info.metadata)
        return {split: self._generate_examples(root, rows) for split, rows in splits.items()}

    def _generate_examples(self, root: epath.Path, rows: list[tuple[str, int]]):
        for relpath, label in rows:
            image = common.load_jpeg(root / relpath, relpath, self.info.metadata)
            if image is not None:
                yield relpath, {"image": image, "label": label, "file_name": relpath}
