"""Emotion6 builder: TFDS conformance on dummy data, the bad-input rules, and the real release."""
import collections
import csv
import logging
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_common import DataLayoutError

from . import emotion6_dataset_builder as e6

DUMMY = pathlib.Path(__file__).resolve().parent / "dummy_data"
BAD_FILES = {"images/anger/9.jpg", "images/joy/3.jpg"}  # truncated, zero bytes (see make_dummy_data.py)


def independent_rows(path):
    """ground_truth.txt read with the csv module: file name → (valence, arousal, probabilities)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    return {r[0]: (float(r[1]), float(r[2]), np.array(r[3:], dtype=np.float64)) for r in rows}


class Emotion6Test(tfds.testing.DatasetBuilderTestCase):
    """60 dummy rows, 10 per keyword → 7/1/2 per keyword; with seed 2015 the empty file falls in train and the
    truncated one in test."""

    DATASET_CLASS = e6.Builder
    SPLITS = {"train": 41, "validation": 6, "test": 11}


@pytest.fixture(scope="module")
def dummy_build(build):
    return build(e6.Builder, DUMMY)


def test_dummy_values_match_the_file(dummy_build, examples):
    expected = independent_rows(DUMMY / "ground_truth.txt")
    seen = set()
    for split in ("train", "validation", "test"):
        for ex in examples(dummy_build, split):
            name = ex["file_name"].decode()
            valence, arousal, probs = expected[name]
            np.testing.assert_allclose(ex["distribution"], probs / probs.sum(), atol=1e-6)
            assert ex["valence"] == pytest.approx(valence) and ex["arousal"] == pytest.approx(arousal)
            assert e6.KEYWORDS[ex["keyword"]] == name.split("/")[0]
            seen.add(name)
    assert seen == {n for n in expected if f"images/{n}" not in BAD_FILES}


def test_unreadable_images_are_skipped_logged_and_recorded(build, caplog):
    with caplog.at_level(logging.WARNING, logger="tfds_common"):
        builder = build(e6.Builder, DUMMY)
    warned = {name for name in BAD_FILES if any(name in r.getMessage() for r in caplog.records)}
    assert warned == BAD_FILES
    reloaded = tfds.builder_from_directory(builder.data_dir)
    assert reloaded.info.metadata["skipped_images"] == 2
    assert {entry["file"] for entry in reloaded.info.metadata["skipped_files"]} == BAD_FILES
    assert reloaded.info.splits.total_num_examples == 58


def test_missing_manual_dir_names_it_and_the_layout(tmp_path, build):
    with pytest.raises(AssertionError, match=r"(?s)absent.*does not exist.*ground_truth\.txt.*images/<keyword>"):
        build(e6.Builder, tmp_path / "absent")


def test_missing_ground_truth_names_the_file_and_the_layout(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / "ground_truth.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)missing in manual_dir.*ground_truth\.txt.*Expected layout"):
        build(e6.Builder, manual)


def test_row_without_image_is_an_error_naming_it(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / "images" / "fear" / "4.jpg").unlink()
    with pytest.raises(DataLayoutError, match=r"no image file: fear/4\.jpg"):
        build(e6.Builder, manual)


def test_distribution_off_by_more_than_tolerance_names_the_row(tmp_path):
    lines = (DUMMY / "ground_truth.txt").read_text().splitlines()
    number = next(i for i, line in enumerate(lines) if line.startswith("sadness/2.jpg\t"))
    fields = lines[number].split("\t")
    fields[-1] = f"{float(fields[-1]) + 0.01:.6g}"
    lines[number] = "\t".join(fields)
    path = tmp_path / "ground_truth.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataLayoutError, match=rf"line {number + 1} \(sadness/2\.jpg\).*sums to 1\.01"):
        e6.read_ground_truth(path)


def test_tolerated_rounding_is_renormalised(tmp_path):
    lines = (DUMMY / "ground_truth.txt").read_text().splitlines()
    fields = lines[1].split("\t")
    fields[3] = f"{float(fields[3]) + 5e-4:.7g}"  # within the 1e-3 tolerance
    (tmp_path / "gt.txt").write_text("\n".join([lines[0], "\t".join(fields)]) + "\n")
    (row,) = e6.read_ground_truth(tmp_path / "gt.txt")
    assert abs(float(row.distribution.sum()) - 1.0) < 1e-6


def test_header_in_another_emotion_order_is_rejected(tmp_path):
    lines = (DUMMY / "ground_truth.txt").read_text().splitlines()
    header = lines[0].split("\t")
    header[3], header[4] = header[4], header[3]
    (tmp_path / "gt.txt").write_text("\n".join(["\t".join(header)] + lines[1:]) + "\n")
    with pytest.raises(DataLayoutError, match="line 1: header"):
        e6.read_ground_truth(tmp_path / "gt.txt")


def test_split_files_is_stratified_disjoint_and_seeded():
    rows = e6.read_ground_truth(DUMMY / "ground_truth.txt")
    parts = e6.split_files(rows)
    names = [f for files in parts.values() for f in files]
    assert sorted(names) == sorted(r.filename for r in rows)  # a partition: nothing lost, nothing twice
    for split, per_keyword in (("train", 7), ("validation", 1), ("test", 2)):
        counts = collections.Counter(f.split("/")[0] for f in parts[split])
        assert counts == {k: per_keyword for k in e6.KEYWORDS}
    assert e6.split_files(rows) == parts
    assert e6.split_files(rows, seed=1) != parts


def test_real_ground_truth_parses_and_splits_231_33_66(real_data):
    path = real_data("emotion6") / "ground_truth.txt"
    expected = independent_rows(path)
    rows = e6.read_ground_truth(path)
    assert len(rows) == len(expected) == 1980
    for row in rows:
        valence, arousal, probs = expected[row.filename]
        np.testing.assert_allclose(row.distribution, probs / probs.sum(), atol=1e-6)
        assert (row.valence, row.arousal) == (valence, arousal)
    parts = e6.split_files(rows)
    assert {k: len(v) for k, v in parts.items()} == {"train": 1386, "validation": 198, "test": 396}
    for split, per_keyword in (("train", 231), ("validation", 33), ("test", 66)):
        assert collections.Counter(f.split("/")[0] for f in parts[split]) == {k: per_keyword for k in e6.KEYWORDS}


@pytest.mark.slow
def test_real_build(real_data, build, examples):
    manual = real_data("emotion6")
    builder = build(e6.Builder, manual)
    reloaded = tfds.builder_from_directory(builder.data_dir)
    assert reloaded.info.metadata["skipped_images"] == 0
    built = {split: examples(reloaded, split) for split in ("train", "validation", "test")}
    assert sum(len(v) for v in built.values()) == 1980
    # The split of this build equals the assignment computed again from the file (what a second build makes).
    again = e6.split_files(e6.read_ground_truth(manual / "ground_truth.txt"))
    for split, exs in built.items():
        assert sorted(ex["file_name"].decode() for ex in exs) == again[split]
        dists = np.stack([ex["distribution"] for ex in exs])
        np.testing.assert_allclose(dists.sum(axis=1), 1.0, atol=1e-5)
        va = np.array([(ex["valence"], ex["arousal"]) for ex in exs])
        assert va.min() >= 1.0 and va.max() <= 9.0
    # Valid JPEGs are stored unchanged.
    first = built["test"][0]
    assert first["image"] == (manual / "images" / first["file_name"].decode()).read_bytes()
