"""Multimodal multitask emotion recognition from an image, a text and tags (Pagé Fortin & Chaib-draa, 2019).

Three encoders, each to a 300-d feature:

    image  staged backbone → GAP → FC 300 (ReLU)
    text   token embeddings (trainable; optionally initialised from word vectors) of the first 150 words →
           parallel Conv1D h = 3, 4, 5 with 100 filters each (ReLU; plain h×d windows, "valid" padding) →
           global max, average and min pooling over the windows that start on a real token → dropout → FC 300
           (ReLU)
    tags   tag embeddings (250) → Conv1D 300 filters (width 1 by default: tags are a set, so the branch is
           order-invariant) → global max over the real tags → 300

and seven classifiers, one per non-empty subset of modalities, each FC 256 → FC 128 (ReLU) → softmax over K
classes on the concatenated features of its modalities: ``p_image``, ``p_text``, ``p_tags``, ``p_image_text``,
``p_image_tags``, ``p_text_tags``, ``p_all`` (``OUTPUT_NAMES``, in this order).

Inputs (a dict): ``image`` (H, W, 3) RGB 0–255, ``text`` (max_text_length,) int ids, ``tags`` (max_tags,) int
ids (id 0 = padding, 1 = unknown; see ``affect_zoo.text``) and ``image_present``, ``text_present``,
``tags_present``, float 0/1 per sample. An absent modality is fed as zeros (a black image, all-padding ids).

Outputs: the seven probability vectors, ``prediction`` — per sample, the output of the classifier whose modalities
are exactly the present ones — and ``answered_by``, the index of that classifier in ``OUTPUT_NAMES`` (int32).
A sample with no modality present gets the uniform distribution and ``answered_by = -1`` (the builder refuses
such records, so this only happens at predict time).

Text encoder options, each defaulting to the paper's: ``max_text_length=150`` (the paper cuts text at 150 words),
``text_padding="valid"`` (the paper's plain h×300 windows; "same" zero-pads the sequence so there is one window
per token) and ``text_dropout=0.5`` (the paper's text extractor uses dropout; the rate and its place, on the
pooled features before the FC, are assumed — Kim's 2014 text CNN, which the extractor follows, uses 0.5 there).
With "valid" windows a text shorter than the widest window still gets one window: the ids are padded to at least
max(h) inside the network, and a window counts in the pooling when its first token is a real one.

Training: the loss is the sum of the seven cross-entropies, a classifier's term dropped for every sample lacking
one of its modalities. This reuses ``affect_zoo.training.MultiTaskModel`` unchanged: ``tasks(K)`` are seven
classification tasks named after the outputs, and ``training_example`` turns a dataset element into
``(x, y, sample_weight)`` with one 0/1 weight per task and sample, the product of the classifier's presence
masks. MultiTaskModel gives each task mean_i(w_ik·CE_ik) and the fixed balancer sums them with weight 1, so the
loss is (1/B)·Σ_i Σ_k w_ik·CE_ik: a dropped term contributes exactly 0 to the loss and its gradient (no custom
train_step needed). The ``prediction``/``answered_by`` outputs are not tasks and take no loss. Note that absent
images still pass through the image backbone: with BatchNormalization in training mode, their black pixels take
part in the batch statistics (as padding does in any batch); the loss terms are exact regardless. The encoders
are declared shared (``affect_zoo.models.shared``; each feeds four of the seven classifiers), so the gradient
balancers PCGrad, MGDA and CAGrad apply; GradNorm does not (no convolution reaches all seven).
"""
import itertools

import keras
import numpy as np
from keras import ops

from affect_zoo import backbones
from affect_zoo.models import shared
from affect_zoo.tasks import Task

MODALITIES = ("image", "text", "tags")
CLASSIFIERS = tuple(c for n in (1, 2, 3) for c in itertools.combinations(MODALITIES, n))
OUTPUT_NAMES = tuple("p_all" if len(c) == 3 else "p_" + "_".join(c) for c in CLASSIFIERS)
PRESENT = {m: f"{m}_present" for m in MODALITIES}
POOLING_MODES = ("max", "avg", "min")
TEXT_PADDINGS = ("valid", "same")
MAX_TEXT_LENGTH = 150  # the paper's cut; the affect_multimodal builder's too


