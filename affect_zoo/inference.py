"""``predict``: score images with a zoo model, decoding each batch of images with one call of a traced graph.

Every image is decoded once, by the image room's graph (``imageio.graph.decode_and_resize``: ``decode_checked`` then
``resize_for_model`` per item, the serving signature's input graph and the decoder of training); arrays go through
the same ``to_rgb`` and resize. No lock is shared between callers: the traced graphs hold no state, so several
threads may predict at once.

Why not ``tf.data``: side by side on 256 Emotion6 JPEGs, a parallel ``tf.data`` map (iterator creation per call, one
map call per image) ran at 110 img/s and the batch graph at 145 (``benchmarks/predict.py``). The trade-off: decoding
does not overlap the network (each batch is decoded, then scored), and a batch holding a bad item is decoded a
second time, item by item, so that only that item drops.

A bad item does not sink the batch. Items that cannot even enter the graph (a path that is not a readable regular
file, an object of another type, an array with NaN, inf, values outside [0, 255] or too many pixels) are refused
in Python. An item whose graph decode fails is dropped and only then looked at again, by Pillow's strict decoder
(``imageio.decode_image``): it either names the reason (empty, truncated, not an image, over ``MAX_PIXELS`` from
the header) or, for the formats the graph does not read (TIFF, animated WebP: first frame), gives the pixels, which
go through the array path. Good images thus cost one decode; only the rare files the graph refuses cost more.
"""
import functools
import os

import numpy as np
import tensorflow as tf

from affect_zoo import imageio
from affect_zoo.imageio import graph
from affect_zoo.families.base import family_of_model
from affect_zoo.zoo import load

_NO_BYTES = b""
_NO_PIXELS = np.zeros((0, 0, 1), np.float32)


def predict(model_or_name, images=None, batch_size=32, **inputs):
    """Score images with a zoo model; returns the named outputs (see ``Family.named_outputs``: each task's raw
    output under its name, then ``affect_zoo.tasks.output_names``) as arrays with one row per image, plus
    ``errors``: per image None or the reason it could not be read.

    images: one or a list of paths, encoded bytes (JPEG, PNG, BMP, GIF, WebP, TIFF, ...) or arrays (H, W, 3) RGB,
    (H, W, 4) RGBA (alpha composited on white) or (H, W) grey, values in [0, 255]. A bad item does not sink the
    others: a missing or unreadable path, a directory or named pipe (refused without being opened), undecodable
    bytes, an image over ``imageio.MAX_PIXELS`` pixels, an array holding NaN, inf or values outside [0, 255], or an
    object of another type gets NaN rows (labels None) and an error naming it, and the other images are scored as
    they would be alone.
    inputs: what the model's family takes beside images, one entry per image. An ``mmemo`` model takes
    ``text=[str or None, ...]`` and ``tags=[[str, ...] or None, ...]``, and None for an image it lacks (images
    itself may be None for text/tags only); it also answers ``prediction_probs``, ``prediction_label`` and
    ``answered_by`` (see ``affect_zoo.families.mmemo``).
    """
    model = load(model_or_name) if isinstance(model_or_name, str) else model_or_name
    family = family_of_model(model)
    if images is None:
        if not family.image_optional or not inputs:
            raise ValueError(f"{model.name}: images is None; give one image (path, bytes or array) per item")
        first = next(iter(inputs.values()))
        count = 1 if first is None or isinstance(first, str) else len(list(first))
        items = [None] * count
    else:
        items = [images] if _is_one_image(images) else list(images)
    extra = family.prediction_inputs(model, len(items), inputs)
    size = family.image_size(getattr(model, "network", model))
    errors = [None] * len(items)
    rows, outputs = [], []
    for indices, batch, present in _model_batches(items, family.image_optional, size, errors, batch_size):
        raw = model.predict_on_batch(family.feed(batch, present, {k: v[indices] for k, v in extra.items()}))
        rows.append(indices)
        outputs.append({name: np.asarray(value) for name, value in raw.items()})
    if outputs:
        raw = {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}
        good = np.concatenate(rows)
    else:
        raw = _empty_outputs(model)
        good = np.zeros((0,), np.int64)
    out = {}
    for key, value in family.named_outputs(model.tasks, raw).items():
        value = np.asarray(value)
        full = np.full((len(items), *value.shape[1:]), None if value.dtype == object else np.nan,
                       dtype=object if value.dtype == object else np.float32)
        full[good] = value
        out[key] = full
    out["errors"] = errors
    return out


