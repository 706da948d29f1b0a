"""Input pipelines: TFDS datasets → batched, prefetched tf.data pipelines for a model's tasks.

Models normalise their input themselves (``backbones.Preprocessing`` inside the network), so pipelines yield
RGB float32 in [0, 255] at the model's input size; training, ``affect_zoo.predict`` and the exported serving
signature all resize with ``resize_for_model``, so an image is seen the same way everywhere.

Which feature feeds which task is data (``DEFAULT_TARGETS``, or a recipe's ``dataset.targets``): task name →
feature keys, stacked on the last axis, so Emotion6's ``valence`` and ``arousal`` become one (2,) target. So is which
labels to leave out (a recipe's ``dataset.ignore``): task name → a boolean mask feature, whose true entries become
``-1`` in the multi-label target (VOC2007's ``difficult``), which the masked loss and mAP skip.

Models whose input is more than the image (mmemo: image, text, tags) use ``make_example_pipeline``: the same image
views, then a function of the whole example gives ``(x, y, sample_weight)``.

Augmentation (training only) is mild on purpose: aesthetics depend on composition, so the random crop keeps at
least ``MIN_CROP_AREA`` of the image. Crop and flip use stateless ops with a per-image seed drawn from the
pipeline's ``seed``, so a seeded pipeline gives the same images on every run however many threads map it (and a
JPEG is decoded only inside the crop). Keras' random layers draw from a stateful SeedGenerator, whose draws under
a parallel map depend on thread timing, so they serve only the optional RandAugment (Keras core; keras-cv is
unmaintained), which is mapped on one thread when a seed is given.

TensorFlow Datasets (and pandas, which it imports) is imported by the functions that read a built dataset, not
with this module: ``predict`` and the export use its decoder and resize and never read a dataset.
"""
import os

import keras
import numpy as np
import tensorflow as tf

from affect_zoo.backbones import preprocess_input, preprocessing_mode
from affect_zoo.metrics_multilabel import ignore_targets
from affect_zoo.tasks import as_tasks

DEFAULT_TARGETS = {
    "uae": {"aesthetic": ["aesthetic"], "aesthetic_score": ["aesthetic_score"], "emotion": ["emotion"]},
    "fi": {"emotion": ["label"]},
    "flickr_ldl": {"emotion": ["distribution"]},
    "twitter_ldl": {"emotion": ["distribution"]},
    "emotion6": {"emotion": ["distribution"], "va": ["valence", "arousal"]},
    "voc2007": {"labels": ["labels"]},
    "mirflickr25k": {"labels": ["labels"]},
}
#: the datasets tfds_builders/ builds (from manual files), as opposed to TFDS catalogue datasets
OUR_BUILDERS = (*DEFAULT_TARGETS, "affect_multimodal")
IMAGE_KEY = "image"
MIN_CROP_AREA = 0.8
CROP_ASPECT_RANGE = (3 / 4, 4 / 3)
DEFAULT_AUGMENT = {"crop": True, "flip": True, "randaugment": False, "resize_shorter": None}


def resize_for_model(images, size):
    """RGB images (H, W, 3) or (B, H, W, 3), any numeric dtype → float32 in [0, 255] at ``size`` = (h, w).

    The whole image is resized (bilinear, antialiased), not cropped: aesthetics depend on composition, so the
    evaluation view keeps all of it at the cost of distorting the aspect ratio.
    """
    images = tf.cast(images, tf.float32)
    resized = tf.image.resize(images, size, method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)


