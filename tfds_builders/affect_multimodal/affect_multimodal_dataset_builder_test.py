"""affect_multimodal builder: TFDS conformance on dummy data, encoding checked against an independent reading of
records.jsonl, vocabularies from train only, skipped images, and the bad-input rules."""
import json
import logging
import pathlib
import re

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from affect_zoo.text import OOV, Vocabulary
from tfds_common import DataLayoutError

from . import affect_multimodal_dataset_builder as mm

DUMMY = pathlib.Path(__file__).resolve().parent / "dummy_data"
BAD_FILES = {"images/corrupt.jpg", "images/empty.jpg"}  # truncated (its record dropped), zero bytes (kept as text)


class AffectMultimodalTest(tfds.testing.DatasetBuilderTestCase):
    """13 records with a split (9 train, one dropped: its only modality is a corrupt image) + 10 seeded (8/1/1)."""

    DATASET_CLASS = mm.Builder
    SPLITS = {"train": 16, "validation": 3, "test": 3}


def independent_records():
    """records.jsonl read plainly: id → dict, with the split the builder must give (seeded ones looked up)."""
    rows = [json.loads(line) for line in (DUMMY / "records.jsonl").read_text(encoding="utf-8").splitlines()]
    return {row["id"]: row for row in rows}


def words(text):
    return re.findall(r"[^\W_]+(?:'[^\W_]+)*", text.lower())


@pytest.fixture(scope="module")
def dummy_build(build):
    return build(mm.Builder, DUMMY)


def test_encoding_matches_an_independent_reading(dummy_build, examples):
    reloaded = tfds.builder_from_directory(dummy_build.data_dir)
    meta = reloaded.info.metadata
    classes = (DUMMY / "classes.txt").read_text().split()
    assert meta["classes"] == classes and reloaded.info.features["label"].names == classes
    text_vocab, tags_vocab = Vocabulary(meta["text_vocabulary"]), Vocabulary(meta["tags_vocabulary"])
    rows = independent_records()
    built = {split: examples(reloaded, split) for split in ("train", "validation", "test")}
    ids = {split: {ex["id"].decode() for ex in exs} for split, exs in built.items()}
    assert ids["train"] >= {r for r, row in rows.items() if row.get("split") == "train"} - {"corrupt_only"}
    assert "corrupt_only" not in set().union(*ids.values())
    assert len([i for s in ids.values() for i in s if i.startswith("auto_")]) == 10
    train_words = {w for r in ids["train"] for w in words(rows[r].get("text", ""))}
    train_tags = {t.strip().lower() for r in ids["train"] for t in rows[r].get("tags", [])}
    assert set(text_vocab.tokens[2:]) == train_words and set(tags_vocab.tokens[2:]) == train_tags
    for split, exs in built.items():
        for ex in exs:
            row = rows[ex["id"].decode()]
            label = row["label"]
            assert ex["label"] == (label if isinstance(label, int) else classes.index(label))
            tokens = words(row.get("text", ""))
            assert bool(ex["text_present"]) == bool(tokens)
            assert text_vocab.decode(ex["text"]) == [t if t in train_words else "<oov>" for t in tokens][:150]
            tags = list(dict.fromkeys(t.strip().lower() for t in row.get("tags", [])))
            assert bool(ex["tags_present"]) == bool(tags)
            assert tags_vocab.decode(ex["tags"]) == [t if t in train_tags else "<oov>" for t in tags][:10]
            readable = bool(row.get("image")) and row["image"] not in BAD_FILES
            assert bool(ex["image_present"]) == readable
            assert ex["image_file"].decode() == row.get("image", "")
    oov = next(ex for ex in built["validation"] if ex["id"] == b"oov")
    assert list(oov["text"][:3]) == [OOV] * 3 and oov["tags"][0] == OOV
    assert meta["truncated_texts"] == 1 and meta["truncated_tags"] == 1
    assert meta["max_text_length"] == mm.MAX_TEXT_LENGTH == 150  # the paper's cut, as in mmemo.MAX_TEXT_LENGTH
    long_text = next(ex for exs in built.values() for ex in exs if ex["id"] == b"long_text")
    assert len(words(rows["long_text"]["text"])) > 150 and (long_text["text"] != 0).all()


