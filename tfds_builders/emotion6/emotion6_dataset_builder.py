"""Emotion6 (Peng et al., CVPR 2015): 1,980 Flickr images with a 7-way emotion distribution and valence/arousal.

Emotion6 ships no split, so this builder makes a deterministic 70/10/20 split stratified by search keyword;
`split_files` gives that assignment without building, for trainers that need it up front.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

import tfds_common as common
from affect_zoo.emotion import EMOTION6

KEYWORDS = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
# Distribution entries in ground_truth.txt column order, which is EMOTION6's label order (checked on the header).
EMOTIONS = EMOTION6.names
SPLIT_FRACTIONS = {"train": 0.7, "validation": 0.1, "test": 0.2}
SPLIT_SEED = 2015
VA_RANGE = (1.0, 9.0)
GROUND_TRUTH = "ground_truth.txt"

LAYOUT = """\
<manual_dir>/
  ground_truth.txt     tab-separated, one header line: [image_filename] [valence] [arousal]
                       [prob. anger] [prob. disgust] [prob. fear] [prob. joy] [prob. sadness]
                       [prob. surprise] [prob. neutral]; rows like `anger/1.jpg<TAB>3.1<TAB>...`
  images/<keyword>/<n>.jpg   keyword in anger, disgust, fear, joy, sadness, surprise"""


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of ground_truth.txt."""

    filename: str  # "<keyword>/<n>.jpg", relative to images/
    keyword: str
    valence: float
    arousal: float
    distribution: np.ndarray  # (7,) float32 in EMOTIONS order, sums to 1


def _header_emotions(header: list[str]) -> list[str]:
    """Emotion names of the probability columns, e.g. "[prob. anger]" → "anger"."""
    return [h.strip().strip("[]").removeprefix("prob.").strip().lower() for h in header[3:]]


def read_ground_truth(path: epath.PathLike) -> list[Row]:
    """Parses ground_truth.txt; raises `DataLayoutError` naming the line for any malformed row."""
    path = epath.Path(path)
    lines = path.read_text().splitlines()
    if not lines:
        raise common.DataLayoutError(f"{path} is empty; expected a header line and one row per image")
    header = lines[0].split("\t")
    if len(header) != 3 + len(EMOTIONS) or _header_emotions(header) != list(EMOTIONS):
        raise common.DataLayoutError(
            f"{path} line 1: header {header} does not list filename, valence, arousal, then {list(EMOTIONS)}"
        )
    rows, seen = [], set()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        fields = line.rstrip("\r").split("\t")
        if len(fields) != len(header):
            raise common.DataLayoutError(f"{where}: {len(fields)} columns, expected {len(header)}: {line!r}")
        filename = fields[0].strip()
        keyword = filename.split("/", 1)[0]
        if keyword not in KEYWORDS or filename.count("/") != 1:
            raise common.DataLayoutError(f"{where}: {filename!r} is not <keyword>/<n>.jpg with keyword in {KEYWORDS}")
        if filename in seen:
            raise common.DataLayoutError(f"{where}: {filename} is listed twice")
        seen.add(filename)
        try:
            valence, arousal, *probs = (float(x) for x in fields[1:])
        except ValueError as e:
            raise common.DataLayoutError(f"{where} ({filename}): {e}") from None
        for label, value in (("valence", valence), ("arousal", arousal)):
            if not VA_RANGE[0] <= value <= VA_RANGE[1]:
                raise common.DataLayoutError(f"{where} ({filename}): {label} {value} outside {list(VA_RANGE)}")
        distribution = common.normalized_distribution(probs, f"{where} ({filename})")
        rows.append(Row(filename, keyword, valence, arousal, distribution))
    return rows


def split_files(ground_truth_rows: list[Row], seed: int = SPLIT_SEED) -> dict[str, list[str]]:
    """File names per split: 70/10/20 within each keyword after a permutation seeded by `seed`.

    330 images per keyword give 231/33/66, i.e. 1,386/198/396 in total.
    """
    strata: dict[str, list[str]] = {}
    for row in ground_truth_rows:
        strata.setdefault(row.keyword, []).append(row.filename)
    return common.stratified_split(strata, SPLIT_FRACTIONS, seed)


class Builder(tfds.core.GeneratorBasedBuilder):
    """Emotion6 from a local copy of the published release."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: stratified 70/10/20 split, seed 2015."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download Emotion6 (Cornell, Peng et al. CVPR 2015) and point --manual_dir at the folder that holds it,
unchanged:
{LAYOUT}
"""

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "distribution": tfds.features.Tensor(shape=(len(EMOTIONS),), dtype=np.float32),
                "valence": np.float32,
                "arousal": np.float32,
                "keyword": tfds.features.ClassLabel(names=KEYWORDS),
                "file_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "distribution"),
            homepage="https://openaccess.thecvf.com/content_cvpr_2015/html/Peng_A_Mixed_Bag_2015_CVPR_paper.html",
            metadata=common.new_metadata(emotions=list(EMOTIONS), split_seed=SPLIT_SEED),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = common.require(dl_manager.manual_dir, [GROUND_TRUTH, "images"], LAYOUT)
        rows = {row.filename: row for row in read_ground_truth(root / GROUND_TRUTH)}
        common.raise_if_missing_images(
            common.missing_images(root / "images", rows), f"{GROUND_TRUTH} rows", LAYOUT
        )
        common.reset_skipped(self.info.metadata)
        return {
            split: self._generate_examples(root / "images", [rows[f] for f in files])
            for split, files in split_files(list(rows.values())).items()
        }

    def _generate_examples(self, images: epath.Path, rows: list[Row]):
        for row in rows:
            image = common.load_jpeg(images / row.filename, f"images/{row.filename}", self.info.metadata)
            if image is None:
                continue
            yield row.filename, {
                "image": image,
                "distribution": row.distribution,
                "valence": row.valence,
                "arousal": row.arousal,
                "keyword": row.keyword,
                "file_name": row.filename,
            }
