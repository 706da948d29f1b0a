"""Multimodal emotion posts (image, text, tags → one emotion class) from a local JSONL file, for the multimodal
multitask model of Pagé Fortin & Chaib-draa (2019), `affect_zoo.models.mmemo`.

Any modality may be missing from a record; a record with none is an error naming its line. Text and tags are
encoded to int ids here, with vocabularies built from the train split at prepare time and saved in
`info.metadata` (`text_vocabulary`, `tags_vocabulary`: the token of each id), so a model trained on the dataset
and a user encoding new posts (`affect_zoo.text.Vocabulary(metadata["text_vocabulary"])`) agree.
"""
from __future__ import annotations

import json

import numpy as np
import tensorflow_datasets as tfds
from etils import epath

import tfds_common as common
from affect_zoo.imageio import encode_jpeg
from affect_zoo.text import Vocabulary, normalize_tags, tokenize

RECORDS = "records.jsonl"
CLASSES = "classes.txt"
SPLITS = ("train", "validation", "test")
SPLIT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
SPLIT_SEED = 0
MAX_TEXT_LENGTH = 150  # the paper's cut (Pagé Fortin & Chaib-draa 2019), = affect_zoo.models.mmemo.MAX_TEXT_LENGTH
MAX_TAGS = 10
MIN_COUNT = 1
PLACEHOLDER_IMAGE = encode_jpeg(np.zeros((1, 1, 3), np.uint8))

LAYOUT = """\
<manual_dir>/
  classes.txt        one class name per line, in label order
  records.jsonl      one JSON object per line: {"id": str, "split": "train"|"validation"|"test",
                     "image": path relative to <manual_dir>, "text": str, "tags": [str, ...], "label": name or index}
                     "label" is required; every other key is optional, but a record needs at least one of
                     image, text (with a word in it) and tags (with a non-empty tag). Without "split" a record is
                     assigned by a seeded 80/10/10 split stratified by label. "id" defaults to "line<N>".
  <image files>      wherever the "image" paths say"""


def read_classes(path: epath.Path) -> list[str]:
    """Class names in label order; blank lines skipped; a repeated name is an error."""
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) < 2:
        raise common.DataLayoutError(f"{path.name}: needs at least 2 class names, found {len(names)}")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise common.DataLayoutError(f"{path.name}: class names listed twice: {', '.join(repeated)}")
    return names