def decode_image_bytes(data):
    """Encoded image bytes (scalar tf.string) → RGB uint8 (H, W, 3), the one decoder of training, serving and ``predict``.

    ``tf.io.decode_image`` reads JPEG, PNG, GIF (first frame), BMP and WebP. Grey is repeated over three channels;
    alpha is composited on white, as ``affect_zoo.imageio`` does when the datasets are built (transparent pixels
    often store black). A JPEG's EXIF orientation is applied (``exif_orientation``), as Pillow does in
    ``affect_zoo.imageio``. An animated WebP is refused (InvalidArgumentError): TensorFlow's decoder corrupts the
    heap on one. Usable eagerly, which is how ``Client`` finds the item a server could not decode.
    """
    check = tf.debugging.Assert(tf.logical_not(is_animated_webp(data)), [
        "animated WebP: TensorFlow's decoder cannot read it; send a still image (e.g. its first frame)"])
    with tf.control_dependencies([check]):
        image = tf.io.decode_image(data, channels=0, dtype=tf.uint8, expand_animations=False)
    image = apply_orientation(tf.ensure_shape(image, [None, None, None]), exif_orientation(data))

    def grey():
        return tf.tile(image[..., :1], [1, 1, 3])

    def on_white(colour, alpha):
        a = tf.cast(alpha, tf.float32) / 255.0
        mixed = tf.cast(colour, tf.float32) * a + 255.0 * (1.0 - a)
        return tf.cast(tf.round(mixed), tf.uint8)

    rgb = tf.switch_case(tf.shape(image)[-1] - 1, [
        grey,
        lambda: on_white(grey(), image[..., 1:2]),
        lambda: image[..., :3],
        lambda: on_white(image[..., :3], image[..., 3:4]),
    ])
    return tf.ensure_shape(rgb, [None, None, 3])


