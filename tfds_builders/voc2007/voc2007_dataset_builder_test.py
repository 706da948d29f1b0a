"""VOC2007 builder: TFDS conformance on dummy data, the bad-input rules, and the real ImageSets."""
import functools
import logging
import pathlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from affect_zoo.imageio import encode_jpeg
from tfds_common import DataLayoutError

from . import voc2007_dataset_builder as voc

DUMMY = pathlib.Path(__file__).resolve().parent / "dummy_data"
DUMMY_MAIN = DUMMY / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
BAD_FILES = {"JPEGImages/000002.jpg", "JPEGImages/000011.jpg"}  # truncated (train), zero bytes (test)


class Voc2007Test(tfds.testing.DatasetBuilderTestCase):
    """4 dummy images per set, one unreadable in train and one in test."""

    DATASET_CLASS = voc.Builder
    SPLITS = {"train": 3, "validation": 4, "test": 3}


@functools.lru_cache(maxsize=None)
def independent_values(main_dir, image_set):
    """{id: {class: value}} read with numpy, one class file at a time (cached: the real lists are read by
    two tests)."""
    out = {}
    for cls in voc.CLASSES:
        table = np.loadtxt(main_dir / f"{cls}_{image_set}.txt", dtype=str, ndmin=2)
        for image_id, value in table:
            out.setdefault(image_id, {})[cls] = int(value)
    return out


def test_dummy_build_labels_difficult_and_skips(build, examples, caplog):
    with caplog.at_level(logging.WARNING, logger="tfds_common"):
        builder = build(voc.Builder, DUMMY)
    assert {n for n in BAD_FILES if any(n in r.getMessage() for r in caplog.records)} == BAD_FILES
    reloaded = tfds.builder_from_directory(builder.data_dir)
    assert reloaded.info.metadata["skipped_images"] == 2
    assert {e["file"] for e in reloaded.info.metadata["skipped_files"]} == BAD_FILES
    assert reloaded.info.metadata["classes"] == list(voc.CLASSES)
    for split, image_set in voc.SPLITS.items():
        expected = independent_values(DUMMY_MAIN, image_set)
        built = examples(reloaded, split)
        readable = {i for i in expected if f"JPEGImages/{i}.jpg" not in BAD_FILES}
        assert {ex["image_id"].decode() for ex in built} == readable
        for ex in built:
            values = expected[ex["image_id"].decode()]
            for mask, value in (("labels", 1), ("difficult", 0)):
                named = [voc.CLASSES[c] for c in np.flatnonzero(ex[mask])]
                assert named == [c for c in voc.CLASSES if values[c] == value]
    assert len(examples(reloaded, voc.TRAINVAL)) == 7


def test_real_image_sets_with_independent_class_counts(real_data):
    main = real_data("voc2007") / "ImageSets" / "Main"
    sizes = {}
    for image_set in ("train", "val", "trainval", "test"):
        ids, table = voc.read_image_set(main, image_set)
        expected = independent_values(main, image_set)
        sizes[image_set] = len(ids)
        assert ids == sorted(expected)
        for c, cls in enumerate(voc.CLASSES):
            assert int((table[:, c] == 1).sum()) == sum(v[cls] == 1 for v in expected.values()), (image_set, cls)
            assert int((table[:, c] == 0).sum()) == sum(v[cls] == 0 for v in expected.values()), (image_set, cls)
    assert sizes["trainval"] == 5011 and sizes["test"] == 4952
    assert sizes["train"] + sizes["val"] == sizes["trainval"]
    layout_ids = (main / "test.txt").read_text().split()
    assert voc.read_image_set(main, "test")[0] == sorted(layout_ids)


def test_build_with_a_sample_of_the_real_image_sets(real_data, tmp_path, build, examples):
    """Real rows of three ids per set (class lists cut to them) with generated JPEGs; the real trainval lists
    are cut the same way, so the train + val check runs on real rows too."""
    main = real_data("voc2007") / "ImageSets" / "Main"
    rng = np.random.default_rng(0)
    picked = {
        s: sorted(rng.choice(sorted(independent_values(main, s)), 3, replace=False)) for s in ("train", "val", "test")
    }
    picked["trainval"] = sorted(picked["train"] + picked["val"])
    out = tmp_path / "manual"
    (out / "ImageSets" / "Main").mkdir(parents=True)
    (out / "JPEGImages").mkdir()
    for image_set, ids in picked.items():
        for cls in voc.CLASSES:
            rows = (main / f"{cls}_{image_set}.txt").read_text().splitlines()
            kept = [r for r in rows if r.split()[0] in ids]
            (out / "ImageSets" / "Main" / f"{cls}_{image_set}.txt").write_text("\n".join(kept) + "\n")
        for i in ids:
            (out / "JPEGImages" / f"{i}.jpg").write_bytes(encode_jpeg(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)))
    builder = build(voc.Builder, out)
    for split, image_set in voc.SPLITS.items():
        expected = independent_values(main, image_set)
        built = examples(builder, split)
        assert sorted(ex["image_id"].decode() for ex in built) == picked[image_set]
        for ex in built:
            values = expected[ex["image_id"].decode()]
            np.testing.assert_array_equal(ex["labels"], [values[c] == 1 for c in voc.CLASSES])
            np.testing.assert_array_equal(ex["difficult"], [values[c] == 0 for c in voc.CLASSES])


def test_class_files_listing_different_images_is_an_error(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    path = manual / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "cow_val.txt"
    path.write_text(path.read_text().replace("000006", "000099"))
    with pytest.raises(DataLayoutError, match=r"cow_val\.txt and aeroplane_val\.txt list different images, e\.g\. 0+6"):
        build(voc.Builder, manual)


def test_bad_value_names_file_and_line(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    path = manual / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "dog_test.txt"
    lines = path.read_text().splitlines()
    lines[2] = lines[2].split()[0] + " 2"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataLayoutError, match=r"dog_test\.txt line 3"):
        build(voc.Builder, manual)


def test_trainval_that_is_not_train_plus_val_is_an_error(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    path = manual / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "bus_trainval.txt"
    lines = path.read_text().splitlines()
    image_id, value = lines[0].split()
    lines[0] = f"{image_id} {'-1' if value != '-1' else '1'}"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataLayoutError, match=rf"trainval lists disagree with train \+ val for images {image_id}"):
        build(voc.Builder, manual)


def test_missing_class_file_names_it_and_the_layout(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main" / "sofa_train.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)sofa_train\.txt.*Expected layout"):
        build(voc.Builder, manual)


def test_manual_dir_without_image_sets_names_the_layout(tmp_path, build):
    (tmp_path / "manual" / "JPEGImages").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"(?s)no ImageSets/Main under .*manual.*VOCdevkit/VOC2007"):
        build(voc.Builder, tmp_path / "manual")


def test_id_without_image_is_an_error_naming_it(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / "VOCdevkit" / "VOC2007" / "JPEGImages" / "000007.jpg").unlink()
    with pytest.raises(DataLayoutError, match=r"ImageSets ids with no image file: 000007\.jpg"):
        build(voc.Builder, manual)
