"""Multi-label evaluation and loss: average precision (NumPy), a streaming mAP metric, and a BCE that ignores labels.

Targets are multi-hot vectors in which a value of ``-1`` (``IGNORE``) means "neither positive nor negative: leave
this label of this sample out" (VOC's *difficult* objects, or a label nobody annotated). Everything here honours
it: ``average_precision`` drops those entries from the ranking of their class, ``MeanAveragePrecision`` does not
count them, and ``MaskedBinaryCrossentropy`` gives them zero loss. ``ignore_targets(labels, mask)`` makes such a
target from a boolean label vector and an ignore mask (e.g. VOC's ``labels`` and ``difficult`` features).

AP is the non-interpolated average precision (area under the precision-recall step curve, as in scikit-learn's
``average_precision_score`` and VOC2010+): AP = Σ_k (R_k − R_{k−1})·P_k over the distinct score thresholds in
decreasing order, so tied scores are one threshold. ``method="11point"`` gives VOC2007's 11-point interpolated AP
exactly as the VOC2007 devkit computes it (``VOCevalcls.m``): the samples are sorted by decreasing score with a
stable sort (MATLAB's ``sort``: tied samples keep their dataset order), precision and recall are taken after every
sample, ties included, and AP = (1/11)·Σ_{t=0,0.1,…,1} max{P_k : R_k ≥ t} (0 when no R_k ≥ t). With ties the
11-point figure therefore depends on the samples' order, as the devkit's does. A class with no positive
(non-ignored) sample has no AP: it is NaN and left out of the mean.
"""
import keras
import numpy as np
from keras import ops

IGNORE = -1
METHODS = ("exact", "11point")
#: the 11 recall levels t, as the nearest doubles to the tenths k/10: ``np.linspace(0, 1, 11)`` gives k·0.1, which
#: for k = 3, 6, 7 is a hair above the tenth and would not count a recall of exactly 3/10 at t = 0.3 (whatever
#: rounding MATLAB's ``0:0.1:1`` does in the devkit is not reproduced)
ELEVEN_POINTS = np.arange(11) / 10


def ignore_targets(labels, ignore_mask, ignore_value=IGNORE):
    """float32 targets: ``labels`` (0/1 or bool) with ``ignore_value`` where ``ignore_mask`` is true.

    Works on NumPy arrays and on tensors (inside ``tf.data.Dataset.map``)."""
    labels = ops.cast(labels, "float32")
    return ops.where(ops.cast(ignore_mask, "bool"), ops.full_like(labels, float(ignore_value)), labels)


def _curve(y_true, y_score, per_sample=False):
    """Precision and recall of one class after each distinct threshold (decreasing), or after each sample in
    stable decreasing-score order with ``per_sample`` (the VOC2007 devkit's); None without positives."""
    positives = y_true.sum()
    if positives == 0:
        return None
    order = np.argsort(-y_score, kind="stable")
    score, hit = y_score[order], y_true[order]
    cut = np.arange(len(score)) if per_sample else np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tp = np.cumsum(hit)[cut]
    predicted = cut + 1
    return tp / predicted, tp / positives