@keras.saving.register_keras_serializable(package="affect_zoo")
class MaskedGlobalPooling1D(keras.layers.Layer):
    """Global pooling of ``[x, mask]``: x (B, T, F) over the positions where ``mask`` (B, T') is non-zero (a bool
    mask, or the token ids themselves: id 0 is padding), for each of ``modes`` ("max", "avg", "min"),
    concatenated on the feature axis. A sample with no valid position gives zeros. A mask longer than x
    (T' > T: x is a "valid" convolution of width T' − T + 1) is cut to its first T entries, so window i counts
    when its first token is real."""

    def __init__(self, modes=("max",), **kwargs):
        super().__init__(**kwargs)
        modes = tuple(modes)
        if not modes or any(m not in POOLING_MODES for m in modes):
            raise ValueError(f"modes must be a non-empty subset of {POOLING_MODES}, got {modes!r}")
        self.modes = modes

    def call(self, inputs):
        x, mask = inputs
        mask = ops.cast(ops.not_equal(mask[:, :ops.shape(x)[1]], 0), x.dtype)[..., None]
        count = ops.sum(mask, axis=1)
        has_any = ops.cast(count > 0, x.dtype)
        out = []
        for mode in self.modes:
            if mode == "avg":
                out.append(ops.divide_no_nan(ops.sum(x * mask, axis=1), count))
            else:
                sign = 1.0 if mode == "max" else -1.0
                # masked positions pushed far below any real value, then the extreme taken
                pooled = sign * ops.max(sign * x - (1.0 - mask) * 1e9, axis=1)
                out.append(pooled * has_any)
        return out[0] if len(out) == 1 else ops.concatenate(out, axis=-1)

    def compute_output_shape(self, input_shape):
        x_shape = tuple(input_shape[0])
        return (x_shape[0], x_shape[-1] * len(self.modes))

    def get_config(self):
        return {**super().get_config(), "modes": list(self.modes)}


@keras.saving.register_keras_serializable(package="affect_zoo")
class PadIds(keras.layers.Layer):
    """Right-pads (B, T) int ids with the padding id 0 to at least ``min_length`` positions (a "valid" window of
    width h needs T >= h)."""

    def __init__(self, min_length, **kwargs):
        super().__init__(**kwargs)
        self.min_length = int(min_length)

    def call(self, ids):
        return ops.pad(ids, [[0, 0], [0, max(0, self.min_length - ids.shape[1])]])

    def compute_output_shape(self, input_shape):
        return (input_shape[0], max(self.min_length, input_shape[1]))

    def get_config(self):
        return {**super().get_config(), "min_length": self.min_length}


@keras.saving.register_keras_serializable(package="affect_zoo")
class ModalitySelector(keras.layers.Layer):
    """Picks, per sample, the classifier whose modalities are exactly the present ones.

    Inputs: the seven (B, K) probability tensors in ``OUTPUT_NAMES`` order, then the three presence masks
    (B,) in ``MODALITIES`` order (present when > 0.5). Output: {"prediction": (B, K), "answered_by": (B,) int32};
    no modality present → uniform prediction and ``answered_by = -1``.
    """

    def call(self, inputs):
        probabilities, masks = list(inputs[:-3]), list(inputs[-3:])
        if len(probabilities) != len(CLASSIFIERS):
            raise ValueError(f"ModalitySelector takes {len(CLASSIFIERS)} probability tensors and 3 masks")
        code = 0
        for bit, mask in enumerate(masks):
            code = code + ops.cast(ops.reshape(mask, (-1,)) > 0.5, "int32") * (2 ** bit)
        table = [-1] * 8
        for index, combo in enumerate(CLASSIFIERS):
            table[sum(2 ** MODALITIES.index(m) for m in combo)] = index
        answered = ops.take(ops.convert_to_tensor(table, "int32"), code)
        stacked = ops.stack(probabilities, axis=1)
        pick = ops.one_hot(ops.maximum(answered, 0), len(CLASSIFIERS), dtype=stacked.dtype)
        chosen = ops.sum(stacked * pick[..., None], axis=1)
        uniform = ops.ones_like(chosen) / ops.cast(ops.shape(chosen)[-1], chosen.dtype)
        prediction = ops.where((answered >= 0)[:, None], chosen, uniform)
        return {"prediction": prediction, "answered_by": answered}


