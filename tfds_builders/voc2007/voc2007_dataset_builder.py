"""PASCAL VOC2007 image classification as a 20-way multi-label task, from a local VOCdevkit.

Labels come from the per-class lists `ImageSets/Main/<class>_<split>.txt` (rows `<id> <1|-1|0>`). The VOC
"difficult" value 0 (only difficult instances present) is neither a positive nor a negative for the usual mAP,
so it is kept as its own mask instead of being folded into the labels.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

import tfds_common as common

CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
# TFDS split → VOC image set. VOC's trainval is read as split="train+validation" (not stored twice).
SPLITS = {"train": "train", "validation": "val", "test": "test"}
TRAINVAL = "train+validation"
VALUES = {"1": 1, "-1": -1, "0": 0}

LAYOUT = """\
<manual_dir>/                 the extracted VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar, i.e.
  VOCdevkit/VOC2007/          (or these two folders directly in <manual_dir>, or in <manual_dir>/VOC2007)
    JPEGImages/<id>.jpg
    ImageSets/Main/<class>_<set>.txt   rows `<id> <1|-1|0>` for each of the 20 classes and set in
                                       train, val, test (trainval, if present, must equal train + val)"""


def find_root(manual_dir: epath.PathLike) -> epath.Path:
    """The VOC2007 folder inside `manual_dir` (the folder holding ImageSets/Main)."""
    manual_dir = epath.Path(manual_dir)
    for candidate in (manual_dir / "VOCdevkit" / "VOC2007", manual_dir / "VOC2007", manual_dir):
        if (candidate / "ImageSets" / "Main").is_dir():
            return candidate
    raise FileNotFoundError(f"no ImageSets/Main under {manual_dir}. Expected layout:\n{LAYOUT}")


def read_image_set(main_dir: epath.PathLike, image_set: str) -> tuple[list[str], np.ndarray]:
    """Sorted image ids of a VOC image set and their (N, 20) int8 values (1, -1, or 0 = difficult) in CLASSES order.

    Every class file must list the same ids; a missing file, a malformed row, or an id present in some class
    files only is an error naming the file (and row or id).
    """
    main_dir = epath.Path(main_dir)
    per_class = []
    for cls in CLASSES:
        path = main_dir / f"{cls}_{image_set}.txt"
        if not path.exists():
            raise FileNotFoundError(f"missing {path}. Expected layout:\n{LAYOUT}")
        values = {}
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2 or fields[1] not in VALUES:
                raise common.DataLayoutError(f"{path.name} line {number}: {line!r} is not `<id> <1|-1|0>`")
            if fields[0] in values:
                raise common.DataLayoutError(f"{path.name} line {number}: image {fields[0]} is listed twice")
            values[fields[0]] = VALUES[fields[1]]
        per_class.append((path.name, values))
    ids = sorted(per_class[0][1])
    for name, values in per_class[1:]:
        differ = sorted(set(ids) ^ set(values))
        if differ:
            raise common.DataLayoutError(
                f"{name} and {per_class[0][0]} list different images, e.g. {', '.join(differ[:10])}"
            )
    table = np.array([[values[i] for _, values in per_class] for i in ids], dtype=np.int8).reshape(len(ids), -1)
    return ids, table


def check_trainval(main_dir: epath.Path, sets: dict[str, tuple[list[str], np.ndarray]]) -> None:
    """If the trainval lists are present they must be exactly train + val, or the devkit is mixed up."""
    if not (main_dir / f"{CLASSES[0]}_trainval.txt").exists():
        return
    ids, table = read_image_set(main_dir, "trainval")
    merged = {i: row for voc in ("train", "val") for i, row in zip(sets[voc][0], sets[voc][1].tolist())}
    wrong = [i for i, row in zip(ids, table.tolist()) if merged.get(i) != row] + sorted(set(merged) - set(ids))
    if wrong:
        raise common.DataLayoutError(f"trainval lists disagree with train + val for images {', '.join(wrong[:10])}")


class Builder(tfds.core.GeneratorBasedBuilder):
    """VOC2007 multi-label classification with a difficult mask."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Download the VOC2007 trainval and test archives from the PASCAL VOC site and extract both into <manual_dir>:
{LAYOUT}
"""

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image_id": tfds.features.Text(),
                "labels": tfds.features.Tensor(shape=(len(CLASSES),), dtype=np.bool_),
                "difficult": tfds.features.Tensor(shape=(len(CLASSES),), dtype=np.bool_),
            }),
            supervised_keys=("image", "labels"),
            homepage="http://host.robots.ox.ac.uk/pascal/VOC/voc2007/",
            metadata=common.new_metadata(classes=list(CLASSES)),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = find_root(dl_manager.manual_dir)
        main_dir = root / "ImageSets" / "Main"
        sets = {voc: read_image_set(main_dir, voc) for voc in SPLITS.values()}
        check_trainval(main_dir, sets)
        seen: dict[str, str] = {}
        for voc, (ids, _) in sets.items():
            clash = [i for i in ids if i in seen]
            if clash:
                raise common.DataLayoutError(f"images in both {seen[clash[0]]} and {voc}: {', '.join(clash[:10])}")
            seen.update(dict.fromkeys(ids, voc))
        common.require(root, ["JPEGImages"], LAYOUT)
        missing = common.missing_images(root / "JPEGImages", [f"{i}.jpg" for i in seen])
        common.raise_if_missing_images(missing, "ImageSets ids", LAYOUT)
        common.reset_skipped(self.info.metadata)
        return {split: self._generate_examples(root, *sets[voc]) for split, voc in SPLITS.items()}

    def _generate_examples(self, root: epath.Path, ids: list[str], table: np.ndarray):
        for image_id, values in zip(ids, table):
            name = f"JPEGImages/{image_id}.jpg"
            image = common.load_jpeg(root / name, name, self.info.metadata)
            if image is not None:
                yield image_id, {
                    "image": image, "image_id": image_id, "labels": values == 1, "difficult": values == 0,
                }