def parse_records(root: epath.Path, classes: list[str]) -> list[dict]:
    """Every record of records.jsonl, checked: {id, line, split, image (path or None), text, tags, label (int)}.

    Errors name the line: invalid JSON, a missing or unknown label, a bad split, tags that are not a list of
    strings, an image path with no file, a repeated id, or a record with no modality at all.
    """
    records, seen = [], {}
    for number, line in enumerate((root / RECORDS).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{RECORDS} line {number}"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as e:
            raise common.DataLayoutError(f"{where}: not valid JSON ({e.msg})") from None
        if not isinstance(raw, dict):
            raise common.DataLayoutError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        record_id = str(raw.get("id", f"line{number}"))
        if record_id in seen:
            raise common.DataLayoutError(f"{where}: id {record_id!r} already used on line {seen[record_id]}")
        seen[record_id] = number
        split = raw.get("split")
        if split is not None and split not in SPLITS:
            raise common.DataLayoutError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
        image = raw.get("image") or None
        if image is not None:
            if not isinstance(image, str):
                raise common.DataLayoutError(f"{where}: image must be a path string, got {image!r}")
            if not (root / image).is_file():
                raise common.DataLayoutError(f"{where}: image {image} has no file under the manual dir. "
                                             f"Expected layout:\n{LAYOUT}")
        text = raw.get("text")
        if text is not None and not isinstance(text, str):
            raise common.DataLayoutError(f"{where}: text must be a string, got {type(text).__name__}")
        tags = raw.get("tags")
        if isinstance(tags, str):
            tags = [tags]
        if tags is not None and not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            raise common.DataLayoutError(f"{where}: tags must be a list of strings, got {tags!r}")
        record = {"id": record_id, "line": number, "split": split, "image": image, "text": text or "",
                  "tags": normalize_tags(tags), "label": _label(raw, classes, where)}
        if image is None and not tokenize(record["text"]) and not record["tags"]:
            raise common.DataLayoutError(f"{where}: record {record_id!r} has no modality (no image, no text with a "
                                         "word, no non-empty tag)")
        records.append(record)
    if not records:
        raise common.DataLayoutError(f"{RECORDS} holds no record")
    return records


def _label(raw: dict, classes: list[str], where: str) -> int:
    if "label" not in raw or raw["label"] is None:
        raise common.DataLayoutError(f"{where}: no label")
    label = raw["label"]
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        raise common.DataLayoutError(f"{where}: label {label!r} is neither a class name nor an index")
    if isinstance(label, int):
        if not 0 <= label < len(classes):
            raise common.DataLayoutError(f"{where}: label index {label} outside 0..{len(classes) - 1}")
        return label
    if label not in classes:
        raise common.DataLayoutError(f"{where}: label {label!r} is not in {CLASSES}")
    return classes.index(label)


def assign_splits(records: list[dict], seed: int = SPLIT_SEED) -> dict[str, list[dict]]:
    """Records per split: an explicit "split" is kept; the others are split 80/10/10 within each label, seeded."""
    by_id = {r["id"]: r for r in records}
    strata: dict[int, list[str]] = {}
    for r in records:
        if r["split"] is None:
            strata.setdefault(r["label"], []).append(r["id"])
    parts = common.stratified_split(strata, SPLIT_FRACTIONS, seed) if strata else {s: [] for s in SPLITS}
    chosen = {r["id"]: r["split"] for r in records if r["split"] is not None}
    for split, ids in parts.items():
        chosen.update(dict.fromkeys(ids, split))
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for record_id in sorted(by_id, key=lambda i: by_id[i]["line"]):
        out[chosen[record_id]].append(by_id[record_id])
    return out


def build_vocabularies(train: list[dict], min_count: int = MIN_COUNT) -> tuple[Vocabulary, Vocabulary]:
    """Text and tag vocabularies from the train records (id 0 padding, 1 OOV, then by count)."""
    text = Vocabulary.build((tokenize(r["text"]) for r in train), min_count=min_count)
    tags = Vocabulary.build((r["tags"] for r in train), min_count=min_count)
    return text, tags


class Builder(tfds.core.GeneratorBasedBuilder):
    """Image + text + tags emotion posts with missing modalities."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES = {"1.0.0": "Initial release.",
                     "1.1.0": "Text cut at 150 words (the paper's), not 100: the text feature is int32 (150,)."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""\
Arrange the posts as:
{LAYOUT}
"""
    MAX_TEXT_LENGTH = MAX_TEXT_LENGTH
    MAX_TAGS = MAX_TAGS
    MIN_COUNT = MIN_COUNT

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "id": tfds.features.Text(),
                "image": tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg"),
                "image_file": tfds.features.Text(),
                "image_present": np.bool_,
                "text": tfds.features.Tensor(shape=(self.MAX_TEXT_LENGTH,), dtype=np.int32),
                "text_raw": tfds.features.Text(),
                "text_present": np.bool_,
                "tags": tfds.features.Tensor(shape=(self.MAX_TAGS,), dtype=np.int32),
                "tag_names": tfds.features.Sequence(tfds.features.Text()),
                "tags_present": np.bool_,
                "label": tfds.features.ClassLabel(),  # names from classes.txt, set at prepare time
            }),
            supervised_keys=None,
            metadata=common.new_metadata(classes=[], text_vocabulary=[], tags_vocabulary=[],
                                         max_text_length=self.MAX_TEXT_LENGTH, max_tags=self.MAX_TAGS,
                                         min_count=self.MIN_COUNT, split_seed=SPLIT_SEED, truncated_texts=0,
                                         truncated_tags=0, dropped_records=[]),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        root = common.require(dl_manager.manual_dir, [CLASSES, RECORDS], LAYOUT)
        classes = read_classes(root / CLASSES)
        records = parse_records(root, classes)
        splits = assign_splits(records)
        if not splits["train"]:
            raise common.DataLayoutError(f"{RECORDS}: the train split is empty; its vocabulary could not be built")
        text_vocab, tags_vocab = build_vocabularies(splits["train"], self.MIN_COUNT)
        self.info.features["label"].names = classes
        metadata = self.info.metadata
        common.reset_skipped(metadata)
        metadata.update(classes=classes, text_vocabulary=text_vocab.tokens, tags_vocabulary=tags_vocab.tokens,
                        truncated_texts=0, truncated_tags=0, dropped_records=[])
        return {split: self._generate_examples(root, rows, text_vocab, tags_vocab)
                for split, rows in splits.items() if rows}

    def _generate_examples(self, root: epath.Path, records: list[dict], text_vocab: Vocabulary,
                           tags_vocab: Vocabulary):
        metadata = self.info.metadata
        for r in records:
            image = None
            if r["image"] is not None:
                image = common.load_jpeg(root / r["image"], r["image"], metadata)  # None: skipped and recorded
            text, text_present = text_vocab.encode_text(r["text"], self.MAX_TEXT_LENGTH)
            tags, tags_present = tags_vocab.encode_tags(r["tags"], self.MAX_TAGS)
            if image is None and not text_present and not tags_present:
                metadata["dropped_records"].append({"id": r["id"], "line": r["line"],
                                                    "reason": f"its only modality, image {r['image']}, is unreadable"})
                continue
            metadata["truncated_texts"] += int(len(tokenize(r["text"])) > self.MAX_TEXT_LENGTH)
            metadata["truncated_tags"] += int(len(r["tags"]) > self.MAX_TAGS)
            yield r["id"], {
                "id": r["id"],
                "image": image if image is not None else PLACEHOLDER_IMAGE,
                "image_file": r["image"] or "",
                "image_present": image is not None,
                "text": text, "text_raw": r["text"], "text_present": text_present,
                "tags": tags, "tag_names": r["tags"], "tags_present": tags_present,
                "label": r["label"],
            }