def build(backbone, num_classes, input_shape=(224, 224, 3), *, text_vocab_size, tags_vocab_size,
          max_text_length=MAX_TEXT_LENGTH, max_tags=10, weights=None, alpha=None, text_embedding_dim=300,
          text_kernel_sizes=(3, 4, 5), text_filters=100, text_pooling=POOLING_MODES, text_padding="valid",
          text_dropout=0.5, tag_embedding_dim=250, tag_filters=300, tag_kernel_size=1, feature_dim=300,
          classifier_units=(256, 128), dropout=0.0, text_embeddings=None, train_text_embeddings=True, name=None):
    """Build the multimodal network (see the module docstring); returns a functional keras.Model.

    Args:
        backbone: image backbone, a name from ``affect_zoo.backbones.available()``.
        num_classes: K, the number of emotion classes.
        input_shape: the image's (H, W, 3).
        text_vocab_size, tags_vocab_size: vocabulary sizes, padding and OOV included (``len(Vocabulary)``).
        max_text_length, max_tags: the id sequences' lengths (the paper: 150 words, at most 10 tags).
        text_padding: "valid" (the paper's plain h×d windows) or "same" (one window per token).
        text_dropout: rate on the text's pooled features before its FC (the paper uses dropout there; 0.5 is
            assumed); 0 turns it off.
        weights, alpha: image backbone init and MobileNetV2 width, as in ``multitask.build``.
        text_embeddings: None or a (text_vocab_size, text_embedding_dim) array (e.g. from
            ``affect_zoo.text.load_word_vectors``) copied into the text embedding after building; it stays
            trainable unless ``train_text_embeddings=False``.
        dropout: rate on each classifier's input.
    """
    if int(num_classes) < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if text_padding not in TEXT_PADDINGS:
        raise ValueError(f"text_padding must be one of {TEXT_PADDINGS}, got {text_padding!r}")
    if not 0.0 <= float(text_dropout) < 1.0:
        raise ValueError(f"text_dropout must be in [0, 1), got {text_dropout!r}")
    inputs = {
        "image": keras.Input(shape=input_shape, name="image"),
        "text": keras.Input(shape=(max_text_length,), dtype="int32", name="text"),
        "tags": keras.Input(shape=(max_tags,), dtype="int32", name="tags"),
        **{PRESENT[m]: keras.Input(shape=(), dtype="float32", name=PRESENT[m]) for m in MODALITIES},
    }
    x = backbones.Preprocessing(backbone, name="image_preprocessing")(inputs["image"])
    image_stages = backbones.build_stages(backbone, input_shape, weights, name_prefix="image_", alpha=alpha)
    x = image_stages(x)
    x = keras.layers.GlobalAveragePooling2D(name="image_pool")(x)
    features = {"image": keras.layers.Dense(feature_dim, activation="relu", name="image_fc")(x)}

    embedding = keras.layers.Embedding(text_vocab_size, text_embedding_dim, trainable=train_text_embeddings,
                                       name="text_embedding")
    ids = inputs["text"]
    if text_padding == "valid" and max_text_length < max(text_kernel_sizes):
        ids = PadIds(max(text_kernel_sizes), name="text_pad")(ids)
    t = embedding(ids)
    pooled = []
    for h in text_kernel_sizes:
        c = keras.layers.Conv1D(text_filters, h, padding=text_padding, activation="relu", name=f"text_conv{h}")(t)
        pooled.append(MaskedGlobalPooling1D(text_pooling, name=f"text_pool{h}")([c, ids]))
    t = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="text_concat")(pooled)
    if text_dropout:
        # (not "text_dropout": that is the name of p_text's classifier dropout)
        t = keras.layers.Dropout(text_dropout, name="text_pooled_dropout")(t)
    features["text"] = keras.layers.Dense(feature_dim, activation="relu", name="text_fc")(t)

    g = keras.layers.Embedding(tags_vocab_size, tag_embedding_dim, name="tags_embedding")(inputs["tags"])
    g = keras.layers.Conv1D(tag_filters, tag_kernel_size, padding="same", activation="relu", name="tags_conv")(g)
    features["tags"] = MaskedGlobalPooling1D(("max",), name="tags_pool")([g, inputs["tags"]])

    outputs = {}
    for combo, out_name in zip(CLASSIFIERS, OUTPUT_NAMES):
        stem = out_name[2:]
        z = features[combo[0]] if len(combo) == 1 else keras.layers.Concatenate(name=f"{stem}_concat")(
            [features[m] for m in combo])
        if dropout:
            z = keras.layers.Dropout(dropout, name=f"{stem}_dropout")(z)
        for i, units in enumerate(classifier_units, start=1):
            z = keras.layers.Dense(units, activation="relu", name=f"{stem}_fc{i}")(z)
        outputs[out_name] = keras.layers.Dense(num_classes, activation="softmax", name=out_name)(z)
    selected = ModalitySelector(name="selector")(
        [outputs[n] for n in OUTPUT_NAMES] + [inputs[PRESENT[m]] for m in MODALITIES])
    outputs.update(selected)
    model = keras.Model(inputs, outputs, name=name or f"mmemo_{backbone}")
    encoders = [stage.name for stage in image_stages] + ["image_fc", "text_embedding"] + [
        f"text_conv{h}" for h in text_kernel_sizes] + ["text_fc", "tags_embedding", "tags_conv"]
    shared.declare(model, encoders, (), "mmemo: each encoder feeds four of the seven classifiers, so no "
                   "convolution receives every task's gradient")
    if text_embeddings is not None:
        matrix = np.asarray(text_embeddings, dtype="float32")
        if matrix.shape != (text_vocab_size, text_embedding_dim):
            raise ValueError(f"text_embeddings has shape {matrix.shape}; expected "
                             f"({text_vocab_size}, {text_embedding_dim})")
        embedding.set_weights([matrix])
    return model


