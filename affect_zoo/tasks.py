"""Tasks are data: a name, a kind and a size. The head, the default loss and the metrics follow from the kind.

A multi-task network outputs a dict keyed by task name; a dataset yields targets keyed the same way. This module
is the one place that knows what each kind of target looks like.

A task's definition, target checks and output names need no TensorFlow, so the registry and the CLI's
``list``/``info`` read recipes' tasks without it; Keras is imported by the methods that build heads, losses and
metrics (by then a model is being built and Keras is loaded anyway).
"""
import dataclasses

import numpy as np

from affect_zoo.emotion import emotion_vector, get_circle

KINDS = ("classification", "binary", "distribution", "regression", "multilabel")


def small_init():
    """Head kernel init: on unit-variance features, outputs (logits, or half-ranges) of std ~0.1. A new one per
    head: an unseeded Keras initializer draws its seed when it is made, so a head's init follows
    ``keras.utils.set_random_seed`` (a module-level instance, as before, drew it at import, once per process)."""
    import keras

    return keras.initializers.VarianceScaling(scale=1e-2, mode="fan_in", distribution="truncated_normal", seed=None)


def __getattr__(name):
    """``SMALL_INIT``, made when first read (it is a Keras object)."""
    if name == "SMALL_INIT":
        return small_init()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


LOSSES = {
    "classification": ("crossentropy",),
    "binary": ("bce",),
    "distribution": ("kl", "circular"),
    "regression": ("mse", "huber"),
    "multilabel": ("bce", "masked_bce"),
}


@dataclasses.dataclass(frozen=True)
class Task:
    """One prediction target of a multi-task model.

    kind: classification (integer label), binary (0/1), distribution (a probability vector), regression (real
    values, one per ``labels`` entry), multilabel (multi-hot). ``branch`` says which branch of a two-branch
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
        if self.kind not in KINDS:
            raise ValueError(f"task {self.name!r}: unknown kind {self.kind!r}; known kinds: {', '.join(KINDS)}")
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"task {self.name!r}: size must be a positive int, got {self.size!r}")
        if self.kind == "binary" and self.size != 1:
            raise ValueError(f"task {self.name!r}: a binary task has size 1, got {self.size}")
        if self.kind == "classification" and self.size < 2:
            raise ValueError(f"task {self.name!r}: a classification task needs size >= 2, got {self.size}")
        if self.loss is None:
            object.__setattr__(self, "loss", LOSSES[self.kind][0])
        if self.loss not in LOSSES[self.kind]:
            raise ValueError(f"task {self.name!r}: loss {self.loss!r} does not fit kind {self.kind!r}; "
                             f"choose one of {', '.join(LOSSES[self.kind])}")
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
        if self.loss == "circular" and self.circle is None:
            raise ValueError(f"task {self.name!r}: loss 'circular' needs a circle (e.g. circle='mikels8')")
        if self.target_range is not None:
            low, high = (float(v) for v in self.target_range)
            if not high > low:
                raise ValueError(f"task {self.name!r}: target_range must be (low, high) with high > low, "
                                 f"got {self.target_range}")
            object.__setattr__(self, "target_range", (low, high))

    @property
    def scale(self):
        """Half the target range (1 when none is set): the unit in which regression losses are measured."""
        if self.target_range is None:
            return 1.0
        return (self.target_range[1] - self.target_range[0]) / 2.0

    def head(self, features, prefix=""):
        """The output tensor of this task from pooled features (B, D); the last layer is named after the task.

        Every head starts near its uninformative answer (``SMALL_INIT``): the middle of a regression range, a
        near-uniform distribution. With Glorot weights on unit-variance features a regression head would start
        ~1.4 half-ranges off (±5.6 on valence's 1–9) and a 7-way softmax peaked (KL ~1.3 on Emotion6 instead of
        ~0.8); the first updates, driven by that error, disturb a pretrained backbone.
        """
        import keras

        from affect_zoo.layers.circle_head import CircularEmotionHead

        name = prefix + self.name
        if self.kind == "distribution" and self.circle is not None:
            out = CircularEmotionHead(self.circle, kernel_initializer=small_init(),
                                      name=f"{name}_circle_head")(features)["distribution"]
            return keras.layers.Identity(name=name)(out)
        if self.kind == "regression" and self.target_range is not None:
            z = keras.layers.Dense(self.size, kernel_initializer=small_init(), name=f"{name}_linear")(features)
            low, high = self.target_range
            return keras.layers.Rescaling(scale=self.scale, offset=(low + high) / 2.0, name=name)(z)
        activation = {"classification": "softmax", "distribution": "softmax", "binary": "sigmoid",
                      "multilabel": "sigmoid", "regression": None}[self.kind]
        return keras.layers.Dense(self.size, activation=activation, kernel_initializer=small_init(),
                                  name=name)(features)

    def loss_object(self):
        """A fresh Keras loss for this task giving one value per sample (``reduction=None``).

        The trainer averages over the batch itself: Keras' own batch reduction also divides by the number of
        replicas, which a custom train_step that scales once would then do twice.
        """
        import keras

        from affect_zoo import losses as az_losses
        from affect_zoo import metrics_multilabel as az_multilabel

        if self.loss == "circular":
            return az_losses.CircularEmotionLoss(mu=self.mu, circle=self.circle, reduction=None)
        return {
            "crossentropy": keras.losses.SparseCategoricalCrossentropy,
            "bce": keras.losses.BinaryCrossentropy,
            "masked_bce": az_multilabel.MaskedBinaryCrossentropy,
            "kl": az_losses.KLDivergenceLoss,
            "mse": keras.losses.MeanSquaredError,
            "huber": keras.losses.Huber,
        }[self.loss](reduction=None)

    def loss_inputs(self, target, prediction):
        """Target and prediction as the loss sees them: regression values in units of half the target range."""
        if self.kind == "regression" and self.scale != 1.0:
            return target / self.scale, prediction / self.scale
        return target, prediction

    def metric_objects(self):
        """Fresh Keras metrics for this task, named ``<task>_<metric>``."""
        import keras

        from affect_zoo import metrics as az_metrics
        from affect_zoo import metrics_multilabel as az_multilabel

        p = f"{self.name}_"
        if self.kind == "classification":
            return [keras.metrics.SparseCategoricalAccuracy(name=p + "accuracy")]
        if self.kind == "binary":
            return [keras.metrics.BinaryAccuracy(name=p + "accuracy")]
        if self.kind == "distribution":
            return [az_metrics.KLDivergence(name=p + "kl"), az_metrics.Cosine(name=p + "cosine"),
                    az_metrics.Intersection(name=p + "intersection"), az_metrics.Top1Accuracy(name=p + "top1")]
        if self.kind == "regression":
            return [keras.metrics.MeanAbsoluteError(name=p + "mae")]
        mean_ap = az_multilabel.MeanAveragePrecision(self.size, name=p + "map")
        if self.loss == "masked_bce":  # AUC would count the -1 (ignored) targets as negatives
            return [mean_ap]
        return [mean_ap, keras.metrics.AUC(multi_label=True, num_labels=self.size, name=p + "auc")]

    def check_target(self, target, where="targets"):
        """Raise a one-line ValueError when a target's static shape does not fit this task."""
        shape = tuple(target.shape)
        if self.kind == "classification":
            ok = len(shape) == 1 or (len(shape) == 2 and shape[-1] in (1, None))
            expected = "(batch,) integer labels"
        else:
            ok = len(shape) == 2 and shape[-1] in (self.size, None) or (self.size == 1 and len(shape) == 1)
            expected = f"(batch, {self.size})"
        if not ok:
            raise ValueError(f"{where}[{self.name!r}] has shape {shape}; a {self.kind} task of size {self.size} "
                             f"expects {expected}")

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


