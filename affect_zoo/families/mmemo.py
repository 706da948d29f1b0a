"""``mmemo`` (Pagé Fortin & Chaib-draa 2019): image, text and tags, one classifier per subset of modalities.

The inputs (image, text, tags, presence flags), targets and per-classifier sample weights come from
``mmemo.training_example``, and the network is sized by the dataset's ``info.metadata`` (vocabularies, sequence
lengths): training records those sizes as ``produced.network_options`` and ships the vocabularies beside the
weights. A classifier is measured on the samples that have all of its modalities, and ``prediction`` (the
classifier of exactly the present modalities) on all of them.

Inference: ``zoo.load`` attaches the vocabularies (``model.vocabularies``, {"text", "tags"}: ``Vocabulary``) read
from beside the weights. ``predict(model, images, text=..., tags=...)`` takes one image (or None), text (str or
None) and tags (a list of str, or None) per post, encoded with ``affect_zoo.text``. The export serves the same:
``serving_default`` takes ``images`` (encoded bytes, b"" for no image), ``text`` (tf.string [None]) and ``tags``
(tf.string [None, None], rows padded with ""), encoded in the graph by ``affect_zoo.text.graph`` with the
vocabularies as lookup tables; ``predict_tensor`` takes ``images`` as float32 pixels with ``image_present``
(float32 [None], 0 or 1) beside the same ``text`` and ``tags``. Both answer every classifier's outputs, plus
``prediction_probs`` / ``prediction_label`` (the classifier of exactly the present modalities) and ``answered_by``
(its index in ``mmemo.OUTPUT_NAMES``, int32; -1 when nothing was given; its name, or None, in ``predict``).
"""
import pathlib

import numpy as np
import tensorflow as tf

from affect_zoo import data, recipes, text
from affect_zoo.families.base import BYTES_SIGNATURE, IMAGES, TENSOR_SIGNATURE, Family, register_family
from affect_zoo.imageio.graph import decode_checked, resize_for_model
from affect_zoo.models import mmemo
from affect_zoo.tasks import GraphOps, Task
from affect_zoo.text import graph as text_graph

PREDICTION = "prediction"
ANSWERED_BY = "answered_by"
VOCABULARIES = ("text", "tags")