def _model_batches(items, image_optional, size, errors, batch_size):
    """Yields ``(indices, images, image_present)``: the items' images through ``model_inputs``, then, when the
    family allows it, the items without an image (None) as black images marked absent."""
    absent = [i for i, item in enumerate(items) if item is None] if image_optional else []
    given = [i for i, item in enumerate(items) if not (image_optional and item is None)]
    given_errors = [None] * len(given)
    positions = np.asarray(given, np.int64)
    for indices, batch in model_inputs([items[i] for i in given], size, given_errors, batch_size, numbers=given):
        yield positions[indices], batch, np.ones((len(indices),), np.float32)
    for i, error in zip(given, given_errors):
        errors[i] = error
    for start in range(0, len(absent), batch_size):
        chunk = np.asarray(absent[start:start + batch_size], np.int64)
        yield chunk, np.zeros((len(chunk), *size, 3), np.float32), np.zeros((len(chunk),), np.float32)


def _empty_outputs(model):
    """Zero-row arrays shaped as each of the network's outputs (when no item could be read)."""
    network = getattr(model, "network", model)
    return {name: np.zeros((0, *tuple(t.shape)[1:]), np.float32) for name, t in network.output.items()}


def model_inputs(items, size, errors, batch_size=32, max_pixels=imageio.MAX_PIXELS, numbers=None):
    """Yields ``(indices, images)``: int64 [n] positions in ``items`` and float32 [n, h, w, 3] in [0, 255] at
    ``size``, what the model is fed, in batches of up to ``batch_size``. ``errors`` (a list as long as ``items``)
    receives, at each item that yields nothing, the reason naming it (``image <numbers[i]>``, default its
    position)."""
    size = tuple(int(s) for s in size)
    numbers = list(range(len(items))) if numbers is None else list(numbers)
    sent = set()
    seen = set()

    def sources():
        for i, item in enumerate(items):
            try:
                data, pixels = _source(item, numbers[i], max_pixels)
            except (ValueError, TypeError) as error:  # ours, naming the item
                errors[i] = str(error)
                continue
            sent.add(i)
            yield i, data, pixels

    for indices, batch in _batches(sources, size, batch_size, max_pixels):
        seen.update(indices.tolist())
        yield indices, batch
    retry = []
    for i in sorted(sent - seen):
        if _is_array(items[i]):
            continue
        try:
            retry.append((i, _NO_BYTES, _second_decode(items[i], numbers[i], max_pixels)))
        except (ValueError, TypeError) as error:
            errors[i] = str(error)
    if retry:
        for indices, batch in _batches(lambda: iter(retry), size, batch_size, max_pixels):
            seen.update(indices.tolist())
            yield indices, batch
    for i in range(len(items)):
        if i not in seen and errors[i] is None:  # e.g. what Pillow decoded failed in the graph too
            errors[i] = f"{_name(items[i], numbers[i])}: could not be prepared for the model"


def _batches(sources, size, batch_size, max_pixels):
    """(index, encoded bytes or b"", pixels or an empty array) items → batches of (indices, images); an item whose
    decode fails is dropped (its index does not come out). The encoded items of a batch are decoded and resized by
    one call of a traced graph (the serving signature's: ``decode_and_resize``, items in parallel); when that call
    refuses an item, the batch's items go one by one through the per-item graph so that only the bad one drops."""
    chunk = []
    for item in sources():
        chunk.append(item)
        if len(chunk) == batch_size:
            yield from _prepared(chunk, size, max_pixels)
            chunk = []
    if chunk:
        yield from _prepared(chunk, size, max_pixels)


