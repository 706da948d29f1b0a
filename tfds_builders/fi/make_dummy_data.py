"""Writes dummy_data/ for the builder test: per emotion two train and one test tiny JPEG with made-up names
(no real FI file names are copied), of which Awe/dummy_awe_2.jpg is truncated and Fear/dummy_fear_3.jpg is
zero bytes (both must be skipped and recorded).

python tfds_builders/fi/make_dummy_data.py   (deterministic; rewrites dummy_data/)
"""
import json
import pathlib
import shutil
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tfds_builders/: tfds_common

from tfds_common import dummy_jpeg  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "dummy_data"
EMOTIONS = ("Amusement", "Anger", "Awe", "Contentment", "Disgust", "Excitement", "Fear", "Sadness")
TRUNCATED, EMPTY = "Awe/dummy_awe_2.jpg", "Fear/dummy_fear_3.jpg"


def main():
    rng = np.random.default_rng(8)
    shutil.rmtree(OUT, ignore_errors=True)
    splits = {"train": [], "test": []}
    for label, emotion in enumerate(EMOTIONS):
        (OUT / emotion).mkdir(parents=True)
        for n, split in ((1, "train"), (2, "train"), (3, "test")):
            name = f"{emotion}/dummy_{emotion.lower()}_{n}.jpg"
            data = dummy_jpeg(rng)
            data = {TRUNCATED: data[: len(data) // 2], EMPTY: b""}.get(name, data)
            (OUT / name).write_bytes(data)
            splits[split].append([name, label])
    for split, rows in splits.items():
        (OUT / f"{split}.json").write_text(json.dumps(rows))


if __name__ == "__main__":
    main()