# Header parsing in the graph, so the serving signature can refuse a decompression bomb before decoding it and apply
# EXIF orientation without Pillow. Reads never leave the data: the bytes are padded and positions clipped.
_HEADER_BYTES = 32
_IFD_ENTRIES = 32  # IFD0 entries searched for the Orientation tag (cameras write it among the first dozen)
# Where APP1 Exif is looked for: the first segment (cameras) or right after a standard JFIF APP0 (16 bytes long).
# Fixed positions compared as strings, as this runs for every training image and every op costs ~10 µs in a
# tf.data map: a walk over the segments (or a search for "Exif") halved the rate of decode_image_bytes.
_EXIF_AT = {6: b"\xff\xd8\xff\xe1", 24: b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"}
_ORIENTATION_TAG = 0x0112


def _reader(data):
    """``read(pos, n)``: n bytes of ``data`` from int64 ``pos`` as int64 [n], zeros past the end (only those n
    bytes are copied)."""
    length = tf.cast(tf.strings.length(data), tf.int64)

    def read(pos, n):
        start = tf.cast(tf.clip_by_value(tf.cast(pos, tf.int64), 0, length), tf.int32)
        piece = tf.strings.join([tf.strings.substr(data, start, n), tf.constant(b"\0" * n)])
        return tf.reshape(tf.cast(tf.io.decode_raw(tf.strings.substr(piece, 0, n), tf.uint8), tf.int64), [n])

    return read


def _uint(raw, little_endian):
    """Unsigned integers from the bytes on the last axis of ``raw`` (int64), little- or big-endian."""
    powers = [256 ** i for i in range(raw.shape[-1])]
    little, big = (tf.reduce_sum(raw * tf.constant(p, tf.int64), -1) for p in (powers, powers[::-1]))
    return tf.where(little_endian, little, big)


def _starts(raw, offset, magic):
    return tf.reduce_all(tf.equal(raw[offset:offset + len(magic)], list(magic)))


def is_animated_webp(data):
    """Whether encoded bytes (scalar tf.string) are a WebP with the animation flag of its VP8X chunk."""
    head = _reader(data)(0, _HEADER_BYTES)
    return _starts(head, 0, b"RIFF") & _starts(head, 8, b"WEBPVP8X") & tf.not_equal(head[20] & 2, 0)


def image_size_from_header(data):
    """(height, width) that encoded bytes (scalar tf.string) declare, int64 [2], read without decoding: JPEG's frame
    header (``tf.io.extract_jpeg_shape``), PNG's IHDR, GIF's logical screen, BMP's info header, WebP's VP8 / VP8L /
    VP8X chunk; [0, 0] for bytes in no such format (the decoder refuses those)."""
    h = _reader(data)(0, _HEADER_BYTES)

    def le(offset, n):
        return _uint(h[offset:offset + n], True)

    def be(offset, n):
        return _uint(h[offset:offset + n], False)

    def signed(value):
        return tf.where(value >= 2 ** 31, value - 2 ** 32, value)

    webp = _starts(h, 0, b"RIFF") & _starts(h, 8, b"WEBP")
    lossless = le(21, 4)  # VP8L: 14 bits width - 1, then 14 bits height - 1
    lossless_height = (tf.bitwise.right_shift(lossless, 14) & 0x3FFF) + 1
    cases = [
        (_starts(h, 0, b"\x89PNG\r\n\x1a\n"), (be(20, 4), be(16, 4))),
        (_starts(h, 0, b"GIF8"), (le(8, 2), le(6, 2))),
        (_starts(h, 0, b"BM"), (tf.abs(signed(le(22, 4))), tf.abs(signed(le(18, 4))))),  # height < 0: top-down
        (webp & _starts(h, 12, b"VP8 "), (le(28, 2) & 0x3FFF, le(26, 2) & 0x3FFF)),
        (webp & _starts(h, 12, b"VP8L"), (lossless_height, (lossless & 0x3FFF) + 1)),
        (webp & _starts(h, 12, b"VP8X"), (le(27, 3) + 1, le(24, 3) + 1)),
    ]
    size = tf.zeros([2], tf.int64)
    for matches, value in reversed(cases):
        size = tf.where(matches, tf.stack(value), size)
    return tf.cond(tf.io.is_jpeg(data), lambda: tf.cast(tf.io.extract_jpeg_shape(data)[:2], tf.int64), lambda: size)


def exif_orientation(data):
    """The EXIF Orientation (int32, 1–8) of JPEG bytes (scalar tf.string), read in the graph; 1 for other bytes,
    no Exif segment, no such tag or a value outside 1–8.

    Looks for the APP1 segment starting ``Exif\\0\\0`` as the first JPEG segment, or as the second after a standard
    16-byte JFIF APP0 (where cameras and most writers put it; Exif placed elsewhere is not seen), then for tag
    0x0112 among the first ``_IFD_ENTRIES`` entries of IFD0, in the TIFF block's byte order (``II`` little-, ``MM``
    big-endian).
    """
    read = _reader(data)
    found = _exif_segments(data)
    tiff = tf.where(found[0], tf.constant(12, tf.int64), tf.constant(30, tf.int64))  # after "Exif\0\0"

    def orientation(tiff):
        head = read(tiff, 8)
        little = _starts(head, 0, b"II")
        ifd = tiff + _uint(head[4:8], little)
        count = _uint(read(ifd, 2), little)
        entries = tf.reshape(read(ifd + 2, 12 * _IFD_ENTRIES), [_IFD_ENTRIES, 12])
        hit = tf.equal(_uint(entries[:, 0:2], little), _ORIENTATION_TAG) & (
            tf.range(_IFD_ENTRIES, dtype=tf.int64) < count)
        value = tf.gather(_uint(entries[:, 8:10], little), tf.argmax(tf.cast(hit, tf.int32)))
        valid = (little | _starts(head, 0, b"MM")) & tf.reduce_any(hit) & (value >= 1) & (value <= 8)
        return tf.where(valid, tf.cast(value, tf.int32), 1)

    # Most JPEGs have no Exif and skip the IFD's ~40 ops.
    return tf.cond(found[0] | found[1], lambda: orientation(tiff), lambda: tf.constant(1))


def _exif_segments(data):
    """[APP1 Exif is the first segment, it follows a standard JFIF APP0] (bool scalars) for encoded bytes."""
    head = tf.strings.join([tf.strings.substr(data, 0, 32), tf.constant(b"\0" * 32)])
    return [tf.equal(tf.strings.substr(head, at, 6), b"Exif\0\0")
            & tf.equal(tf.strings.substr(head, 0, len(start)), start) for at, start in _EXIF_AT.items()]


def has_exif(data):
    """Whether encoded bytes hold an APP1 Exif segment where ``exif_orientation`` reads one (no IFD parsed)."""
    first, second = _exif_segments(data)
    return first | second


def apply_orientation(image, orientation):
    """An (H, W, C) image as displayed under EXIF ``orientation`` (1–8), as Pillow's ``ImageOps.exif_transpose``:
    2 mirrored, 3 rotated 180°, 4 flipped, 5 transposed, 6 rotated 90° clockwise, 7 transversed, 8 rotated 90°
    counter-clockwise."""
    def transposed():
        return tf.transpose(image, [1, 0, 2])

    return tf.switch_case(orientation - 1, [
        lambda: image, lambda: tf.reverse(image, [1]), lambda: tf.reverse(image, [0, 1]),
        lambda: tf.reverse(image, [0]), transposed, lambda: tf.reverse(transposed(), [1]),
        lambda: tf.reverse(transposed(), [0, 1]), lambda: tf.reverse(transposed(), [0])])


def load_split(name_or_dir, split, data_dir=None, config=None):
    """One split of a built TFDS dataset as a tf.data.Dataset of example dicts, images still JPEG-encoded.

    ``name_or_dir`` is either a built dataset directory (``<data_dir>/<name>/[<config>/]<version>``, read with
    ``tfds.builder_from_directory``) or a dataset name (``config`` or ``name/config`` picks a config) found
    under ``data_dir`` (TFDS' default when None). Images stay encoded so that ``make_pipeline`` can decode only
    the random crop in training. A dataset that is not built yet → ValueError with the command that builds it.
    """
    import tensorflow_datasets as tfds

    return _builder(name_or_dir, data_dir, config).as_dataset(split=split,
                                                              decoders={IMAGE_KEY: tfds.decode.SkipDecoding()})


def load_metadata(name_or_dir, data_dir=None, config=None):
    """The ``info.metadata`` of a built dataset (found as ``load_split`` finds it): what a builder recorded at
    prepare time, e.g. affect_multimodal's vocabularies, which fix the sizes of mmemo's network."""
    return _builder(name_or_dir, data_dir, config).info.metadata


def _builder(name_or_dir, data_dir, config):
    import tensorflow_datasets as tfds

    path = os.path.expanduser(str(name_or_dir))
    if os.path.isdir(path) or path.startswith(("/", ".", "~")):
        if not os.path.isfile(os.path.join(path, "dataset_info.json")):
            name = next((part for part in reversed(path.split(os.sep)) if part in OUR_BUILDERS), "<name>")
            raise ValueError(f"no built dataset at {path} (no dataset_info.json); build it with "
                             f"{_build_command(name, None, '<data_dir>')} and pass "
                             f"<data_dir>/{name}/[<config>/]<version>")
        builder = tfds.builder_from_directory(path)
    else:
        name = f"{path}/{config}" if config else path
        try:
            builder = tfds.builder(name, data_dir=data_dir)
        except tfds.core.DatasetNotFoundError:
            builder = None
        if builder is None or not builder.is_prepared():
            base, _, config = name.partition("/")
            where = os.path.join(data_dir or tfds.core.constants.DATA_DIR, *name.split("/"))
            raise ValueError(f"dataset {name!r} is not built under {where}; build it with "
                             f"{_build_command(base, config, data_dir or '<data_dir>')}") from None
    return builder


def _build_command(name, config, data_dir):
    """The command that builds a dataset: ours from tfds_builders/ with their manual files, others by name."""
    option = f" --config {config}" if config else ""
    if name not in OUR_BUILDERS and name != "<name>":
        return f"`tfds build {name} --data_dir={data_dir}{option}`"
    return (f"`tfds build tfds_builders/{name} --manual_dir=<the {name} files> --data_dir={data_dir}{option}` "
            f"(see tfds_builders/README.md)")


def make_pipeline(dataset, tasks, image_size, batch_size, training, targets=None, augment=None,
                  shuffle_buffer=1024, seed=None, drop_remainder=None, cache=False, normalize=None, ignore=None):
    """Examples → batched, prefetched ``(images, {task name: target})`` for ``MultiTaskModel.fit``/``evaluate``.

    Args:
        dataset: examples as ``load_split`` (or ``tfds.load``) gives them: a dict with ``image`` (encoded or
            decoded RGB) and the target features.
        tasks: the model's Task objects (or their dicts); a target is made for each.
        image_size: (h, w) of the model input.
        batch_size: the global batch (split over replicas by the strategy).
        training: shuffle and augment (random crop keeping ≥ MIN_CROP_AREA, horizontal flip, optional
            RandAugment); else every image is ``resize_for_model`` of the whole image, in order.
        targets: task name → feature key(s), or a dataset name in DEFAULT_TARGETS; None: each task reads the
            feature of its own name. A single integer label feeding a distribution/multi-label task becomes
            one-hot; several keys are stacked on the last axis.
        augment: dict over DEFAULT_AUGMENT's keys (``crop``, ``flip``, ``randaugment``: bools;
            ``resize_shorter``: None or an int S), or False for none; ignored unless training. With
            ``resize_shorter=S`` the training view is instead the protocol "resize the shorter side to S (aspect
            kept), then crop ``image_size``": a random crop (``crop`` true) or the centre one, then the flip.
            Evaluation keeps the whole-image resize either way (so ``evaluate``, ``predict`` and serving agree).
        shuffle_buffer: examples in the shuffle buffer (of encoded images, so cheap); 0 turns shuffling off.
        seed: makes shuffling and augmentation reproducible; None draws fresh randomness.
        drop_remainder: None → True when the current strategy has several replicas (a last batch smaller than
            the replica count leaves a replica empty and oneDNN convolutions crash on it), else False. Build the
            pipeline inside ``strategy.scope()`` for that default to see the strategy.
        cache: True caches in memory, a path on disk: the encoded examples in training, the resized images in
            evaluation (everything before the random part; float32, 0.6 MB an image at 224 px).
        normalize: a backbone name: images go through ``backbones.preprocess_input`` for models that do not
            normalise themselves (zoo models do; leave None for them).
        ignore: task name → a boolean feature of the task's shape (a recipe's ``dataset.ignore``): the task's
            target is ``-1`` where it is true (``metrics_multilabel.ignore_targets``), so that label of that sample
            is left out of the masked loss and of mAP. Multilabel tasks only.

    Targets are float32, classification labels int32. A target whose shape does not fit its task raises a
    ValueError here, from the dataset's element_spec, rather than at the first training step.
    """
    tasks = as_tasks(tasks)
    image_size = tuple(int(s) for s in image_size)
    spec = dataset.element_spec
    if not isinstance(spec, dict) or IMAGE_KEY not in spec:
        raise ValueError(f"dataset elements must be dicts with an {IMAGE_KEY!r} feature, got {spec}")
    mapping = _target_mapping(targets, tasks, spec)
    masks = _ignore_mapping(ignore, tasks, spec)
    if normalize is not None:
        preprocessing_mode(normalize)
    if drop_remainder is None:
        drop_remainder = tf.distribute.get_strategy().num_replicas_in_sync > 1

    def target(task, example):
        value = _target(task, [example[k] for k in mapping[task.name]])
        return ignore_targets(value, example[masks[task.name]]) if task.name in masks else value

    def select(example):
        return example[IMAGE_KEY], {t.name: target(t, example) for t in tasks}

    ds = dataset.map(select, num_parallel_calls=tf.data.AUTOTUNE)
    for task in tasks:
        _check_target(task, ds.element_spec[1][task.name], mapping[task.name])
    ds = _image_views(ds, image_size, training, augment, shuffle_buffer, seed, cache)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if normalize is not None:
        ds = ds.map(lambda x, y: (preprocess_input(normalize, x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def make_example_pipeline(dataset, example_fn, image_size, batch_size, training, augment=None,
                          shuffle_buffer=1024, seed=None, drop_remainder=None, cache=False):
    """Examples → batched ``example_fn(example)`` for models whose input is more than the image (mmemo).

    The image gets exactly ``make_pipeline``'s view (training: seeded crop, flip, optional RandAugment; else the
    whole image resized), as float32 (h, w, 3) in [0, 255] under ``image``; ``example_fn`` then maps the whole
    example dict to ``(x, y)`` or ``(x, y, sample_weight)`` (e.g. ``mmemo.training_example``). The other arguments
    are ``make_pipeline``'s.
    """
    image_size = tuple(int(s) for s in image_size)
    spec = dataset.element_spec
    if not isinstance(spec, dict) or IMAGE_KEY not in spec:
        raise ValueError(f"dataset elements must be dicts with an {IMAGE_KEY!r} feature, got {spec}")
    if drop_remainder is None:
        drop_remainder = tf.distribute.get_strategy().num_replicas_in_sync > 1
    ds = dataset.map(lambda example: (example[IMAGE_KEY], {k: v for k, v in example.items() if k != IMAGE_KEY}),
                     num_parallel_calls=tf.data.AUTOTUNE)
    ds = _image_views(ds, image_size, training, augment, shuffle_buffer, seed, cache)
    ds = ds.map(lambda image, rest: example_fn({**rest, IMAGE_KEY: image}), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)


def _image_views(ds, image_size, training, augment, shuffle_buffer, seed, cache):
    """(encoded image, anything) pairs → (the image as the model sees it, the same thing); see ``make_pipeline``."""
    if not training:
        ds = ds.map(lambda image, y: (resize_for_model(_decode(image), image_size), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
        return _cached(ds, cache)
    options = _augment_options(augment, image_size)
    ds = _cached(ds, cache)
    if shuffle_buffer:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    ds = tf.data.Dataset.zip(ds, seeds).map(
        lambda pair, s: (_training_view(pair[0], s, image_size, options), pair[1]),
        num_parallel_calls=tf.data.AUTOTUNE)
    if options["randaugment"]:
        rand_augment = keras.layers.RandAugment(value_range=(0, 255), seed=seed)
        ds = ds.map(lambda x, y: (tf.clip_by_value(rand_augment(x), 0.0, 255.0), y),
                    num_parallel_calls=None if seed is not None else tf.data.AUTOTUNE)
    return ds


def _cached(ds, cache):
    if cache is False or cache is None:
        return ds
    return ds.cache("" if cache is True else str(cache))


def _target_mapping(targets, tasks, spec):
    """task name → list of feature keys, checked against the dataset's features."""
    if isinstance(targets, str):
        if targets not in DEFAULT_TARGETS:
            raise ValueError(f"no default targets for dataset {targets!r}; known: {', '.join(DEFAULT_TARGETS)}")
        targets = DEFAULT_TARGETS[targets]
    features = sorted(k for k in spec if k != IMAGE_KEY)
    mapping = {}
    for task in tasks:
        if targets is None:
            keys = [task.name]
        elif task.name in targets:
            keys = targets[task.name]
            keys = [keys] if isinstance(keys, str) else list(keys)
        else:
            raise ValueError(f"targets give no feature for task {task.name!r}; they map {sorted(targets)}")
        for key in keys:
            if key not in spec or key == IMAGE_KEY:
                hint = "" if targets is not None else (
                    f"; pass targets= a mapping or a dataset name ({', '.join(DEFAULT_TARGETS)})")
                raise ValueError(f"task {task.name!r}: feature {key!r} is not in the dataset, whose features are "
                                 f"{features}{hint}")
            if not (spec[key].dtype.is_numeric or spec[key].dtype.is_bool):
                raise ValueError(f"task {task.name!r}: feature {key!r} has dtype {spec[key].dtype.name}, not a "
                                 f"number")
        mapping[task.name] = keys
    return mapping


def _ignore_mapping(ignore, tasks, spec):
    """task name → the mask feature whose true entries make that task's target -1, checked against the data."""
    by_name = {t.name: t for t in tasks}
    out = {}
    for name, key in (ignore or {}).items():
        task = by_name.get(name)
        if task is None:
            raise ValueError(f"ignore names task {name!r}, which is not one of {sorted(by_name)}")
        if task.kind != "multilabel":
            raise ValueError(f"ignore: task {name!r} is {task.kind}; only multilabel targets can mark labels "
                             f"ignored (-1)")
        if not isinstance(key, str) or key not in spec or key == IMAGE_KEY:
            raise ValueError(f"ignore: task {name!r}: mask feature {key!r} is not in the dataset, whose features "
                             f"are {sorted(k for k in spec if k != IMAGE_KEY)}")
        if not (spec[key].dtype.is_bool or spec[key].dtype.is_integer) or tuple(spec[key].shape) != (task.size,):
            raise ValueError(f"ignore: task {name!r}: mask feature {key!r} is {spec[key].dtype.name} "
                             f"{tuple(spec[key].shape)}, expected a boolean ({task.size},) mask")
        out[name] = key
    return out


def _target(task, values):
    """One example's target: int32 class index for classification, else a float32 vector of the task's size."""
    if task.kind == "classification":
        return tf.cast(values[0] if len(values) == 1 else tf.stack(values), tf.int32)
    if (len(values) == 1 and values[0].shape.rank == 0 and values[0].dtype.is_integer and task.size > 1
            and task.kind in ("distribution", "multilabel")):
        return tf.one_hot(values[0], task.size, dtype=tf.float32)
    return tf.concat([tf.reshape(tf.cast(v, tf.float32), [-1]) for v in values], axis=0)


def _check_target(task, spec, keys):
    expected = () if task.kind == "classification" else (task.size,)
    shape = tuple(spec.shape)
    if len(shape) != len(expected) or any(s is not None and s != e for s, e in zip(shape, expected)):
        raise ValueError(f"task {task.name!r} ({task.kind}, size {task.size}): target from {keys} has shape "
                         f"{shape} per example, expected {expected}")


def _augment_options(augment, image_size):
    if augment is False:
        return {k: False for k in DEFAULT_AUGMENT}
    unknown = set(augment or {}) - set(DEFAULT_AUGMENT)
    if unknown:
        raise ValueError(f"unknown augment option(s) {sorted(unknown)}; known: {', '.join(DEFAULT_AUGMENT)}")
    options = {**DEFAULT_AUGMENT, **(augment or {})}
    shorter = options["resize_shorter"]
    if shorter is not None and (isinstance(shorter, bool) or not isinstance(shorter, int)
                                or shorter < max(image_size)):
        raise ValueError(f"augment resize_shorter must be an int >= the input size {tuple(image_size)} (the crop "
                         f"is taken from the resized image), got {shorter!r}")
    return options


def _decode(image):
    """Encoded bytes → RGB uint8 (H, W, 3); a decoded image passes through."""
    if image.dtype != tf.string:
        return image
    return decode_image_bytes(image)


def _training_view(image, seed, size, options):
    """A random crop (decoding only the crop of a JPEG), resized to ``size``, maybe flipped; all seeded. With
    ``resize_shorter``: the shorter side resized to it, then a ``size`` crop (random or central)."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(tf.stack([seed, 0]), 2))
    if options["resize_shorter"]:
        x = resize_shorter_side(_decode(image), options["resize_shorter"])
        x = _fixed_crop(x, size, crop_seed if options["crop"] else None)
    else:
        if options["crop"]:
            image = _random_crop(image, crop_seed)
        x = resize_for_model(_decode(image), size)
    if options["flip"]:
        x = tf.image.stateless_random_flip_left_right(x, flip_seed)
    return x


def resize_shorter_side(image, shorter):
    """An RGB image (H, W, 3) → float32 in [0, 255] whose shorter side is ``shorter`` px, aspect ratio kept (the
    longer side rounded; bilinear, antialiased as in ``resize_for_model``)."""
    hw = tf.cast(tf.shape(image)[:2], tf.float32)
    target = tf.cast(tf.round(hw * (float(shorter) / tf.reduce_min(hw))), tf.int32)
    return resize_for_model(image, tf.maximum(target, shorter))


def _fixed_crop(image, size, seed):
    """A ``size`` crop of ``image`` (at least that large): at a seeded uniform offset, or centred if seed is None."""
    room = tf.shape(image)[:2] - tf.constant(size, tf.int32)
    if seed is None:
        offset = room // 2
    else:
        offset = tf.cast(tf.random.stateless_uniform([2], seed) * tf.cast(room + 1, tf.float32), tf.int32)
        offset = tf.minimum(offset, room)
    return image[offset[0]:offset[0] + size[0], offset[1]:offset[1] + size[1]]


def _random_crop(image, seed):
    if image.dtype == tf.string:
        return tf.cond(  # decode_and_crop_jpeg ignores EXIF orientation: photos with Exif take the general path
            tf.io.is_jpeg(image) & tf.logical_not(has_exif(image)),
            lambda: tf.io.decode_and_crop_jpeg(image, _crop_window(tf.io.extract_jpeg_shape(image), seed),
                                               channels=3),
            lambda: _random_crop(_decode(image), seed))
    y, x, h, w = tf.unstack(_crop_window(tf.shape(image), seed))
    return image[y:y + h, x:x + w]


def _crop_window(shape, seed):
    """[y, x, h, w] of a crop covering a fraction U(MIN_CROP_AREA, 1) of the image, with its aspect ratio
    changed by a factor in CROP_ASPECT_RANGE (log-uniform) as far as the image allows."""
    u = tf.random.stateless_uniform([4], seed)
    area = MIN_CROP_AREA + (1.0 - MIN_CROP_AREA) * u[0]
    low, high = (float(np.log(r)) for r in CROP_ASPECT_RANGE)
    ratio = tf.exp(low + (high - low) * u[1])
    fh, fw = tf.sqrt(area / ratio), tf.sqrt(area * ratio)
    fh, fw = tf.where(fw > 1.0, area, fh), tf.minimum(fw, 1.0)
    fh, fw = tf.minimum(fh, 1.0), tf.where(fh > 1.0, area, fw)
    full = tf.cast(shape[:2], tf.int32)
    size = tf.cast(tf.round(tf.stack([fh, fw]) * tf.cast(full, tf.float32)), tf.int32)
    size = tf.clip_by_value(size, 1, full)
    offset = tf.cast(u[2:] * tf.cast(full - size + 1, tf.float32), tf.int32)
    return tf.concat([tf.minimum(offset, full - size), size], axis=0)
