"""Twitter_LDL builder: TFDS conformance and values on dummy data. The shared LDL logic (name mapping, split,
orientation, bad votes) is tested once, in flickr_ldl_dataset_builder_test.py."""
import logging
import pathlib

import h5py
import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfds_common as common

from . import twitter_ldl_dataset_builder as twitter

DUMMY = pathlib.Path(__file__).resolve().parent / "dummy_data"
BAD_FILES = {"images/5.jpg", "images/6.jpg"}  # truncated (train), zero bytes (test)
FILE_COLUMN_OF_MIKELS8 = [0, 4, 1, 2, 5, 3, 6, 7]  # see the Flickr_LDL test


class TwitterLdlTest(tfds.testing.DatasetBuilderTestCase):
    """10 dummy images split 8/2 (seed 0); one unreadable image in each split."""

    DATASET_CLASS = twitter.Builder
    SPLITS = {"train": 7, "test": 1}


def test_values_and_skips(build, examples, caplog):
    with caplog.at_level(logging.WARNING, logger="tfds_common"):
        builder = build(twitter.Builder, DUMMY)
    assert {n for n in BAD_FILES if any(n in r.getMessage() for r in caplog.records)} == BAD_FILES
    reloaded = tfds.builder_from_directory(builder.data_dir)
    assert reloaded.name == "twitter_ldl"
    assert {e["file"] for e in reloaded.info.metadata["skipped_files"]} == BAD_FILES
    with h5py.File(DUMMY / twitter.Builder.MAT_FILE, "r") as f:
        votes = f["vote"][()]
    for split in ("train", "test"):
        for ex in examples(reloaded, split):
            row = votes[ex["image_id"] - 1][FILE_COLUMN_OF_MIKELS8]
            np.testing.assert_allclose(ex["distribution"], row / row.sum(), rtol=1e-6)


def test_full_size_split_is_8036_2009():
    parts = common.seeded_split(range(1, 10046), common.LDL_SPLIT, common.LDL_SPLIT_SEED)
    assert (len(parts["train"]), len(parts["test"])) == (8036, 2009)


def test_missing_mat_file_names_it(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / twitter.Builder.MAT_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"twitterldl_config\.mat"):
        build(twitter.Builder, manual)