def build_for_dataset(backbone, metadata, input_shape=(224, 224, 3), *, word_vectors=None, **options):
    """``build`` with the sizes an ``affect_multimodal`` dataset fixes, read from its ``info.metadata``: K (the
    classes), the vocabulary sizes, ``max_text_length`` and ``max_tags``. ``word_vectors``: a local word-vector
    text file initialising the text embedding (``affect_zoo.text.load_word_vectors``; its dimension becomes
    ``text_embedding_dim``). Other options go to ``build``."""
    from affect_zoo.text import load_word_vectors, vocabularies_from_metadata

    if word_vectors is not None:
        matrix, _ = load_word_vectors(word_vectors, vocabularies_from_metadata(metadata)[0])
        options.update(text_embeddings=matrix, text_embedding_dim=matrix.shape[1])
    return build(backbone, len(metadata["classes"]), input_shape, **dataset_options(metadata), **options)


def dataset_options(metadata):
    """The ``build`` options an ``affect_multimodal`` dataset fixes (vocabulary sizes, sequence lengths), from its
    ``info.metadata``: what a trained entry must be rebuilt with for its weights to fit."""
    from affect_zoo.text import vocabularies_from_metadata

    text_vocab, tags_vocab = vocabularies_from_metadata(metadata)
    return {"text_vocab_size": len(text_vocab), "tags_vocab_size": len(tags_vocab),
            "max_text_length": int(metadata["max_text_length"]), "max_tags": int(metadata["max_tags"])}


def tasks(num_classes, labels=None):
    """The seven classification tasks MultiTaskModel trains, named after the classifier outputs."""
    return [Task(name, "classification", int(num_classes), labels=labels) for name in OUTPUT_NAMES]


def sample_weights(x):
    """{output: (B,) float32 weight}: 1 where all of the classifier's modalities are present, else 0."""
    weights = {}
    for combo, name in zip(CLASSIFIERS, OUTPUT_NAMES):
        w = 1.0
        for m in combo:
            w = w * ops.cast(ops.cast(x[PRESENT[m]], "float32") > 0.5, "float32")
        weights[name] = w
    return weights


def training_example(example, image_size=None):
    """A dataset element → ``(x, y, sample_weight)`` for MultiTaskModel (use in ``Dataset.map``).

    ``example`` holds ``image``, ``text``, ``tags``, the three ``*_present`` flags (bool or 0/1) and ``label``
    (as the ``affect_multimodal`` TFDS dataset yields them). With ``image_size`` = (h, w) the image is resized
    with ``affect_zoo.data.resize_for_model`` (batch the result after this map).
    """
    image = example["image"]
    if image_size is not None:
        from affect_zoo.data import resize_for_model

        image = resize_for_model(image, image_size)
    x = {"image": ops.cast(image, "float32"), "text": ops.cast(example["text"], "int32"),
         "tags": ops.cast(example["tags"], "int32"),
         **{PRESENT[m]: ops.cast(example[PRESENT[m]], "float32") for m in MODALITIES}}
    y = {name: example["label"] for name in OUTPUT_NAMES}
    return x, y, sample_weights(x)


def encode_records(records, text_vocabulary, tags_vocabulary, input_shape=(224, 224, 3),
                   max_text_length=MAX_TEXT_LENGTH, max_tags=10):
    """Model inputs (dict of NumPy arrays) for raw records {"image": path/bytes/array, "text": str,
    "tags": [str]}, any key absent or None. Unknown words and tags become the OOV id, long text and tag lists are
    truncated (see ``affect_zoo.text``); a record with nothing present is encoded as such (the model then answers
    uniformly with ``answered_by = -1``)."""
    from affect_zoo.data import resize_for_model
    from affect_zoo.imageio import decode_image

    n = len(records)
    x = {"image": np.zeros((n, *input_shape), "float32"), "text": np.zeros((n, max_text_length), "int32"),
         "tags": np.zeros((n, max_tags), "int32"), **{PRESENT[m]: np.zeros((n,), "float32") for m in MODALITIES}}
    for i, record in enumerate(records):
        if record.get("image") is not None:
            image = record["image"]
            if not isinstance(image, np.ndarray):
                image = decode_image(image)
            x["image"][i] = np.asarray(resize_for_model(image, input_shape[:2]))
            x["image_present"][i] = 1.0
        x["text"][i], present = text_vocabulary.encode_text(record.get("text"), max_text_length)
        x["text_present"][i] = float(present)
        x["tags"][i], present = tags_vocabulary.encode_tags(record.get("tags"), max_tags)
        x["tags_present"][i] = float(present)
    return x
