"""MIRFLICKR-25000 builder: both configs on dummy data, labels against the annotation files, the split, and the
bad-input rules."""
import logging
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from tfds_common import DataLayoutError

from . import mirflickr25k_dataset_builder as mir

DUMMY = pathlib.Path(__file__).resolve().parent / "dummy_data"
BAD_FILES = {"mirflickr/im4.jpg", "mirflickr/im1.jpg"}  # truncated (train), zero bytes (test)


class Mirflickr25kTest(tfds.testing.DatasetBuilderTestCase):
    """10 dummy images split 8/2 (seed 0), one unreadable in each split; both configs."""

    DATASET_CLASS = mir.Builder
    SPLITS = {"train": 7, "test": 1}


def members(concept):
    """Image numbers of an annotation file, read independently of the builder."""
    return {int(x) for x in (DUMMY / "annotations" / f"{concept}.txt").read_text().split()}


@pytest.mark.parametrize("config, size", [("labels24", 24), ("labels38", 38)])
def test_labels_match_annotation_files(build, examples, caplog, config, size):
    with caplog.at_level(logging.WARNING, logger="tfds_common"):
        builder = build(mir.Builder, DUMMY, config=config)
    assert {n for n in BAD_FILES if any(n in r.getMessage() for r in caplog.records)} == BAD_FILES
    reloaded = tfds.builder_from_directory(builder.data_dir)
    concepts = reloaded.info.metadata["concepts"]
    assert len(concepts) == size and concepts[:24] == list(mir.POTENTIAL_LABELS)
    assert all(c.endswith("_r1") and c[:-3] in mir.POTENTIAL_LABELS for c in concepts[24:])
    assert {e["file"] for e in reloaded.info.metadata["skipped_files"]} == BAD_FILES
    seen = set()
    for split in ("train", "test"):
        for ex in examples(reloaded, split):
            n = int(ex["image_id"])
            assert [concepts[i] for i in np.flatnonzero(ex["labels"])] == [c for c in concepts if n in members(c)]
            seen.add(n)
    assert seen == set(range(1, 11)) - {4, 1}


def test_split_is_80_20_seeded_and_a_partition():
    parts = mir.split_numbers(range(1, 25001))
    assert (len(parts["train"]), len(parts["test"])) == (20000, 5000)
    assert sorted(parts["train"] + parts["test"]) == list(range(1, 25001))
    assert parts == mir.split_numbers(list(range(25000, 0, -1)))
    assert parts != mir.split_numbers(range(1, 25001), seed=1)


def test_annotation_of_an_absent_image_names_file_and_number(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    with open(manual / "annotations" / "sky.txt", "a") as f:
        f.write("12\n")
    with pytest.raises(DataLayoutError, match=r"annotations/sky\.txt lists images with no mirflickr/im<N>\.jpg: \[12"):
        build(mir.Builder, manual, config="labels24")


def test_malformed_annotation_line_names_file_and_line(tmp_path):
    (tmp_path / "sea.txt").write_text("3\nim5\n")
    with pytest.raises(DataLayoutError, match=r"sea\.txt line 2"):
        mir.read_concept(tmp_path / "sea.txt")


def test_missing_strict_file_fails_labels38_only(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / "annotations" / "river_r1.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)annotations/river_r1\.txt.*Expected layout"):
        build(mir.Builder, manual, config="labels38")
    assert build(mir.Builder, manual, config="labels24").info.splits.total_num_examples == 8


def test_missing_manual_dir_names_it_and_the_layout(tmp_path, build):
    with pytest.raises(AssertionError, match=r"(?s)absent.*does not exist.*mirflickr/im1\.jpg"):
        build(mir.Builder, tmp_path / "absent", config="labels24")
