"""Tasks are data: a name, a kind and a size. Everything that follows from the kind (head, losses, metrics,
target shape and encoding, named outputs, test metrics, trivial baseline) is the kind's: one ``TaskKind`` class
per kind, in one file each, registered with ``@register_kind`` (``affect_zoo.tasks.base``).

A multi-task network outputs a dict keyed by task name; a dataset yields targets keyed the same way. Named
outputs are one list per task, used alike by ``predict``, the export signature, model cards and the CLI.

Nothing here imports TensorFlow or Keras at module level, so the registry and the CLI's ``list``/``info`` read
recipes' tasks without them.
"""
import dataclasses

import numpy as np

from affect_zoo.emotion import get_circle
from affect_zoo.tasks import binary, classification, distribution, multilabel, regression  # noqa: F401 (register)
from affect_zoo.tasks.base import (GraphOps, NumpyOps, Output, TaskKind, clean_name, get_kind, kind_names,
                                   register_kind)

__all__ = ["Task", "TaskKind", "Output", "GraphOps", "NumpyOps", "register_kind", "get_kind", "kind_names",
           "clean_name", "as_tasks", "output_names", "named_outputs", "describe_outputs", "small_init"]


def small_init():
    """Head kernel init: on unit-variance features, outputs (logits, or half-ranges) of std ~0.1. A new one per
    head: an unseeded Keras initializer draws its seed when it is made, so a head's init follows
    ``keras.utils.set_random_seed`` (a module-level instance, as before, drew it at import, once per process)."""
    import keras

    return keras.initializers.VarianceScaling(scale=1e-2, mode="fan_in", distribution="truncated_normal", seed=None)