def _ap_one(y_true, y_score, ignore_value, method):
    keep = y_true != ignore_value
    eleven = method == "11point"
    curve = _curve((y_true[keep] > 0.5).astype(np.float64), y_score[keep].astype(np.float64), per_sample=eleven)
    if curve is None:
        return np.nan
    precision, recall = curve
    if eleven:
        return float(np.mean([precision[recall >= t].max(initial=0.0) for t in ELEVEN_POINTS]))
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def average_precision(y_true, y_score, ignore_value=IGNORE, method="exact"):
    """Average precision of each class.

    Args:
        y_true: (N,) or (N, C) targets: 1 positive, 0 negative, ``ignore_value`` ignored.
        y_score: scores of the same shape (any monotone score: probabilities or logits).
        method: "exact" (non-interpolated, the default) or "11point" (VOC2007's interpolated AP).

    Returns:
        a float for 1-D input, else a (C,) float64 array; NaN for a class with no positive sample.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape or y_true.ndim not in (1, 2):
        raise ValueError(f"y_true and y_score must have the same shape (N,) or (N, C); got {y_true.shape} and "
                         f"{y_score.shape}")
    if y_true.ndim == 1:
        return _ap_one(y_true, y_score, ignore_value, method)
    return np.array([_ap_one(y_true[:, c], y_score[:, c], ignore_value, method) for c in range(y_true.shape[1])])


def mean_average_precision(y_true, y_score, ignore_value=IGNORE, method="exact", per_class=False):
    """mAP: the mean of ``average_precision`` over the classes that have a positive sample (NaN if none has).

    With ``per_class=True`` returns ``(mAP, per-class AP array)``.
    """
    ap = np.atleast_1d(average_precision(y_true, y_score, ignore_value, method))
    value = float(np.nanmean(ap)) if np.any(~np.isnan(ap)) else float("nan")
    return (value, ap) if per_class else value


@keras.saving.register_keras_serializable(package="affect_zoo")
class MeanAveragePrecision(keras.metrics.Metric):
    """Streaming mAP for multi-label outputs, accumulated over batches as per-class score histograms.

    Scores in [0, 1] (sigmoid outputs; ``from_logits=True`` applies the sigmoid first) are put in
    ``num_thresholds`` equal bins; per class the metric keeps the (weighted) number of positives and negatives per
    bin, and ``result()`` is the exact AP of the scores rounded down to their bins (ties within a bin count as one
    threshold), averaged over the classes with a positive. With distinct bins per sample it equals
    ``mean_average_precision``; with 200 bins it is within a few 1e-3 of it on real data. Entries whose target is
    ``ignore_value`` are not counted. ``per_class_result()`` gives the (C,) AP vector (NaN where no positive).
    """

    def __init__(self, num_labels, num_thresholds=200, ignore_value=IGNORE, from_logits=False,
                 name="map", dtype=None):
        super().__init__(name=name, dtype=dtype)
        if int(num_labels) < 1 or int(num_thresholds) < 2:
            raise ValueError(f"num_labels must be >= 1 and num_thresholds >= 2; got {num_labels}, {num_thresholds}")
        self.num_labels = int(num_labels)
        self.num_thresholds = int(num_thresholds)
        self.ignore_value = float(ignore_value)
        self.from_logits = bool(from_logits)
        shape = (self.num_labels, self.num_thresholds)
        self.positives = self.add_variable(shape=shape, initializer="zeros", name="positives")
        self.negatives = self.add_variable(shape=shape, initializer="zeros", name="negatives")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.reshape(ops.cast(y_true, "float32"), (-1, self.num_labels))
        y_pred = ops.reshape(ops.cast(y_pred, "float32"), (-1, self.num_labels))
        if self.from_logits:
            y_pred = ops.sigmoid(y_pred)
        bins = ops.cast(ops.floor(ops.clip(y_pred, 0.0, 1.0) * self.num_thresholds), "int32")
        bins = ops.minimum(bins, self.num_thresholds - 1)
        valid = ops.cast(ops.not_equal(y_true, self.ignore_value), "float32")
        weight = valid
        if sample_weight is not None:
            sample_weight = ops.reshape(ops.cast(sample_weight, "float32"), (-1, 1))
            weight = weight * sample_weight
        positive = ops.cast(y_true > 0.5, "float32") * weight
        negative = (1.0 - ops.cast(y_true > 0.5, "float32")) * weight
        onehot = ops.one_hot(bins, self.num_thresholds)  # (B, C, T)
        self.positives.assign_add(ops.sum(onehot * positive[..., None], axis=0))
        self.negatives.assign_add(ops.sum(onehot * negative[..., None], axis=0))

    def per_class_result(self):
        # From the highest bin down: counts above each threshold.
        tp = ops.flip(ops.cumsum(ops.flip(self.positives, axis=1), axis=1), axis=1)
        fp = ops.flip(ops.cumsum(ops.flip(self.negatives, axis=1), axis=1), axis=1)
        total = tp[:, :1]
        precision = ops.divide_no_nan(tp, tp + fp)
        recall = ops.divide_no_nan(tp, total)
        next_recall = ops.concatenate([recall[:, 1:], ops.zeros_like(recall[:, :1])], axis=1)
        ap = ops.sum((recall - next_recall) * precision, axis=1)
        return ops.where(total[:, 0] > 0, ap, ops.full_like(ap, float("nan")))

    def result(self):
        ap = self.per_class_result()
        has = ops.logical_not(ops.isnan(ap))
        count = ops.sum(ops.cast(has, "float32"))
        return ops.divide_no_nan(ops.sum(ops.where(has, ap, ops.zeros_like(ap))), count)

    def reset_state(self):
        for variable in (self.positives, self.negatives):
            variable.assign(ops.zeros_like(variable))

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "num_labels": self.num_labels,
                "num_thresholds": self.num_thresholds, "ignore_value": self.ignore_value,
                "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="affect_zoo")
class MaskedBinaryCrossentropy(keras.losses.Loss):
    """Multi-label BCE per sample in which targets equal to ``ignore_value`` (default -1) contribute nothing.

    Per sample: Σ_c m_c·BCE(t_c, p_c) / C with m_c = [t_c ≠ ignore_value]. The divisor stays C (not Σ m_c), so
    every non-ignored label of the batch weighs the same whatever else its sample ignores, and a target without
    ignored entries gives exactly ``keras.losses.BinaryCrossentropy``. Probabilities are clipped to
    [ε, 1 − ε] (Keras' epsilon) as Keras does.
    """

    def __init__(self, ignore_value=IGNORE, from_logits=False, name="masked_binary_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_value = float(ignore_value)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        valid = ops.not_equal(y_true, self.ignore_value)
        target = ops.where(valid, y_true, ops.zeros_like(y_true))
        elementwise = ops.binary_crossentropy(target, y_pred, from_logits=self.from_logits)
        elementwise = ops.where(valid, elementwise, ops.zeros_like(elementwise))
        return ops.mean(elementwise, axis=-1)

    def get_config(self):
        return {**super().get_config(), "ignore_value": self.ignore_value, "from_logits": self.from_logits}
