"""UAE builder: TFDS conformance on dummy data, values against an independent read, the configurable HDF5
layout, and the bad-input rules."""
import logging
import pathlib

import h5py
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfds_common import MIKELS8_NAMES, DataLayoutError

from . import uae_dataset_builder as uae

DUMMY = pathlib.Path(__file__).resolve().parent / "dummy_data"
BAD_FILES = {"images/2.jpg", "images/10.jpg"}  # truncated (train), zero bytes (test)


class UaeTest(tfds.testing.DatasetBuilderTestCase):
    """Images 0-5 train, 6-8 val, 9-11 test; 2 and 10 are unreadable."""

    DATASET_CLASS = uae.Builder
    SPLITS = {"train": 5, "validation": 3, "test": 2}


def read_pairs(path):
    return dict(tuple(int(x) for x in line.split()) for line in path.read_text().splitlines() if line.strip())


def rewrite_scores(manual, **datasets):
    (manual / "scores.h5").unlink()
    with h5py.File(manual / "scores.h5", "w") as f:
        for key, value in datasets.items():
            f[key] = value


def dummy_votes():
    with h5py.File(DUMMY / "scores.h5", "r") as f:
        return f["scores"][()]


def test_values_against_the_files(build, examples, caplog):
    with caplog.at_level(logging.WARNING, logger="tfds_common"):
        builder = build(uae.Builder, DUMMY)
    assert {n for n in BAD_FILES if any(n in r.getMessage() for r in caplog.records)} == BAD_FILES
    reloaded = tfds.builder_from_directory(builder.data_dir)
    assert reloaded.info.metadata["skipped_images"] == 2
    assert {e["file"] for e in reloaded.info.metadata["skipped_files"]} == BAD_FILES
    votes = dummy_votes()
    for split, prefix in (("train", "train"), ("validation", "val"), ("test", "test")):
        aes, emo = read_pairs(DUMMY / f"{prefix}_aes_list.txt"), read_pairs(DUMMY / f"{prefix}_emo_list.txt")
        built = examples(reloaded, split)
        assert {int(ex["image_id"]) for ex in built} == {i for i in aes if f"images/{i}.jpg" not in BAD_FILES}
        for ex in built:
            i = int(ex["image_id"])
            cast = [v for v in votes[i] if v != 0]
            assert ex["aesthetic_score"] == pytest.approx(sum(cast) / len(cast))
            assert ex["aesthetic"] == aes[i] and ex["emotion"] == emo[i]
            np.testing.assert_array_equal(ex["votes"], votes[i])


def test_cmyk_png_and_grey_inputs_are_stored_as_rgb_jpeg(build, examples):
    builder = build(uae.Builder, DUMMY)
    stored = {int(ex["image_id"]): ex["image"] for split in ("train", "validation", "test")
              for ex in examples(builder, split)}
    for image_id in (4, 7, 9):  # CMYK JPEG, PNG named .jpg, grayscale JPEG
        assert stored[image_id][:3] == b"\xff\xd8\xff"
        assert tf.io.decode_jpeg(stored[image_id]).shape[-1] == 3


def test_split_disagreement_names_the_images(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    val = (manual / "val_emo_list.txt").read_text().splitlines()
    moved = next(line for line in val if line.startswith("7 "))
    (manual / "val_emo_list.txt").write_text("\n".join(line for line in val if line != moved) + "\n")
    (manual / "train_emo_list.txt").write_text((manual / "train_emo_list.txt").read_text() + moved + "\n")
    with pytest.raises(DataLayoutError, match=r"disagree on the split of 1 images: 7 \(aes: val, emo: train\)"):
        build(uae.Builder, manual)


def test_aesthetic_label_contradicting_votes_names_the_image(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    votes = dummy_votes()
    votes[3] = [1, 1, 4, 0, 0, 0, 0, 0, 0, 0]  # mean 2, but the list says high
    rewrite_scores(manual, scores=votes)
    assert read_pairs(manual / "train_aes_list.txt")[3] == 1
    with pytest.raises(DataLayoutError, match=r"contradict the mean vote .* 3 \(mean 2\.00, listed high\)"):
        build(uae.Builder, manual)


def test_scores_key_is_configurable_and_transposed_matrix_accepted(dummy_copy, build, examples):
    manual = dummy_copy(DUMMY)
    rewrite_scores(manual, votes=dummy_votes().T)
    with pytest.raises(DataLayoutError, match=r"no dataset 'scores' \(found \['votes'\]\); set UaeConfig\.scores_key"):
        build(uae.Builder, manual)
    builder = build(uae.Builder, manual, config=uae.UaeConfig(name="votes_key", scores_key="votes"))
    built = sorted(examples(builder, "validation"), key=lambda ex: ex["image_id"])
    np.testing.assert_array_equal(np.stack([ex["votes"] for ex in built]), dummy_votes()[[6, 7, 8]])


def test_list_emotion_order_is_mapped_by_name(build, examples):
    order = tuple(reversed(MIKELS8_NAMES))
    builder = build(uae.Builder, DUMMY, config=uae.UaeConfig(name="reversed", list_emotion_order=order))
    emo = read_pairs(DUMMY / "test_emo_list.txt")
    for ex in examples(builder, "test"):
        assert MIKELS8_NAMES[ex["emotion"]] == order[emo[int(ex["image_id"])]]


def test_invalid_vote_level_names_the_image(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    votes = dummy_votes()
    votes[8, 4] = 5
    rewrite_scores(manual, scores=votes)
    with pytest.raises(DataLayoutError, match=r"votes other than .* for image ids \[8\]"):
        build(uae.Builder, manual)


def test_image_without_votes_names_it(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    votes = dummy_votes()
    votes[5] = 0
    rewrite_scores(manual, scores=votes)
    with pytest.raises(DataLayoutError, match=r"image 5 has no aesthetic votes"):
        build(uae.Builder, manual)


def test_malformed_list_row_names_file_and_line(tmp_path):
    (tmp_path / "val_aes_list.txt").write_text("6 1\n7 2\n")
    with pytest.raises(DataLayoutError, match=r"val_aes_list\.txt line 2: image 7 has label 2"):
        uae.read_list(tmp_path / "val_aes_list.txt", 2)


def test_id_without_image_is_an_error_naming_it(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / "images" / "11.jpg").unlink()
    with pytest.raises(DataLayoutError, match=r"listed ids with no image file: 11\.jpg"):
        build(uae.Builder, manual)


def test_missing_list_names_it_and_the_layout(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / "test_emo_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)missing in manual_dir.*test_emo_list\.txt.*Expected layout"):
        build(uae.Builder, manual)


def test_missing_manual_dir_names_it_and_the_layout(tmp_path, build):
    with pytest.raises(AssertionError, match=r"(?s)absent.*does not exist.*scores\.h5"):
        build(uae.Builder, tmp_path / "absent")
