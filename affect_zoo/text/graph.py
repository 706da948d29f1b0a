"""The TensorFlow twin of ``affect_zoo.text``'s encoding, for serving graphs: raw text and tags in, the ids
``Vocabulary.encode_text`` / ``encode_tags`` give out, so an exported model reads the strings a client sends.

- ``tokenize``: lower-case (``tf.strings.lower`` with UTF-8), then words of letters and digits (RE2's ``\\pL``,
  ``\\pN``, Python's ``[^\\W_]``) with inner apostrophes kept; runs of several apostrophes and apostrophes at a
  word's ends split or drop as ``re.findall`` does. Invalid UTF-8 is replaced (U+FFFD, a separator) first.
- tags: lower-cased, Unicode whitespace collapsed (Python ``str.split``'s set: ``\\s``, ``\\v``, U+001C–001F,
  U+0085 and the ``\\p{Z}`` separators), empty and repeated tags dropped (first kept), the first ``max_tags`` kept.
Where Python's ``str.lower`` and ICU's per-character lowering differ (the few characters whose lower case is two
characters, e.g. "İ"), the two encoders can disagree; ``tests/test_text.py`` checks both on mixed-script text.
"""
import tensorflow as tf

from affect_zoo.text import OOV, PAD_TOKEN

_SEPARATORS = r"[^\pL\pN']+"
_WHITESPACE = r"[\s\x{0b}\x{1c}-\x{1f}\x{85}\pZ]+"


def lookup_table(vocabulary):
    """A static token → id table of a ``Vocabulary`` (unknown tokens and ``<pad>`` give the OOV id, as
    ``Vocabulary.id`` does)."""
    tokens = [t for t in vocabulary.tokens if t != PAD_TOKEN]
    ids = [i for i, t in enumerate(vocabulary.tokens) if t != PAD_TOKEN]
    initializer = tf.lookup.KeyValueTensorInitializer(tf.constant(tokens, tf.string), tf.constant(ids, tf.int64))
    return tf.lookup.StaticHashTable(initializer, default_value=OOV)


def tokenize(texts):
    """tf.string [B] → RaggedTensor [B, None] of the lower-cased words (``affect_zoo.text.tokenize``)."""
    texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace")
    texts = tf.strings.lower(texts, encoding="utf-8")
    texts = tf.strings.regex_replace(texts, _SEPARATORS, " ")
    texts = tf.strings.regex_replace(texts, r"''+", " ")
    texts = tf.strings.regex_replace(texts, r"(^| )'", r"\1")
    texts = tf.strings.regex_replace(texts, r"'( |$)", r"\1")
    return tf.strings.split(tf.strings.strip(texts), " ")


def encode_text(texts, table, max_length):
    """(ids int32 [B, max_length] padded with 0, present float32 [B]): ``Vocabulary.encode_text`` per row."""
    tokens = tokenize(texts)
    tokens = tf.ragged.boolean_mask(tokens, tf.strings.length(tokens) > 0)
    present = tf.cast(tokens.row_lengths() > 0, tf.float32)
    ids = tf.ragged.map_flat_values(table.lookup, tokens[:, :max_length])
    return _dense(ids, max_length), present


def encode_tags(tags, table, max_tags):
    """tf.string [B, T] (rows padded with "") → (ids int32 [B, max_tags], present float32 [B]):
    ``Vocabulary.encode_tags`` per row."""
    tags = tf.strings.unicode_transcode(tags, "UTF-8", "UTF-8", errors="replace")
    tags = tf.strings.strip(tf.strings.regex_replace(tf.strings.lower(tags, encoding="utf-8"), _WHITESPACE, " "))

    def row(values):
        kept, _ = tf.unique(tf.boolean_mask(values, tf.strings.length(values) > 0))
        ids = table.lookup(kept[:max_tags])
        return tf.pad(tf.cast(ids, tf.int32), [[0, max_tags - tf.shape(ids)[0]]]), tf.size(kept) > 0

    ids, present = tf.map_fn(row, tags, fn_output_signature=(tf.TensorSpec([max_tags], tf.int32),
                                                             tf.TensorSpec([], tf.bool)))
    return ids, tf.cast(present, tf.float32)


def _dense(ragged_ids, length):
    dense = tf.cast(ragged_ids.to_tensor(default_value=0), tf.int32)
    return tf.pad(dense, [[0, 0], [0, length - tf.shape(dense)[1]]])
