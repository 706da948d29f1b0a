"""Writes dummy_data/ for the builder test: a MATLAB v7.3-style twitterldl_config.mat (HDF5 with a 512-byte
MATLAB header block; `vote` is MATLAB 8 x 10, i.e. h5py (10, 8)) of made-up vote counts, and images/1.jpg ...
10.jpg, of which 5.jpg is truncated and 6.jpg is zero bytes (both must be skipped and recorded).

python tfds_builders/twitter_ldl/make_dummy_data.py   (deterministic; rewrites dummy_data/)
"""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # tfds_builders/: tfds_common

from tfds_common import write_ldl_dummy_data  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "dummy_data"
MAT_FILE = "twitterldl_config.mat"
NUM_IMAGES, RATERS, SEED = 10, 8, 10045
TRUNCATED, EMPTY = 5, 6


if __name__ == "__main__":
    write_ldl_dummy_data(OUT, MAT_FILE, NUM_IMAGES, RATERS, SEED, TRUNCATED, EMPTY)
