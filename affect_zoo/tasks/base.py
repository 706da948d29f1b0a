"""``TaskKind``: everything that depends on what a target looks like, in one class per kind.

A kind owns its head, its losses (the first is the default), its Keras metrics, the shape and encoding of its
targets, its named outputs (one list, read by ``predict``, the export signature and model cards), its test metrics
and its trivial baseline. The trainer, the input pipeline, the export, the evaluation and the CLI ask the task's
kind and never branch on its name, so a new kind is one file with one ``@register_kind`` class.

Nothing here imports TensorFlow or Keras at module level: the registry and the CLI's ``list``/``info`` read tasks
without them. Methods that build Keras objects or graph ops import them when called.
"""
import dataclasses
import re

import numpy as np

_KINDS = {}


def register_kind(cls):
    """Class decorator: make ``cls`` (a ``TaskKind`` with a unique ``name``) the kind of tasks with that name."""
    if not (isinstance(cls, type) and issubclass(cls, TaskKind)) or not cls.name or not cls.losses:
        raise TypeError(f"{cls!r}: a task kind is a TaskKind subclass with a name and at least one loss")
    if cls.name in _KINDS and type(_KINDS[cls.name]) is not cls:
        raise ValueError(f"task kind {cls.name!r} is already registered by {type(_KINDS[cls.name]).__name__}")
    _KINDS[cls.name] = cls()
    return cls


def get_kind(name, task=None):
    """The registered kind called ``name``; an unknown name is refused naming the known ones."""
    if name not in _KINDS:
        where = f"task {task!r}: " if task is not None else ""
        raise ValueError(f"{where}unknown kind {name!r}; known kinds: {', '.join(_KINDS)}")
    return _KINDS[name]


def kind_names():
    return tuple(_KINDS)


def clean_name(name):
    """A signature-safe output name: characters other than ASCII letters, digits and ``_`` become ``_``."""
    return re.sub(r"\W", "_", str(name), flags=re.ASCII)


@dataclasses.dataclass(frozen=True)
class Output:
    """One named output of a task: its name (as a signature output and a ``predict`` key), dtype, shape and
    meaning."""

    name: str
    dtype: str
    shape: str
    meaning: str

    def describe(self):
        return f"{self.dtype} {self.shape} {self.meaning}"


class NumpyOps:
    """The few array operations kinds' outputs need, on NumPy arrays (``predict``)."""

    graph = False

    @staticmethod
    def argmax(y):
        return np.argmax(y, axis=-1)

    @staticmethod
    def flat(y):
        return np.reshape(y, [-1])


class GraphOps:
    """The same operations as ``NumpyOps`` on tensors (the export signature)."""

    graph = True

    @staticmethod
    def argmax(y):
        import tensorflow as tf

        return tf.argmax(y, axis=-1, output_type=tf.int64)

    @staticmethod
    def flat(y):
        import tensorflow as tf

        return tf.reshape(y, [-1])


class TaskKind:
    """The behaviour shared by all tasks of one kind; a subclass overrides what differs.

    ``name`` is the ``kind`` field of a task's config, ``losses`` the loss names it accepts (the first is the
    default), ``activation`` its plain head's output activation. ``categorical``: the outputs are class
    probabilities with a most likely class. ``label_probabilities``: the network's output holds one probability
    per label (read as {label: p} by the CLI and ``rank``). ``label_outputs``: each label is a named output of
    its own. ``ignorable``: targets may mark entries ignored (-1) through a dataset mask feature.
    """

    name = None
    losses = ()
    activation = None
    categorical = False
    label_probabilities = False
    label_outputs = False
    ignorable = False

    def validate(self, task):
        """Raise a one-line ValueError for a config this kind cannot have (after the generic checks)."""

    def head(self, task, features, name, initializer):
        import keras

        return keras.layers.Dense(task.size, activation=self.activation, kernel_initializer=initializer,
                                  name=name)(features)

    def loss_object(self, task):
        """A fresh Keras loss giving one value per sample (``reduction=None``)."""
        raise NotImplementedError(f"kind {self.name!r} has no loss {task.loss!r}")

    def loss_inputs(self, task, target, prediction):
        """(target, prediction) as the loss sees them; ``target`` arrives as the dataset gives it."""
        import tensorflow as tf

        return tf.cast(target, prediction.dtype), prediction

    def metric_objects(self, task):
        """Fresh Keras metrics, named ``<task>_<metric>``."""
        return []

    def example_shape(self, task):
        """The shape of one example's target."""
        return (task.size,)

    def expected_batch(self, task):
        return f"(batch, {task.size})"

    def fits_batch(self, task, shape):
        """Whether a batch of targets of this static shape fits (None dimensions fit anything)."""
        return len(shape) == 2 and shape[-1] in (task.size, None) or (task.size == 1 and len(shape) == 1)

    def encode_target(self, task, values):
        """One example's target (graph ops) from the dataset features it is read from."""
        import tensorflow as tf

        return tf.concat([tf.reshape(tf.cast(v, tf.float32), [-1]) for v in values], axis=0)

    def outputs(self, task):
        """The task's named outputs, in order (names made with ``clean_name``)."""
        raise NotImplementedError

    def output_values(self, task, y, ops, readable=False):
        """Output name → value of ``outputs`` from the network's output ``y`` (float32), with ``ops`` a
        ``NumpyOps`` or ``GraphOps``. ``readable`` (``predict``): labels as names where the task has them."""
        raise NotImplementedError

    def decode(self, task, values):
        """The network's output for the task from its named output values (the list ``outputs`` orders)."""
        return values[0]

    def decoded_outputs(self, task, outputs):
        """The outputs ``decode`` needs: the first, unless a kind needs more."""
        return outputs[:1]

    def test_metrics(self, task, prediction, target):
        """NumPy prediction and target of a whole split → {result key: {metric: value}}."""
        return {}

    def constant_prediction(self, task, train_targets):
        """The trivial baseline's one prediction for every image, from the training split's targets."""
        return np.asarray(train_targets, np.float32).mean(axis=0)


class CategoricalKind(TaskKind):
    """Class probabilities with a most likely class: ``T_probs`` and ``T_label`` (the class name in ``predict``,
    its index in the export, whose signature needs one dtype; the names ship in its ``affect_zoo.json``)."""

    activation = "softmax"
    categorical = True
    label_probabilities = True

    def outputs(self, task):
        labels = f" over {', '.join(task.labels)}" if task.labels else ""
        base = clean_name(task.name)
        return [Output(f"{base}_probs", "float32", f"(batch, {task.size})", f"probabilities{labels}"),
                Output(f"{base}_label", "int64", "(batch,)",
                       "index of the most probable class (its name in predict)")]

    def output_values(self, task, y, ops, readable=False):
        first, label = (o.name for o in self.outputs(task)[:2])
        index = ops.argmax(y)
        if readable and task.labels:
            index = np.asarray(task.labels, dtype=object)[index]
        return {first: y, label: index}