def _prepared(chunk, size, max_pixels):
    """Yields the (indices, images) batch of one chunk of items, unless none of them could be prepared."""
    encoded = [(i, data) for i, data, _ in chunk if data]
    images = {}
    if encoded:
        try:
            batch = _prepare_batch(size, max_pixels)(tf.constant([data for _, data in encoded]))
            images.update((i, image) for (i, _), image in zip(encoded, tf.unstack(batch)))
        except tf.errors.InvalidArgumentError:
            pass
    prepare = _prepare(size, max_pixels)
    for i, data, pixels in chunk:
        if i in images:
            continue
        try:
            images[i] = prepare(tf.constant(i, tf.int64), tf.constant(data), tf.constant(pixels))[1]
        except tf.errors.InvalidArgumentError:
            continue
    indices = np.asarray([i for i, _, _ in chunk if i in images], np.int64)
    if len(indices):
        yield indices, tf.stack([images[i] for i in indices])


_SPEC = (tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.string), tf.TensorSpec([None, None, None], tf.float32))


@functools.lru_cache(maxsize=32)
def _prepare_batch(size, max_pixels):
    """Encoded images [B] → float32 [B, h, w, 3]: the serving signature's input graph, traced once per input size."""
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], autograph=False)
    def prepare_batch(data):
        return graph.decode_and_resize(data, size, max_pixels)

    return prepare_batch


@functools.lru_cache(maxsize=32)
def _prepare(size, max_pixels):
    """The map function for one input size, traced once per process (tracing the decode graph takes about a second,
    which a ``predict`` of one image would otherwise pay on every call)."""
    @tf.function(input_signature=_SPEC, autograph=False)
    def prepare(index, data, pixels):
        image = tf.cond(tf.strings.length(data) > 0,
                        lambda: graph.resize_for_model(graph.decode_checked(data, index, max_pixels), size),
                        lambda: graph.resize_for_model(graph.to_rgb(pixels), size))
        return index, tf.ensure_shape(image, (*size, 3))

    return prepare


def _source(item, index, max_pixels):
    """(encoded bytes, no pixels) or (no bytes, checked pixels) of one input; raises naming it."""
    if _is_array(item):
        return _NO_BYTES, imageio.check_array(item, f"image {index}", max_pixels)
    if isinstance(item, (str, os.PathLike)):
        data = imageio.read_file(item)
    elif isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
    else:
        raise TypeError(f"image {index}: expected a path, encoded bytes or an RGB array, got {type(item).__name__}")
    if not data:  # the graph's empty string means "pixels"; Pillow names the empty file
        return _NO_BYTES, _second_decode(item, index, max_pixels)
    return data, _NO_PIXELS


def _second_decode(item, index, max_pixels):
    """Pillow's strict decode of an encoded item the graph refused: its pixels, or an ImageDecodeError naming it."""
    data = imageio.read_file(item) if isinstance(item, (str, os.PathLike)) else bytes(item)
    return imageio.decode_image(data, name=_name(item, index), max_pixels=max_pixels).astype(np.float32)


def _is_array(item):
    return isinstance(item, np.ndarray) or (hasattr(item, "__array__") and not isinstance(item, (str, bytes)))


def _name(item, index):
    return os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"image {index}"


def _is_one_image(images):
    """Whether ``images`` is a single item rather than a list of them (anything not iterable counts as one, and
    then gets its own error)."""
    if isinstance(images, (str, bytes, bytearray, memoryview, os.PathLike)):
        return True
    if isinstance(images, np.ndarray):
        return images.ndim in (2, 3)
    return not hasattr(images, "__iter__")
