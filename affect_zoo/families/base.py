"""``Family``: what differs between model families, in one class per family.

A family says how a recipe becomes a network (and what the dataset fixes in it), how a split becomes batches, in
which stages the network is trained, and which tasks are measured; and, for a trained model, what ``predict`` feeds
it beside the images, which outputs it returns and which signatures an export serves. The training driver
(``experiments``), the evaluation, the factory (``zoo``), ``predict`` and the export ask the family and never
branch on its name, so a new family is one file with one ``@register_family`` class.
"""
import dataclasses

import numpy as np
import tensorflow as tf

from affect_zoo import data, recipes
from affect_zoo.imageio.graph import decode_and_resize
from affect_zoo.models import build_network
from affect_zoo.tasks import GraphOps, NumpyOps, as_tasks
from affect_zoo.tasks import output_names as task_output_names

BYTES_SIGNATURE = "serving_default"
TENSOR_SIGNATURE = "predict_tensor"
IMAGES = "images"

_FAMILIES = {}


def register_family(cls):
    """Class decorator: make ``cls`` (a ``Family`` with a unique ``name``) the family of recipes naming it."""
    if not (isinstance(cls, type) and issubclass(cls, Family)) or not cls.name:
        raise TypeError(f"{cls!r}: a model family is a Family subclass with a name")
    if cls.name in _FAMILIES and type(_FAMILIES[cls.name]) is not cls:
        raise ValueError(f"model family {cls.name!r} is already registered by {type(_FAMILIES[cls.name]).__name__}")
    _FAMILIES[cls.name] = cls()
    return cls


