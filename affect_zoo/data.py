"""Input pipelines: TFDS datasets → batched, prefetched tf.data pipelines for a model's tasks.

Models normalise their input themselves (``backbones.Preprocessing`` inside the network), so pipelines yield
RGB float32 in [0, 255] at the model's input size. Decoding and resizing are ``affect_zoo.imageio``'s
(``decode_image_bytes``, ``resize_for_model``), the graph ``affect_zoo.predict`` and the exported serving signature
use too, so an image is seen the same way everywhere.

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
# The image rules live in affect_zoo.imageio (graph half: .graph); these names stay importable from here (README, tests, builders).
from affect_zoo.imageio.graph import (apply_orientation, decode_image_bytes, exif_orientation, has_exif,  # noqa: F401
                                image_size_from_header, is_animated_webp, resize_for_model)
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
        value = task.handler.encode_target(task, [example[k] for k in mapping[task.name]])
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
        if not task.handler.ignorable:
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


def _check_target(task, spec, keys):
    expected = task.handler.example_shape(task)
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
