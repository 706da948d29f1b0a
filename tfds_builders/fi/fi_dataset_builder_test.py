"""FI builder: TFDS conformance on dummy data, the bad-input rules, and the real split lists."""
import collections
import json
import logging
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from affect_zoo.imageio import encode_jpeg
from tfds_common import DataLayoutError

from . import fi_dataset_builder as fi

DUMMY = pathlib.Path(__file__).resolve().parent / "dummy_data"
BAD_FILES = {"Awe/dummy_awe_2.jpg", "Fear/dummy_fear_3.jpg"}  # truncated (train), zero bytes (test)


class FiTest(tfds.testing.DatasetBuilderTestCase):
    """16 train and 8 test dummy rows, one unreadable image in each."""

    DATASET_CLASS = fi.Builder
    SPLITS = {"train": 15, "test": 7}


def test_dummy_build_skips_and_records_unreadable_images(build, examples, caplog):
    with caplog.at_level(logging.WARNING, logger="tfds_common"):
        builder = build(fi.Builder, DUMMY)
    assert {n for n in BAD_FILES if any(n in r.getMessage() for r in caplog.records)} == BAD_FILES
    reloaded = tfds.builder_from_directory(builder.data_dir)
    assert reloaded.info.metadata["skipped_images"] == 2
    assert {e["file"] for e in reloaded.info.metadata["skipped_files"]} == BAD_FILES
    for split in ("train", "test"):
        listed = dict(json.loads((DUMMY / f"{split}.json").read_text()))
        built = {ex["file_name"].decode(): ex["label"] for ex in examples(reloaded, split)}
        assert built == {p: label for p, label in listed.items() if p not in BAD_FILES}


def test_real_lists_parse_with_independent_class_counts(real_data):
    root = real_data("fi")
    for split, total in (("train", 19290), ("test", 3407)):
        raw = json.loads((root / f"{split}.json").read_text())
        rows = fi.read_split(root / f"{split}.json")
        assert len(rows) == len(raw) == total
        assert collections.Counter(label for _, label in rows) == collections.Counter(r[1] for r in raw)
        assert {label for _, label in rows} == set(range(8))
        by_folder = collections.Counter(r[0].split("/")[0] for r in raw)
        assert {fi.EMOTIONS.index(f.lower()): n for f, n in by_folder.items()} == collections.Counter(
            label for _, label in rows
        )


def test_build_with_a_sample_of_the_real_lists(real_data, tmp_path, build, examples):
    """Generated images at the paths of two train and one test row per class, with lists cut to those rows."""
    root, manual = real_data("fi"), tmp_path / "manual"
    rng = np.random.default_rng(0)
    sample = {}
    for split, per_class in (("train", 2), ("test", 1)):
        raw = json.loads((root / f"{split}.json").read_text())
        by_class = collections.defaultdict(list)
        for path, label in raw:
            by_class[label].append([path, label])
        sample[split] = [row for label in sorted(by_class)
                         for row in (by_class[label][i] for i in rng.choice(len(by_class[label]), per_class, False))]
        (manual / f"{split}.json").parent.mkdir(parents=True, exist_ok=True)
        (manual / f"{split}.json").write_text(json.dumps(sample[split]))
        for path, _ in sample[split]:
            (manual / path).parent.mkdir(parents=True, exist_ok=True)
            (manual / path).write_bytes(encode_jpeg(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)))
    builder = build(fi.Builder, manual)
    for split, rows in sample.items():
        built = examples(builder, split)
        assert sorted((ex["file_name"].decode(), ex["label"]) for ex in built) == sorted(map(tuple, rows))
        assert collections.Counter(ex["label"] for ex in built) == {c: len(rows) // 8 for c in range(8)}


def test_label_that_disagrees_with_folder_names_the_row(tmp_path):
    rows = json.loads((DUMMY / "train.json").read_text())
    rows[3][1] = 5
    (tmp_path / "train.json").write_text(json.dumps(rows))
    with pytest.raises(DataLayoutError, match=rf"row 3: {rows[3][0]} has label 5 \(excitement\)"):
        fi.read_split(tmp_path / "train.json")


@pytest.mark.parametrize("row", [["Amusement/x.jpg"], ["Amusement/x.jpg", 8], ["Amusement/x.jpg", "0"]])
def test_malformed_row_names_the_row(tmp_path, row):
    (tmp_path / "test.json").write_text(json.dumps([["Anger/y.jpg", 1], row]))
    with pytest.raises(DataLayoutError, match="test.json row 1"):
        fi.read_split(tmp_path / "test.json")


def test_missing_split_file_names_it_and_the_layout(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / "test.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)missing in manual_dir.*test\.json.*Expected layout"):
        build(fi.Builder, manual)


def test_missing_manual_dir_names_it_and_the_layout(tmp_path, build):
    with pytest.raises(AssertionError, match=r"(?s)absent.*does not exist.*train\.json"):
        build(fi.Builder, tmp_path / "absent")


def test_row_without_image_is_an_error_naming_it(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / "Sadness" / "dummy_sadness_1.jpg").unlink()
    with pytest.raises(DataLayoutError, match=r"no image file: Sadness/dummy_sadness_1\.jpg"):
        build(fi.Builder, manual)
