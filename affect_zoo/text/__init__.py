"""Text and tag vocabularies for the multimodal emotion model (``affect_zoo.models.mmemo``).

Pure Python/NumPy so that a TFDS builder (at prepare time) and a user (at predict time) encode text alike:

- ``tokenize``: lower-cased words of letters and digits (Unicode-aware; inner apostrophes kept: "don't");
  punctuation and underscores split words.
- ``normalize_tag``: a tag is one token however many words it has; lower-cased, whitespace collapsed.
- ``Vocabulary``: id 0 = padding (``<pad>``), id 1 = out of vocabulary (``<oov>``), then the tokens of the
  training data by decreasing count (ties alphabetical). Encoding never fails: an unknown word or tag is id 1.
  Text longer than ``max_length`` tokens keeps its first ``max_length``; tags beyond ``max_tags`` (after
  dropping empty and repeated tags, first occurrence kept) are dropped.
- ``load_word_vectors``: an embedding matrix for a vocabulary from a local word-vector text file
  (``word v1 v2 …`` per line; an optional word2vec header line ``<count> <dim>`` is skipped).
"""
from __future__ import annotations

import collections
import re
from typing import Iterable, Sequence

import numpy as np

PAD, OOV = 0, 1
PAD_TOKEN, OOV_TOKEN = "<pad>", "<oov>"
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text) -> list[str]:
    """The lower-cased words of ``text`` ([] for None or an empty/punctuation-only string)."""
    if text is None:
        return []
    return _WORD.findall(str(text).lower())


def normalize_tag(tag) -> str:
    """A tag as one token: lower-cased, surrounding whitespace stripped, inner whitespace collapsed."""
    return " ".join(str(tag).lower().split()) if tag is not None else ""


def normalize_tags(tags) -> list[str]:
    """Non-empty normalised tags, repeats dropped (first occurrence kept), in the given order."""
    if tags is None:
        return []
    if isinstance(tags, str):
        tags = [tags]
    seen, out = set(), []
    for tag in tags:
        tag = normalize_tag(tag)
        if tag and tag not in seen:
            seen.add(tag)
            out.append(tag)
    return out


class Vocabulary:
    """Token ↔ id. ``tokens[i]`` is the token of id i; ids 0 and 1 are padding and OOV."""

    def __init__(self, tokens: Sequence[str]):
        tokens = list(tokens)
        if tokens[:2] != [PAD_TOKEN, OOV_TOKEN]:
            raise ValueError(f"a vocabulary starts with {PAD_TOKEN!r}, {OOV_TOKEN!r}; got {tokens[:2]}")
        if len(set(tokens)) != len(tokens):
            repeated = [t for t, n in collections.Counter(tokens).items() if n > 1]
            raise ValueError(f"vocabulary tokens must be unique; repeated: {repeated[:10]}")
        self.tokens = tokens
        self._ids = {token: i for i, token in enumerate(tokens)}

    @classmethod
    def build(cls, token_lists: Iterable[Iterable[str]], min_count: int = 1, max_size: int | None = None):
        """From tokenised training data: tokens seen at least ``min_count`` times, the ``max_size`` most frequent
        (padding and OOV included in the size)."""
        counts = collections.Counter(token for tokens in token_lists for token in tokens)
        kept = sorted((t for t, n in counts.items() if n >= min_count and t not in (PAD_TOKEN, OOV_TOKEN)),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max(0, int(max_size) - 2)]
        return cls([PAD_TOKEN, OOV_TOKEN, *kept])

    def __len__(self):
        return len(self.tokens)

    def __eq__(self, other):
        return isinstance(other, Vocabulary) and self.tokens == other.tokens

    def id(self, token: str) -> int:
        return OOV if token == PAD_TOKEN else self._ids.get(token, OOV)

    def encode(self, tokens: Sequence[str], length: int) -> np.ndarray:
        """(length,) int32: the ids of the first ``length`` tokens, padded with 0."""
        ids = np.zeros(int(length), np.int32)
        values = [self.id(t) for t in list(tokens)[: int(length)]]
        ids[: len(values)] = values
        return ids

    def encode_text(self, text, max_length: int) -> tuple[np.ndarray, bool]:
        """(ids, present): the text's first ``max_length`` tokens; present is False when it has no token."""
        tokens = tokenize(text)
        return self.encode(tokens, max_length), bool(tokens)

    def encode_tags(self, tags, max_tags: int = 10) -> tuple[np.ndarray, bool]:
        """(ids, present): the first ``max_tags`` distinct non-empty tags; present is False when there is none."""
        tags = normalize_tags(tags)
        return self.encode(tags, max_tags), bool(tags)

    def decode(self, ids) -> list[str]:
        """Tokens of non-padding ids."""
        return [self.tokens[i] if 0 <= i < len(self.tokens) else OOV_TOKEN for i in np.asarray(ids).tolist() if i]

    def save(self, path) -> None:
        """One token per line, in id order."""
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(self.tokens) + "\n")

    @classmethod
    def load(cls, path):
        with open(path, encoding="utf-8") as f:
            return cls([line.rstrip("\n") for line in f if line.rstrip("\n")])


def load_word_vectors(path, vocabulary: Vocabulary | Sequence[str], *, scale: float = 0.25, seed: int = 0,
                      lowercase: bool = True) -> tuple[np.ndarray, int]:
    """An embedding matrix (len(vocabulary), dim) float32 from a word-vector text file, and how many rows it set.

    Rows of words in the file take their vector; other rows are drawn from U(−scale, scale) (Kim, 2014), the
    padding row is zero. With ``lowercase`` a file word is matched lower-cased (the first occurrence wins), as
    ``tokenize`` lower-cases. A line whose dimension differs from the first vector's is an error naming the line.
    """
    tokens = vocabulary.tokens if isinstance(vocabulary, Vocabulary) else list(vocabulary)
    index = {token: i for i, token in enumerate(tokens)}
    found: dict[int, np.ndarray] = {}
    dim = None
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            fields = line.rstrip().split(" ")
            if not fields or not fields[0]:
                continue
            if number == 1 and len(fields) == 2 and all(p.isdigit() for p in fields):
                continue  # word2vec header: "<count> <dim>"
            word = fields[0].lower() if lowercase else fields[0]
            if dim is None:
                dim = len(fields) - 1
                if dim < 1:
                    raise ValueError(f"{path} line {number}: no vector after the word {fields[0]!r}")
            if len(fields) - 1 != dim:
                raise ValueError(f"{path} line {number}: {len(fields) - 1} values, expected {dim}")
            row = index.get(word)
            if row is not None and row not in found and row != PAD:
                try:
                    found[row] = np.asarray(fields[1:], dtype=np.float32)
                except ValueError:
                    raise ValueError(f"{path} line {number}: a value is not a number") from None
    if dim is None:
        raise ValueError(f"{path}: no word vectors in the file")
    matrix = np.random.default_rng(seed).uniform(-scale, scale, (len(tokens), dim)).astype(np.float32)
    matrix[PAD] = 0.0
    for row, vector in found.items():
        matrix[row] = vector
    return matrix, len(found)


def vocabularies_from_metadata(metadata) -> tuple[Vocabulary, Vocabulary]:
    """(text, tags) vocabularies saved by the ``affect_multimodal`` builder in ``info.metadata``."""
    missing = [k for k in ("text_vocabulary", "tags_vocabulary") if k not in metadata]
    if missing:
        raise ValueError(f"the dataset metadata has no {', '.join(missing)} (not an affect_multimodal dataset?)")
    return Vocabulary(metadata["text_vocabulary"]), Vocabulary(metadata["tags_vocabulary"])
