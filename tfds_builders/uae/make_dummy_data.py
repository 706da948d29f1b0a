"""Writes dummy_data/ for the builder test: images 0-11 (train 0-5, val 6-8, test 9-11), their aes/emo lists
and a scores.h5 with a 12 x 10 vote matrix (0 = no vote) whose means agree with the aesthetic labels. Image 4 is
a CMYK JPEG, 7 a PNG named .jpg and 9 a grayscale JPEG (all must be re-encoded as RGB JPEG); 2 is truncated
and 10 is zero bytes (both must be skipped and recorded).

python tfds_builders/uae/make_dummy_data.py   (deterministic; rewrites dummy_data/)
"""
import io
import pathlib
import shutil

import h5py
import numpy as np
from PIL import Image

OUT = pathlib.Path(__file__).resolve().parent / "dummy_data"
SPLITS = {"train": range(0, 6), "val": range(6, 9), "test": range(9, 12)}
RATERS, LEVELS = 10, np.array([1, 4, 7, 10])
TRUNCATED, EMPTY = 2, 10
ENCODING = {4: ("JPEG", "CMYK"), 7: ("PNG", "RGB"), 9: ("JPEG", "L")}


def tiny_image(rng, fmt, mode):
    h, w = rng.integers(8, 17, size=2)
    image = rng.integers(0, 200, size=3) + np.linspace(0, 55, w)[None, :, None] + np.zeros((h, w, 3))
    buffer = io.BytesIO()
    Image.fromarray(image.astype(np.uint8), "RGB").convert(mode).save(buffer, format=fmt, quality=70)
    return buffer.getvalue()


def main():
    rng = np.random.default_rng(22086)
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "images").mkdir(parents=True)
    n = sum(len(ids) for ids in SPLITS.values())
    votes = rng.choice(LEVELS, size=(n, RATERS))
    votes[rng.random((n, RATERS)) < 0.15] = 0  # some raters skipped some images
    votes[:, 0] = np.where(votes[:, 0] == 0, 10, votes[:, 0])  # ...but every image has a vote
    for image_id in range(n):
        data = tiny_image(rng, *ENCODING.get(image_id, ("JPEG", "RGB")))
        data = {TRUNCATED: data[: len(data) // 2], EMPTY: b""}.get(image_id, data)
        (OUT / "images" / f"{image_id}.jpg").write_bytes(data)
    for split, ids in SPLITS.items():
        aes = [f"{i} {int(votes[i][votes[i] > 0].mean() >= 5)}" for i in ids]
        emo = [f"{i} {rng.integers(0, 8)}" for i in ids]
        (OUT / f"{split}_aes_list.txt").write_text("\n".join(aes) + "\n")
        (OUT / f"{split}_emo_list.txt").write_text("\n".join(emo) + "\n")
    with h5py.File(OUT / "scores.h5", "w") as f:
        f.create_dataset("scores", data=votes.astype(np.uint8))


if __name__ == "__main__":
    main()
