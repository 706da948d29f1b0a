"""Writes dummy_data/ for the builder test: a MATLAB v7.3-style twitterldl_config.mat (HDF5 with a 512-byte
MATLAB header block; `vote` is MATLAB 8 x 10, i.e. h5py (10, 8)) of made-up vote counts, and images/1.jpg ...
10.jpg, of which 5.jpg is truncated and 6.jpg is zero bytes (both must be skipped and recorded).

python tfds_builders/twitter_ldl/make_dummy_data.py   (deterministic; rewrites dummy_data/)
"""
import pathlib
import shutil

import h5py
import numpy as np

from affect_zoo.imageio import encode_jpeg

OUT = pathlib.Path(__file__).resolve().parent / "dummy_data"
MAT_FILE = "twitterldl_config.mat"
NUM_IMAGES, RATERS, SEED = 10, 8, 10045
TRUNCATED, EMPTY = 5, 6


def tiny_jpeg(rng):
    h, w = rng.integers(8, 17, size=2)
    image = rng.integers(0, 200, size=3) + np.linspace(0, 55, w)[None, :, None] + np.zeros((h, w, 3))
    return encode_jpeg(image.astype(np.uint8), quality=70)


def write_mat_v73(path, **variables):
    """HDF5 file laid out like MATLAB's -v7.3 output: 512-byte user block starting with the MAT header text."""
    with h5py.File(path, "w", userblock_size=512) as f:
        for name, value in variables.items():
            f.create_dataset(name, data=value).attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Thu Jan  1 00:00:00 2017 HDF5 schema 1.00 ."
    with open(path, "r+b") as f:
        f.write(header.ljust(116) + b"\0" * 8 + b"\x00\x02" + b"IM")


def main():
    rng = np.random.default_rng(SEED)
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "images").mkdir(parents=True)
    for n in range(1, NUM_IMAGES + 1):
        data = tiny_jpeg(rng)
        data = {TRUNCATED: data[: len(data) // 2], EMPTY: b""}.get(n, data)
        (OUT / "images" / f"{n}.jpg").write_bytes(data)
    # Each rater picks one emotion per image; rows are images as h5py sees MATLAB's 8 x N matrix.
    votes = np.stack([np.bincount(rng.integers(0, 8, RATERS), minlength=8) for _ in range(NUM_IMAGES)])
    write_mat_v73(OUT / MAT_FILE, vote=votes.astype(np.float64))


if __name__ == "__main__":
    main()