def get_family(name):
    """The registered family called ``name``; an unknown one is a RecipeError naming the known ones."""
    if name not in _FAMILIES:
        raise recipes.RecipeError(f"model.family: unknown model family {name!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def family_of(recipe):
    return get_family(recipe.model.family)


def family_of_model(model):
    """The family of a built model, told by its network's inputs (a model built by hand has no recipe): the first
    registered family with ``input_names`` that the network takes all of, else ``multitask`` (one image)."""
    network = getattr(model, "network", model)
    names = {getattr(i, "name", "").split(":")[0] for i in network.inputs}
    for family in _FAMILIES.values():
        if family.input_names and set(family.input_names) <= names:
            return family
    return _FAMILIES["multitask"]


@dataclasses.dataclass(frozen=True)
class Stage:
    """One ``fit`` of a staged training plan: its folder name, epochs and learning rate, the tasks the stage
    trains (outputs of the network), ``prepare(network)`` (sets what is trainable) and ``targets(y)`` (the
    dataset's targets renamed for those tasks)."""

    name: str
    epochs: int
    learning_rate: float
    tasks: tuple
    prepare: object
    targets: object


class Family:
    """The default behaviour: the network from the recipe's ``model`` section, one ``fit`` of all tasks, the
    recipe's tasks measured on every sample."""

    name = None

    def check(self, recipe):
        """Raise a RecipeError for what this family cannot train (before anything is built or read)."""
        if recipe.training.phases:
            raise recipes.RecipeError(f"training.phases: only the semdep family trains in phases, not {self.name!r}")

    def network(self, recipe, backbone_weights=None):
        """The untrained network a recipe describes."""
        model = recipe.model
        return build_network(model.family, backbone=model.backbone, tasks=as_tasks(recipe.tasks),
                             input_shape=(*model.input_size, 3), weights=backbone_weights,
                             architecture=model.architecture, **model.options)

    def network_for_dataset(self, recipe, data_dir, backbone_weights=None):
        """(network, options the dataset fixed, files to ship beside the weights): what training builds."""
        return self.network(recipe, backbone_weights), {}, {}

    def pipeline(self, recipe, source, training, **common):
        """Batches of a split (``source``, a loaded TFDS split) as the network is fed."""
        dataset = recipe.dataset
        return data.make_pipeline(source, as_tasks(recipe.tasks), recipe.model.input_size,
                                  recipe.training.batch_size, training=training,
                                  targets=dataset.targets or dataset.name, ignore=dataset.ignore, **common)

    def stages(self, recipe, network):
        """The staged training plan (a list of ``Stage``), or None for one ``fit`` of all tasks."""
        return None

    def evaluated_tasks(self, tasks):
        """The tasks measured on a test split."""
        return list(tasks)

    def evaluation_targets(self, y, rows, every):
        """Targets and row masks of tasks measured beyond the trained ones (none by default)."""
        return y, rows

    # Inference: what a trained model is fed and answers, in ``predict`` (NumPy) and in the export (graphs).
    #: the network's input names, for a family whose network takes more than one image (None: one image input)
    input_names = None
    #: whether ``predict`` accepts None for an image (the model then sees it as absent)
    image_optional = False

    def image_size(self, network):
        """(H, W) of the network's image input, the one place ``predict`` and the export read it from: the only
        input, or ``image`` for a family with named inputs; anything else is an error naming the inputs."""
        if self.input_names:
            shape = next((tuple(i.shape) for i in network.inputs if i.name.split(":")[0] == "image"), None)
        else:
            shape = tuple(network.inputs[0].shape) if len(network.inputs) == 1 else None
        if shape is None or len(shape) != 4 or shape[-1] != 3 or not all(isinstance(s, int) for s in shape[1:3]):
            raise ValueError(f"model {network.name!r} must take one image input of shape (batch, H, W, 3) with H "
                             f"and W fixed; its inputs: {[tuple(i.shape) for i in network.inputs]}")
        return shape[1], shape[2]

    def attach(self, model, folder):
        """Give a model what inference needs beyond its weights, from the folder its weights came from (mmemo: the
        vocabularies shipped beside them). Nothing by default."""

    def prediction_inputs(self, model, count, inputs):
        """{input: NumPy array [count, ...]} fed beside the images, from ``predict``'s keyword inputs (none here:
        any is an error naming it)."""
        if inputs:
            raise ValueError(f"{model.name}: a {self.name} model takes images only; got {', '.join(sorted(inputs))}")
        return {}

    def feed(self, images, image_present, inputs):
        """What the network is called with, from a batch of images, their presence flags and ``inputs`` rows."""
        return images

    def served_tasks(self, tasks):
        """The tasks whose named outputs ``predict`` and the export give (the model's tasks by default)."""
        return list(tasks)

    def extra_outputs(self, outputs, ops, readable=False):
        """Named outputs beyond the served tasks', from the network's outputs (none by default)."""
        return {}

    def extra_output_names(self):
        """Name → meaning of ``extra_outputs``."""
        return {}

    def output_names(self, tasks):
        """Every named output the export serves and ``predict`` returns: the served tasks', then the extras."""
        names = task_output_names(self.served_tasks(tasks))
        clash = sorted(set(names) & set(self.extra_output_names()))
        if clash:
            raise ValueError(f"output name {clash[0]!r} is used by a task and by the {self.name} family")
        return {**names, **self.extra_output_names()}

    def named_outputs(self, tasks, outputs, ops=NumpyOps, readable=True):
        """Network outputs (dict name → array or tensor) → the named outputs; in NumPy (``predict``, with each
        served task's raw output under its name too) or in the graph (``ops=GraphOps``: the signature's)."""
        out = {}
        for task in self.served_tasks(tasks):
            value = outputs[task.name]
            value = tf.cast(value, tf.float32) if ops.graph else value.astype("float32", copy=False)
            if not ops.graph:
                out[task.name] = value
            out.update(task.handler.output_values(task, value, ops, readable=readable and not ops.graph))
        out.update(self.extra_outputs(outputs, ops, readable=readable and not ops.graph))
        return out

    def serving_functions(self, model, tasks, size, max_pixels):
        """(signature name → concrete function, trackables the graphs use beyond the network's variables, e.g.
        lookup tables) for a model (or its network): ``serving_default`` takes encoded image bytes,
        ``predict_tensor`` float32 pixels."""
        network = getattr(model, "network", model)

        @tf.function(input_signature=[tf.TensorSpec([None, *size, 3], tf.float32, name=IMAGES)], autograph=False)
        def predict_tensor(images):
            return self.named_outputs(tasks, network(images, training=False), GraphOps)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGES)], autograph=False)
        def predict_bytes(images):
            return predict_tensor(decode_and_resize(images, size, max_pixels))

        return {BYTES_SIGNATURE: predict_bytes.get_concrete_function(),
                TENSOR_SIGNATURE: predict_tensor.get_concrete_function()}, []

    def signature_inputs(self, size):
        """Signature → {input: what it holds}, for the export's ``affect_zoo.json``."""
        return {BYTES_SIGNATURE: {IMAGES: "encoded image bytes, tf.string [None]"},
                TENSOR_SIGNATURE: {IMAGES: f"float32 [None, {size[0]}, {size[1]}, 3] RGB in [0, 255]"}}

    def warmup_inputs(self, encoded_images, size):
        """(signature, {input: array}) warmup requests: one bytes request per encoded image, one tensor request."""
        requests = [(BYTES_SIGNATURE, {IMAGES: np.array([data], dtype=object)}) for data in encoded_images]
        return requests + [(TENSOR_SIGNATURE, {IMAGES: np.full((1, *size, 3), 127.5, np.float32)})]
