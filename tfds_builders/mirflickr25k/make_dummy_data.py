"""Writes dummy_data/ for the builder test: mirflickr/im1.jpg ... im10.jpg and random annotation files for the
24 concepts and 14 _r1 concepts (each _r1 a subset of its concept), of which im4.jpg is truncated and im1.jpg
is zero bytes (both must be skipped and recorded).

python tfds_builders/mirflickr25k/make_dummy_data.py   (deterministic; rewrites dummy_data/)
"""
import pathlib
import shutil
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tfds_builders/: tfds_common

from tfds_common import dummy_jpeg  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "dummy_data"
POTENTIAL_LABELS = (
    "animals", "baby", "bird", "car", "clouds", "dog", "female", "flower", "food", "indoor", "lake", "male",
    "night", "people", "plant_life", "portrait", "river", "sea", "sky", "structures", "sunset", "transport",
    "tree", "water",
)
STRICT = ("baby", "bird", "car", "clouds", "dog", "female", "flower", "male", "night", "people", "portrait",
          "river", "sea", "tree")
NUM_IMAGES = 10
TRUNCATED, EMPTY = 4, 1


def main():
    rng = np.random.default_rng(25000)
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "mirflickr").mkdir(parents=True)
    (OUT / "annotations").mkdir()
    for n in range(1, NUM_IMAGES + 1):
        data = dummy_jpeg(rng)
        data = {TRUNCATED: data[: len(data) // 2], EMPTY: b""}.get(n, data)
        (OUT / "mirflickr" / f"im{n}.jpg").write_bytes(data)
    for concept in POTENTIAL_LABELS:
        members = sorted(int(n) for n in np.flatnonzero(rng.random(NUM_IMAGES) < 0.3) + 1)
        (OUT / "annotations" / f"{concept}.txt").write_text("".join(f"{n}\n" for n in members))
        if concept in STRICT:
            strict = [n for n in members if rng.random() < 0.6]
            (OUT / "annotations" / f"{concept}_r1.txt").write_text("".join(f"{n}\n" for n in strict))


if __name__ == "__main__":
    main()
