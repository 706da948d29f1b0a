"""Flickr_LDL builder (and the LDL code it shares with Twitter_LDL): TFDS conformance, name-based emotion
mapping, the 80/20 split, and the bad-input rules."""
import logging
import pathlib

import h5py
import numpy as np
import pytest
import tensorflow_datasets as tfds

import tfds_common as common

from . import flickr_ldl_dataset_builder as flickr

DUMMY = pathlib.Path(__file__).resolve().parent / "dummy_data"
BAD_FILES = {"images/3.jpg", "images/8.jpg"}  # truncated, zero bytes; both fall in train
# Column of the file's order (amusement, awe, contentment, excitement, anger, disgust, fear, sadness) for each
# MIKELS8 emotion (amusement, anger, awe, contentment, disgust, excitement, fear, sadness), worked out by hand.
FILE_COLUMN_OF_MIKELS8 = [0, 4, 1, 2, 5, 3, 6, 7]


class FlickrLdlTest(tfds.testing.DatasetBuilderTestCase):
    """10 dummy images split 8/2 (seed 0); the two unreadable ones are in train."""

    DATASET_CLASS = flickr.Builder
    SPLITS = {"train": 6, "test": 2}


def raw_votes(path):
    """The `vote` variable as h5py stores MATLAB's 8 x N matrix: (N, 8)."""
    with h5py.File(path, "r") as f:
        return f["vote"][()]


def test_distributions_are_votes_mapped_by_name_and_normalised(build, examples, caplog):
    with caplog.at_level(logging.WARNING, logger="tfds_common"):
        builder = build(flickr.Builder, DUMMY)
    assert {n for n in BAD_FILES if any(n in r.getMessage() for r in caplog.records)} == BAD_FILES
    reloaded = tfds.builder_from_directory(builder.data_dir)
    assert reloaded.info.metadata["skipped_images"] == 2
    assert {e["file"] for e in reloaded.info.metadata["skipped_files"]} == BAD_FILES
    votes = raw_votes(DUMMY / flickr.Builder.MAT_FILE)
    seen = set()
    for split in ("train", "test"):
        for ex in examples(reloaded, split):
            row = votes[ex["image_id"] - 1][FILE_COLUMN_OF_MIKELS8]
            np.testing.assert_allclose(ex["votes"], row)
            np.testing.assert_allclose(ex["distribution"], row / row.sum(), rtol=1e-6)
            assert ex["label"] == np.argmax(row)
            seen.add(int(ex["image_id"]))
    assert seen == set(range(1, 11)) - {3, 8}


def test_mapping_is_by_name():
    votes = np.eye(8)  # row i: one vote for the file's i-th emotion
    mapped = common.ldl_to_mikels8(votes)
    for i, name in enumerate(common.LDL_FILE_ORDER):
        assert common.MIKELS8_NAMES[int(np.argmax(mapped[i]))] == name


def test_split_is_80_20_seeded_and_disjoint():
    parts = common.seeded_split(range(1, 11151), common.LDL_SPLIT, common.LDL_SPLIT_SEED)
    assert (len(parts["train"]), len(parts["test"])) == (8920, 2230)
    assert sorted(parts["train"] + parts["test"]) == list(range(1, 11151))
    assert parts == common.seeded_split(reversed(range(1, 11151)), common.LDL_SPLIT, common.LDL_SPLIT_SEED)


def test_vote_matrix_orientations(tmp_path):
    votes = np.arange(1, 81, dtype=np.float64).reshape(10, 8)
    with h5py.File(tmp_path / "nm.mat", "w") as f:
        f["vote"] = votes
    with h5py.File(tmp_path / "mn.mat", "w") as f:
        f["vote"] = votes.T
    with h5py.File(tmp_path / "bad.mat", "w") as f:
        f["vote"] = votes[:, :7]
        f["other"] = votes
    np.testing.assert_array_equal(common.read_ldl_votes(tmp_path / "nm.mat"), votes)
    np.testing.assert_array_equal(common.read_ldl_votes(tmp_path / "mn.mat"), votes)
    with pytest.raises(common.DataLayoutError, match=r"'vote' has shape \(10, 7\)"):
        common.read_ldl_votes(tmp_path / "bad.mat")
    with pytest.raises(common.DataLayoutError, match=r"no variable 'votes' \(found \['other', 'vote'\]\)"):
        common.read_ldl_votes(tmp_path / "bad.mat", key="votes")


def test_image_without_votes_is_an_error_naming_it(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    votes = raw_votes(manual / flickr.Builder.MAT_FILE)
    votes[6] = 0
    with h5py.File(manual / flickr.Builder.MAT_FILE, "r+") as f:
        f["vote"][...] = votes
    with pytest.raises(common.DataLayoutError, match=r"image 7\.jpg \(column 7\) has votes"):
        build(flickr.Builder, manual)


def test_image_missing_for_a_vote_column_is_an_error_naming_it(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / "images" / "10.jpg").unlink()
    with pytest.raises(common.DataLayoutError, match=r"vote columns with no image file: 10\.jpg"):
        build(flickr.Builder, manual)


def test_missing_mat_file_names_it_and_the_layout(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / flickr.Builder.MAT_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)missing in manual_dir.*flickrldl_config\.mat.*Expected layout"):
        build(flickr.Builder, manual)


def test_missing_manual_dir_names_it_and_the_layout(tmp_path, build):
    with pytest.raises(AssertionError, match=r"(?s)absent.*does not exist.*flickrldl_config\.mat.*images/1\.jpg"):
        build(flickr.Builder, tmp_path / "absent")