def named_outputs(tasks, predictions):
    """Raw network outputs (dict task → array) → the named outputs users read, as NumPy.

    classification / distribution ``T``: ``T`` (probabilities, N×K) and ``T_label`` (name of the most likely
    class, or its index when the task has no labels); with a circle also ``T_polarity`` (+1 positive / −1
    negative), ``T_angle`` (radians) and ``T_intensity`` (0–1) of the emotion vector. regression with labels:
    one array per label (e.g. ``valence``, ``arousal``); without: ``T``. binary and multilabel: ``T``
    (probabilities). ``describe_outputs`` gives the same names with their meaning for model cards.
    """
    out = {}
    for task in tasks:
        value = np.asarray(predictions[task.name], dtype=np.float32)
        if task.kind in ("classification", "distribution"):
            out[task.name] = value
            index = np.argmax(value, axis=-1)
            out[f"{task.name}_label"] = (np.asarray(task.labels, dtype=object)[index] if task.labels
                                         else index)
            if task.circle is not None:
                polarity, angle, intensity = emotion_vector(value, get_circle(task.circle))
                out.update({f"{task.name}_polarity": polarity, f"{task.name}_angle": angle,
                            f"{task.name}_intensity": intensity})
        elif task.kind == "regression" and task.labels:
            for i, label in enumerate(task.labels):
                out[label] = value[..., i]
        elif task.kind in ("binary", "regression") and value.shape[-1:] == (1,):
            out[task.name] = value[..., 0]
        else:
            out[task.name] = value
    return out


def describe_outputs(tasks):
    """Output name → meaning, as ``named_outputs`` produces them (for model cards)."""
    meaning = {}
    for task in tasks:
        if task.kind in ("classification", "distribution"):
            names = ", ".join(task.labels) if task.labels else f"{task.size} classes"
            meaning[task.name] = f"probability of each of: {names}"
            meaning[f"{task.name}_label"] = "the most likely one"
            if task.circle is not None:
                meaning[f"{task.name}_polarity"] = "+1 positive / -1 negative half of the emotion circle"
                meaning[f"{task.name}_angle"] = "angle of the emotion vector on the circle, radians in (-pi, pi]"
                meaning[f"{task.name}_intensity"] = "length of the emotion vector, 0 (mixed) to 1 (one emotion)"
        elif task.kind == "regression" and task.labels:
            span = f" on {task.target_range[0]:g}-{task.target_range[1]:g}" if task.target_range else ""
            meaning.update({label: f"predicted {label}{span}" for label in task.labels})
        elif task.kind == "binary":
            meaning[task.name] = "probability of the positive class"
        elif task.kind == "multilabel":
            names = ", ".join(task.labels) if task.labels else f"{task.size} labels"
            meaning[task.name] = f"independent probability of each of: {names}"
        else:
            meaning[task.name] = f"predicted value ({task.size})"
    return meaning
