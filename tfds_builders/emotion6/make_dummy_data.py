"""Writes dummy_data/ for the builder test: 6 keywords x 10 tiny JPEGs with made-up labels, of which
anger/9.jpg is truncated and joy/3.jpg is zero bytes (both must be skipped and recorded).

python tfds_builders/emotion6/make_dummy_data.py   (deterministic; rewrites dummy_data/)
"""
import pathlib
import shutil
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tfds_builders/: tfds_common

from tfds_common import dummy_jpeg  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "dummy_data"
KEYWORDS = ("anger", "disgust", "fear", "joy", "sadness", "surprise")
PER_KEYWORD = 10
TRUNCATED, EMPTY = "anger/9.jpg", "joy/3.jpg"
HEADER = ["[image_filename]", "[valence]", "[arousal]"] + [
    f"[prob. {e}]" for e in ("anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral")
]


def main():
    rng = np.random.default_rng(6)
    shutil.rmtree(OUT, ignore_errors=True)
    lines = ["\t".join(HEADER)]
    for keyword in KEYWORDS:
        (OUT / "images" / keyword).mkdir(parents=True)
        for n in range(1, PER_KEYWORD + 1):
            name = f"{keyword}/{n}.jpg"
            data = dummy_jpeg(rng)
            data = {TRUNCATED: data[: len(data) // 2], EMPTY: b""}.get(name, data)
            (OUT / "images" / name).write_bytes(data)
            dist = np.round(rng.dirichlet(np.full(7, 0.5)), 6)
            dist[-1] = round(1.0 - dist[:-1].sum(), 6)
            valence, arousal = np.round(rng.uniform(1, 9, size=2), 1)
            lines.append("\t".join([name, f"{valence:g}", f"{arousal:g}"] + [f"{p:.6g}" for p in dist]))
    (OUT / "ground_truth.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