def __getattr__(name):
    """``SMALL_INIT`` (a Keras object, made when read), ``KINDS`` and ``LOSSES`` (as registered now)."""
    if name == "SMALL_INIT":
        return small_init()
    if name == "KINDS":
        return kind_names()
    if name == "LOSSES":
        return {k: get_kind(k).losses for k in kind_names()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclasses.dataclass(frozen=True)
class Task:
    """One prediction target of a multi-task model.

    kind: the name of a registered ``TaskKind``: classification (integer label), binary (0/1), distribution (a
    probability vector), regression (real values, one per ``labels`` entry), multilabel (multi-hot). ``branch`` says which branch of a two-branch
    network predicts it (0 = the aesthetics branch T_A, 1 = the emotion branch T_E). ``target_range`` (regression)
    sets the head's output scale: the head predicts in label units and the loss is computed in units of half the
    range, so valence on 1–9 and a score on 0–1 weigh alike. ``circle`` names the emotion circle of a distribution
    task; ``loss="circular"`` then trains it with CircularEmotionLoss(mu).
    """

    name: str
    kind: str
    size: int = 1
    branch: int = 0
    loss: str = None
    labels: tuple = None
    circle: str = None
    mu: float = 0.7
    target_range: tuple = None

    def __post_init__(self):
        kind = get_kind(self.kind, self.name)
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size < 1:
            raise ValueError(f"task {self.name!r}: size must be a positive int, got {self.size!r}")
        if self.loss is None:
            object.__setattr__(self, "loss", kind.losses[0])
        if self.loss not in kind.losses:
            raise ValueError(f"task {self.name!r}: loss {self.loss!r} does not fit kind {self.kind!r}; "
                             f"choose one of {', '.join(kind.losses)}")
        if self.labels is not None:
            object.__setattr__(self, "labels", tuple(self.labels))
            if len(self.labels) != self.size:
                raise ValueError(f"task {self.name!r}: {len(self.labels)} labels for size {self.size}")
        if self.circle is not None:
            circle = get_circle(self.circle)
            if circle.size != self.size:
                raise ValueError(f"task {self.name!r}: circle {circle.name!r} has {circle.size} emotions, "
                                 f"task size is {self.size}")
            if self.labels is None:
                object.__setattr__(self, "labels", tuple(circle.names))
        if self.target_range is not None:
            low, high = (float(v) for v in self.target_range)
            if not high > low:
                raise ValueError(f"task {self.name!r}: target_range must be (low, high) with high > low, "
                                 f"got {self.target_range}")
            object.__setattr__(self, "target_range", (low, high))
        kind.validate(self)

    @property
    def handler(self):
        """The registered ``TaskKind`` of this task."""
        return get_kind(self.kind, self.name)

    @property
    def scale(self):
        """Half the target range (1 when none is set): the unit in which regression losses are measured."""
        if self.target_range is None:
            return 1.0
        return (self.target_range[1] - self.target_range[0]) / 2.0

    def head(self, features, prefix=""):
        """The output tensor of this task from pooled features (B, D); the last layer is named after the task.

        Every head starts near its uninformative answer (``small_init``): the middle of a regression range, a
        near-uniform distribution. With Glorot weights on unit-variance features a regression head would start
        ~1.4 half-ranges off (±5.6 on valence's 1–9) and a 7-way softmax peaked (KL ~1.3 on Emotion6 instead of
        ~0.8); the first updates, driven by that error, disturb a pretrained backbone.
        """
        return self.handler.head(self, features, prefix + self.name, small_init())

    def loss_object(self):
        """A fresh Keras loss for this task giving one value per sample (``reduction=None``).

        The trainer averages over the batch itself: Keras' own batch reduction also divides by the number of
        replicas, which a custom train_step that scales once would then do twice.
        """
        return self.handler.loss_object(self)

    def loss_inputs(self, target, prediction):
        """Target and prediction as the loss sees them (e.g. regression values in units of half the target range,
        class labels as int32); ``target`` as the dataset gives it."""
        return self.handler.loss_inputs(self, target, prediction)

    def metric_objects(self):
        """Fresh Keras metrics for this task, named ``<task>_<metric>``."""
        return self.handler.metric_objects(self)

    def check_target(self, target, where="targets"):
        """Raise a one-line ValueError when a batch of targets' static shape does not fit this task."""
        shape = tuple(target.shape)
        if not self.handler.fits_batch(self, shape):
            raise ValueError(f"{where}[{self.name!r}] has shape {shape}; a {self.kind} task of size {self.size} "
                             f"expects {self.handler.expected_batch(self)}")

    def outputs(self):
        """This task's named outputs (``Output``: name, dtype, shape, meaning), in order."""
        return self.handler.outputs(self)

    def get_config(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def as_tasks(tasks):
    """Tasks from Task objects or their config dicts (as recipes and saved models hold them); names unique."""
    out = [t if isinstance(t, Task) else Task.from_config(dict(t)) for t in tasks]
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be unique, got {names}")
    if not out:
        raise ValueError("at least one task is needed")
    return out


def output_names(tasks):
    """Output name → what it holds, for every task (the order of the tasks, then of each task's outputs): the
    names ``predict`` returns and the export signature serves. Two outputs with the same name are refused."""
    described = {}
    for task in as_tasks(tasks):
        for output in task.outputs():
            if output.name in described:
                raise ValueError(f"task {task.name!r}: output name {output.name!r} is already used by another "
                                 f"output ({described[output.name]}); rename the task or its labels")
            described[output.name] = f"{task.name}: {output.describe()}"
    return described


def named_outputs(tasks, predictions):
    """Raw network outputs (dict task → array) → the named outputs users read, as NumPy: each task's network
    output under the task's name (as ``model.predict`` gives it), then its named outputs (``output_names``), with
    a categorical task's ``T_label`` as the class name when the task has labels (its index otherwise, and in the
    export)."""
    out = {}
    for task in as_tasks(tasks):
        value = np.asarray(predictions[task.name], dtype=np.float32)
        out[task.name] = value
        out.update(task.handler.output_values(task, value, NumpyOps, readable=True))
    return out


def describe_outputs(tasks):
    """Name → meaning of every key ``named_outputs`` returns (for model cards)."""
    meaning = {}
    for task in as_tasks(tasks):
        meaning[task.name] = f"the network's output for task {task.name!r}, float32 (batch, {task.size})"
        meaning.update({o.name: o.describe() for o in task.outputs()})
    return meaning