@register_family
class MMEmo(Family):
    name = "mmemo"

    def check(self, recipe):
        """Targets are fixed by ``mmemo.training_example`` (the label, for every classifier): a recipe that says
        otherwise would be silently ignored, so it is an error."""
        super().check(recipe)
        dataset = recipe.dataset
        if dataset.ignore:
            raise recipes.RecipeError("dataset.ignore: the mmemo family has no multilabel target to ignore labels of")
        for task, keys in (dataset.targets or {}).items():
            if ([keys] if isinstance(keys, str) else list(keys)) != ["label"]:
                raise recipes.RecipeError(f"dataset.targets.{task}: mmemo trains every classifier on the example's "
                                          f"label (mmemo.training_example); got {keys!r}")

    def network_for_dataset(self, recipe, data_dir, backbone_weights=None):
        spec, dataset = recipe.model, recipe.dataset
        metadata = data.load_metadata(dataset.name, data_dir=data_dir or dataset.data_dir, config=dataset.config)
        classes = list(metadata["classes"])
        for i, task in enumerate(recipe.tasks):
            if task.get("size") != len(classes):
                raise recipes.RecipeError(f"tasks[{i}].size: {task.get('size')}, but dataset {dataset.name!r} has "
                                          f"{len(classes)} classes ({', '.join(classes)})")
        fixed = mmemo.dataset_options(metadata)
        options = dict(spec.options)
        clash = sorted(set(options) & set(fixed))
        if clash:
            raise recipes.RecipeError(f"model.options.{clash[0]}: mmemo takes it from the dataset's metadata; "
                                      f"remove it")
        network = mmemo.build_for_dataset(spec.backbone, metadata, (*spec.input_size, 3),
                                          weights=backbone_weights, **options)
        # The trained embedding is in the weights: a rebuild needs its width, not the word-vector file.
        network_options = {**fixed, "text_embedding_dim": int(network.get_layer("text_embedding").output_dim),
                           "word_vectors": None}
        assets = {f"{kind}_vocabulary.txt": "\n".join(metadata[f"{kind}_vocabulary"]) + "\n"
                  for kind in ("text", "tags")}
        return network, network_options, assets

    def pipeline(self, recipe, source, training, **common):
        self.check(recipe)
        return data.make_example_pipeline(source, _example, recipe.model.input_size, recipe.training.batch_size,
                                          training=training, **common)

    def evaluated_tasks(self, tasks):
        """The classifiers, plus ``prediction`` (not trained, so no task of the model)."""
        tasks = list(tasks)
        return tasks + [Task(PREDICTION, "classification", tasks[0].size, labels=tasks[0].labels)]

    def evaluation_targets(self, y, rows, every):
        return {**y, PREDICTION: y[mmemo.OUTPUT_NAMES[-1]]}, {**rows, PREDICTION: every}

    input_names = ("image", "text", "tags", *mmemo.PRESENT.values())
    image_optional = True

    def attach(self, model, folder):
        """``model.vocabularies`` from ``<kind>_vocabulary.txt`` in ``folder``, when both are there."""
        paths = {kind: pathlib.Path(folder) / f"{kind}_vocabulary.txt" for kind in VOCABULARIES}
        if all(path.is_file() for path in paths.values()):
            model.vocabularies = {kind: text.Vocabulary.load(path) for kind, path in paths.items()}
            for kind in VOCABULARIES:
                _check_vocabulary(model, kind)

    def prediction_inputs(self, model, count, inputs):
        """Text and tag ids with their presence flags, per post; ``text`` and ``tags`` are lists as long as the
        images (or None: absent for every post)."""
        unknown = sorted(set(inputs) - set(VOCABULARIES))
        if unknown:
            raise ValueError(f"{model.name}: unknown input {unknown[0]!r}; an mmemo model takes images, text and tags")
        vocabularies = _vocabularies(model)
        lengths = _lengths(model)
        out = {}
        for kind in VOCABULARIES:
            values = inputs.get(kind)
            values = [None] * count if values is None else ([values] if isinstance(values, str) else list(values))
            if len(values) != count:
                raise ValueError(f"{model.name}: {kind} has {len(values)} entries for {count} posts; give one per "
                                 f"post (None where it has no {kind})")
            encode = vocabularies[kind].encode_text if kind == "text" else vocabularies[kind].encode_tags
            encoded = [encode(value, lengths[kind]) for value in values]
            out[kind] = np.stack([ids for ids, _ in encoded]) if encoded else np.zeros((0, lengths[kind]), np.int32)
            out[mmemo.PRESENT[kind]] = np.array([present for _, present in encoded], np.float32)
        return out

    def feed(self, images, image_present, inputs):
        images = images * tf.reshape(tf.cast(image_present, images.dtype), (-1, 1, 1, 1))
        return {"image": images, mmemo.PRESENT["image"]: image_present, **inputs}

    def served_tasks(self, tasks):
        return self.evaluated_tasks(tasks)

    def extra_outputs(self, outputs, ops, readable=False):
        answered = outputs[ANSWERED_BY]
        if ops.graph:
            return {ANSWERED_BY: tf.cast(answered, tf.int32)}
        answered = np.asarray(answered).astype(np.int64)
        if readable:
            names = np.asarray([*mmemo.OUTPUT_NAMES, None], dtype=object)
            return {ANSWERED_BY: names[answered]}  # -1 (nothing given) is the last entry: None
        return {ANSWERED_BY: answered}

    def extra_output_names(self):
        return {ANSWERED_BY: f"int32 (batch,): the index in {list(mmemo.OUTPUT_NAMES)} of the classifier that "
                             f"gave prediction (its name in predict); -1 (None) when the post had no modality"}

    def serving_functions(self, model, tasks, size, max_pixels):
        network = getattr(model, "network", model)
        vocabularies = _vocabularies(model)
        lengths = _lengths(network)
        tables = {kind: text_graph.lookup_table(vocabularies[kind]) for kind in VOCABULARIES}
        present = mmemo.PRESENT["image"]

        @tf.function(input_signature=[tf.TensorSpec([None, *size, 3], tf.float32, name=IMAGES),
                                      tf.TensorSpec([None], tf.float32, name=present),
                                      tf.TensorSpec([None], tf.string, name="text"),
                                      tf.TensorSpec([None, None], tf.string, name="tags")], autograph=False)
        def predict_tensor(images, image_present, text, tags):
            text_ids, text_present = text_graph.encode_text(text, tables["text"], lengths["text"])
            tag_ids, tags_present = text_graph.encode_tags(tags, tables["tags"], lengths["tags"])
            x = self.feed(images, image_present, {"text": text_ids, "tags": tag_ids,
                                                  mmemo.PRESENT["text"]: text_present,
                                                  mmemo.PRESENT["tags"]: tags_present})
            return self.named_outputs(tasks, network(x, training=False), GraphOps)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGES),
                                      tf.TensorSpec([None], tf.string, name="text"),
                                      tf.TensorSpec([None, None], tf.string, name="tags")], autograph=False)
        def predict_bytes(images, text, tags):
            given = tf.strings.length(images) > 0
            pixels = tf.map_fn(lambda item: tf.cond(item[1], lambda: resize_for_model(
                decode_checked(item[0], item[2], max_pixels), size), lambda: tf.zeros((*size, 3), tf.float32)),
                (images, given, tf.range(tf.size(images, out_type=tf.int64))),
                fn_output_signature=tf.TensorSpec((*size, 3), tf.float32))
            return predict_tensor(pixels, tf.cast(given, tf.float32), text, tags)

        signatures = {BYTES_SIGNATURE: predict_bytes.get_concrete_function(),
                      TENSOR_SIGNATURE: predict_tensor.get_concrete_function()}
        return signatures, list(tables.values())

    def signature_inputs(self, size):
        common = {"text": "tf.string [None]: the post's text (\"\" for none)",
                  "tags": "tf.string [None, None]: the post's tags, rows padded with \"\""}
        return {BYTES_SIGNATURE: {IMAGES: "encoded image bytes, tf.string [None] (b\"\" for no image)", **common},
                TENSOR_SIGNATURE: {IMAGES: f"float32 [None, {size[0]}, {size[1]}, 3] RGB in [0, 255]",
                                   mmemo.PRESENT["image"]: "float32 [None]: 1 where the post has an image, else 0",
                                   **common}}

    def warmup_inputs(self, encoded_images, size):
        """A bytes request per image (with text and tags), one with no image, and one tensor request."""
        def strings(*rows):
            return np.array(rows, dtype=object)

        requests = [(BYTES_SIGNATURE, {IMAGES: strings(data), "text": strings("a warmup post"),
                                       "tags": strings(["warmup", ""])}) for data in encoded_images]
        requests.append((BYTES_SIGNATURE, {IMAGES: strings(b""), "text": strings("text only"),
                                           "tags": strings(["warmup", "tags"])}))
        return requests + [(TENSOR_SIGNATURE, {IMAGES: np.full((1, *size, 3), 127.5, np.float32),
                                               mmemo.PRESENT["image"]: np.ones((1,), np.float32),
                                               "text": np.array([""], dtype=object),
                                               "tags": np.array([[""]], dtype=object)})]