def test_unreadable_images_are_skipped_recorded_and_the_only_modality_drops_the_record(build, caplog):
    with caplog.at_level(logging.WARNING, logger="tfds_common"):
        builder = build(mm.Builder, DUMMY)
    assert {n for n in BAD_FILES if any(n in r.getMessage() for r in caplog.records)} == BAD_FILES
    meta = tfds.builder_from_directory(builder.data_dir).info.metadata
    assert meta["skipped_images"] == 2 and {e["file"] for e in meta["skipped_files"]} == BAD_FILES
    assert [(d["id"], d["line"]) for d in meta["dropped_records"]] == [("corrupt_only", 7)]


def test_examples_feed_a_model_built_for_the_dataset(dummy_build, tmp_path):
    from affect_zoo.models import mmemo

    ds = dummy_build.as_dataset(split="train").map(lambda ex: mmemo.training_example(ex, image_size=(32, 32)))
    x, y, w = next(iter(ds.batch(16)))
    assert x["image"].shape == (16, 32, 32, 3) and x["text"].shape == (16, mm.MAX_TEXT_LENGTH)
    assert mm.MAX_TEXT_LENGTH == mmemo.MAX_TEXT_LENGTH
    present = {m: x[f"{m}_present"].numpy() for m in mmemo.MODALITIES}
    np.testing.assert_array_equal(w["p_image_text"], present["image"] * present["text"])
    np.testing.assert_array_equal(w["p_all"], present["image"] * present["text"] * present["tags"])
    assert set(y) == set(mmemo.OUTPUT_NAMES) and y["p_tags"].dtype == tf.int64
    meta = dummy_build.info.metadata
    vectors = tmp_path / "vectors.txt"
    vectors.write_text("happy 1 2 3 4 5\nbeach 0 0 0 0 1\n")
    net = mmemo.build_for_dataset("vgg16", meta, (32, 32, 3), word_vectors=vectors)
    embedding = net.get_layer("text_embedding").get_weights()[0]
    assert embedding.shape == (len(meta["text_vocabulary"]), 5)
    np.testing.assert_array_equal(embedding[meta["text_vocabulary"].index("happy")], [1, 2, 3, 4, 5])
    assert net.output["p_all"].shape[-1] == len(meta["classes"])
    code = present["image"] + 2 * present["text"] + 4 * present["tags"]
    expected = np.array([-1, 0, 1, 3, 2, 4, 5, 6])[code.astype(int)]
    np.testing.assert_array_equal(net(x)["answered_by"], expected)


def rewrite(manual, index, change):
    path = manual / "records.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    row = json.loads(lines[index])
    lines[index] = change(row) if callable(change) else change
    if isinstance(lines[index], dict):
        lines[index] = json.dumps(lines[index])
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("line, change, message", [
    (3, lambda r: {"id": "nothing", "text": " ?! ", "tags": ["  "], "label": "anger"},
     r"records\.jsonl line 4: record 'nothing' has no modality"),
    (1, lambda r: {k: v for k, v in r.items() if k != "label"}, r"records\.jsonl line 2: no label"),
    (1, lambda r: {**r, "label": "joy"}, r"records\.jsonl line 2: label 'joy' is not in classes\.txt"),
    (1, lambda r: {**r, "label": 4}, r"records\.jsonl line 2: label index 4 outside 0\.\.3"),
    (0, lambda r: {**r, "image": "images/missing.jpg"}, r"(?s)line 1: image images/missing\.jpg has no file.*layout"),
    (2, "{not json", r"records\.jsonl line 3: not valid JSON"),
    (2, lambda r: {**r, "tags": [1, 2]}, r"line 3: tags must be a list of strings"),
    (2, lambda r: {**r, "split": "dev"}, r"line 3: split 'dev' is not one of train, validation, test"),
    (2, lambda r: {**r, "id": "all"}, r"line 3: id 'all' already used on line 1"),
])
def test_bad_records_name_their_line(dummy_copy, build, line, change, message):
    manual = dummy_copy(DUMMY)
    rewrite(manual, line, change)
    with pytest.raises(DataLayoutError, match=message):
        build(mm.Builder, manual)


def test_missing_classes_file_names_the_layout(dummy_copy, build):
    manual = dummy_copy(DUMMY)
    (manual / "classes.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)missing in manual_dir .*classes\.txt.*Expected layout"):
        build(mm.Builder, manual)
