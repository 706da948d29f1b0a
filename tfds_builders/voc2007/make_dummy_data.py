"""Writes dummy_data/ for the builder test: a VOCdevkit/VOC2007 with 4 train, 4 val and 4 test tiny JPEGs and
random per-class lists (trainval = train + val), of which 000002.jpg (train) is truncated and 000011.jpg (test)
is zero bytes (both must be skipped and recorded).

python tfds_builders/voc2007/make_dummy_data.py   (deterministic; rewrites dummy_data/)
"""
import pathlib
import shutil
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tfds_builders/: tfds_common

from tfds_common import dummy_jpeg  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "dummy_data"
ROOT = OUT / "VOCdevkit" / "VOC2007"
CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
SETS = {"train": range(1, 5), "val": range(5, 9), "test": range(9, 13)}
TRUNCATED, EMPTY = "000002", "000011"


def main():
    rng = np.random.default_rng(2007)
    shutil.rmtree(OUT, ignore_errors=True)
    (ROOT / "JPEGImages").mkdir(parents=True)
    (ROOT / "ImageSets" / "Main").mkdir(parents=True)
    values = {}
    for numbers in SETS.values():
        for n in numbers:
            image_id = f"{n:06d}"
            data = dummy_jpeg(rng)
            data = {TRUNCATED: data[: len(data) // 2], EMPTY: b""}.get(image_id, data)
            (ROOT / "JPEGImages" / f"{image_id}.jpg").write_bytes(data)
            values[image_id] = rng.choice([1, -1, -1, -1, 0], size=len(CLASSES))
    sets = {name: [f"{n:06d}" for n in numbers] for name, numbers in SETS.items()}
    sets["trainval"] = sets["train"] + sets["val"]
    for name, ids in sets.items():
        for c, cls in enumerate(CLASSES):
            rows = [f"{i} {values[i][c]:2d}" for i in ids]
            (ROOT / "ImageSets" / "Main" / f"{cls}_{name}.txt").write_text("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