def _example(example):
    """``(x, y, sample_weight)`` of an example whose image is already the model's view; an absent image (the
    builder stores a black placeholder) is exactly zeros, as ``mmemo.encode_records`` feeds it."""
    present = tf.cast(example["image_present"], tf.float32)
    return mmemo.training_example({**example, "image": example["image"] * present})


def _vocabularies(model):
    vocabularies = getattr(model, "vocabularies", None) or getattr(getattr(model, "network", None),
                                                                  "vocabularies", None)
    if not vocabularies or set(vocabularies) != set(VOCABULARIES):
        raise ValueError(f"{model.name}: no text and tags vocabularies attached. affect_zoo.load attaches those "
                         f"shipped beside trained weights (text_vocabulary.txt, tags_vocabulary.txt); for a model "
                         f"built otherwise set model.vocabularies = {{'text': Vocabulary, 'tags': Vocabulary}} "
                         f"(affect_zoo.text)")
    return vocabularies


def _lengths(model):
    """{"text": max_text_length, "tags": max_tags} of a model's network, read off its inputs."""
    network = getattr(model, "network", model)
    shapes = {i.name.split(":")[0]: tuple(i.shape) for i in network.inputs}
    return {kind: int(shapes[kind][1]) for kind in VOCABULARIES}


def _check_vocabulary(model, kind):
    """A vocabulary larger than its embedding would index past it: refused, naming both sizes."""
    network = getattr(model, "network", model)
    rows = int(network.get_layer(f"{kind}_embedding").input_dim)
    if len(model.vocabularies[kind]) > rows:
        raise ValueError(f"{model.name}: the {kind} vocabulary has {len(model.vocabularies[kind])} tokens but the "
                         f"network's {kind}_embedding only {rows} rows")
