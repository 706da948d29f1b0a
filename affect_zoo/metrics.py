"""Label-distribution measures (Geng, "Label Distribution Learning", 2016), top-1 accuracy, and regression helpers.

Each distribution measure is written once against the API NumPy and `keras.ops` share, and used twice: as a NumPy
function (`chebyshev(y_true, y_pred)` → one value per sample) for offline evaluation, and as a stateful Keras
metric (the mean over all samples seen) for `compile`. Sharing the formula keeps the two from drifting apart.
Distributions are rows of the last axis: (B, K) gives B values, (K,) gives a scalar.
"""
import keras
import numpy as np

# Floor for predicted probabilities inside log: a softmax can underflow to 0 and log(0) would make KL infinite.
EPSILON = 1e-7


def _safe_ratio(xp, num, den):
    """num / den where den > 0, else 0: for these measures a 0/0 term means two zero entries, i.e. no difference."""
    nonzero = den > 0
    return xp.where(nonzero, num / xp.where(nonzero, den, 1), 0)


def _chebyshev(xp, t, p):
    return xp.max(xp.abs(t - p), axis=-1)


def _clark(xp, t, p):
    return xp.sqrt(xp.sum(_safe_ratio(xp, (t - p) ** 2, (t + p) ** 2), axis=-1))


def _canberra(xp, t, p):
    return xp.sum(_safe_ratio(xp, xp.abs(t - p), t + p), axis=-1)


def _kl_divergence(xp, t, p, epsilon=EPSILON):
    """Σ t·log(t / p̂) with p̂ = clip(p, ε, 1); a term with t = 0 is 0 (the limit of t·log t), never NaN."""
    present = t > 0
    log_ratio = xp.log(xp.where(present, t, 1)) - xp.log(xp.clip(p, epsilon, 1))
    return xp.sum(xp.where(present, t * log_ratio, 0), axis=-1)


def _cosine(xp, t, p):
    norms = xp.sqrt(xp.sum(t * t, axis=-1)) * xp.sqrt(xp.sum(p * p, axis=-1))
    return _safe_ratio(xp, xp.sum(t * p, axis=-1), norms)


def _intersection(xp, t, p):
    return xp.sum(xp.minimum(t, p), axis=-1)


def _top1_accuracy(xp, t, p):
    hit = xp.argmax(t, axis=-1) == xp.argmax(p, axis=-1)
    return xp.where(hit, 1.0, 0.0)


def _as_arrays(y_true, y_pred):
    """Float64 arrays of equal shape (K,) or (B, K) with no negative entry, or a ValueError naming the argument."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim not in (1, 2):
        raise ValueError(
            f"y_true and y_pred must have the same shape (K,) or (B, K); got y_true {t.shape}, y_pred {p.shape}"
        )
    for arg, value in (("y_true", t), ("y_pred", p)):
        if np.any(value < 0):
            raise ValueError(f"{arg} must be probabilities (no negative entries); got minimum {value.min()}")
    return t, p


def chebyshev(y_true, y_pred):
    """Chebyshev distance max_j |d_j − d̂_j| per sample (lower is better)."""
    return _chebyshev(np, *_as_arrays(y_true, y_pred))


def clark(y_true, y_pred):
    """Clark distance sqrt(Σ_j (d_j − d̂_j)² / (d_j + d̂_j)²) per sample (lower is better); 0/0 terms count 0."""
    return _clark(np, *_as_arrays(y_true, y_pred))


def canberra(y_true, y_pred):
    """Canberra distance Σ_j |d_j − d̂_j| / (d_j + d̂_j) per sample (lower is better); 0/0 terms count 0."""
    return _canberra(np, *_as_arrays(y_true, y_pred))


def kl_divergence(y_true, y_pred, epsilon=EPSILON):
    """KL(d‖d̂) = Σ_j d_j·log(d_j / d̂_j) per sample (lower is better); d̂ clipped at epsilon, d_j = 0 terms are 0."""
    return _kl_divergence(np, *_as_arrays(y_true, y_pred), epsilon=epsilon)


def cosine(y_true, y_pred):
    """Cosine similarity d·d̂ / (‖d‖‖d̂‖) per sample (higher is better); 0 if either vector is all zeros."""
    return _cosine(np, *_as_arrays(y_true, y_pred))


def intersection(y_true, y_pred):
    """Intersection similarity Σ_j min(d_j, d̂_j) per sample (higher is better)."""
    return _intersection(np, *_as_arrays(y_true, y_pred))


def top1_accuracy(y_true, y_pred):
    """1.0 where argmax d̂ = argmax d, else 0.0, per sample (higher is better).

    Ties take the first maximal index on both sides (NumPy's argmax), i.e. the dominant emotion in label order.
    """
    return _top1_accuracy(np, *_as_arrays(y_true, y_pred))


# The NumPy measures by metric name, in report order, and whether lower ("down") or higher ("up") is better.
MEASURES = {
    "chebyshev": chebyshev,
    "clark": clark,
    "canberra": canberra,
    "kl": kl_divergence,
    "cosine": cosine,
    "intersection": intersection,
    "top1_accuracy": top1_accuracy,
}
DIRECTIONS = {
    "chebyshev": "down",
    "clark": "down",
    "canberra": "down",
    "kl": "down",
    "cosine": "up",
    "intersection": "up",
    "top1_accuracy": "up",
}


def distribution_metrics(y_true, y_pred):
    """{metric name: mean over samples} for all measures in MEASURES, as Python floats."""
    t, p = _as_arrays(y_true, y_pred)
    return {name: float(np.mean(fn(t, p))) for name, fn in MEASURES.items()}


def _as_columns(y_true, y_pred):
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape or t.ndim not in (1, 2) or t.shape[0] == 0:
        raise ValueError(
            f"y_true and y_pred must have the same non-empty shape (N,) or (N, T); got y_true {t.shape}, "
            f"y_pred {p.shape}"
        )
    return t, p


def mae(y_true, y_pred):
    """Mean absolute error over samples (axis 0): a float for (N,), one per column for (N, T) (valence, arousal)."""
    t, p = _as_columns(y_true, y_pred)
    return np.mean(np.abs(t - p), axis=0)


def pearson_r(y_true, y_pred):
    """Pearson correlation over samples (axis 0): a float for (N,), one per column for (N, T).

    A column with zero variance (e.g. a constant predictor) has no defined correlation: NaN, without a warning,
    rather than a number that would read as measured.
    """
    t, p = _as_columns(y_true, y_pred)
    if t.shape[0] < 2:
        raise ValueError(f"pearson_r needs at least 2 samples; got y_true shape {t.shape}")
    dt, dp = t - t.mean(axis=0), p - p.mean(axis=0)
    den = np.sqrt(np.sum(dt * dt, axis=0) * np.sum(dp * dp, axis=0))
    return np.where(den > 0, np.sum(dt * dp, axis=0) / np.where(den > 0, den, 1), np.nan)[()]


class _DistributionMetric(keras.metrics.Mean):
    """Mean over all samples seen of one per-sample measure (a sample-weighted mean if weights are given).

    Keras reads a metric's `_direction` ("up" / "down") to resolve `mode="auto"` in EarlyStopping and
    ModelCheckpoint, so it is set from DIRECTIONS.
    """

    metric_key = None  # the name in DIRECTIONS and MEASURES
    measure = None  # the shared formula, called as measure(keras.ops, y_true, y_pred)

    def __init__(self, name, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._direction = DIRECTIONS[self.metric_key]

    def update_state(self, y_true, y_pred, sample_weight=None):
        t = keras.ops.convert_to_tensor(y_true, dtype=self.dtype)
        p = keras.ops.convert_to_tensor(y_pred, dtype=self.dtype)
        if t.shape[-1] is not None and p.shape[-1] is not None and t.shape[-1] != p.shape[-1]:
            raise ValueError(
                f"{self.name}: y_true and y_pred must have the same number of classes; got y_true shape "
                f"{tuple(t.shape)}, y_pred shape {tuple(p.shape)}"
            )
        return super().update_state(self._values(t, p), sample_weight=sample_weight)

    def _values(self, t, p):
        return type(self).measure(keras.ops, t, p)


@keras.saving.register_keras_serializable(package="affect_zoo")
class Chebyshev(_DistributionMetric):
    """Mean Chebyshev distance (lower is better); see `chebyshev`."""

    metric_key, measure = "chebyshev", staticmethod(_chebyshev)

    def __init__(self, name="chebyshev", dtype=None):
        super().__init__(name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="affect_zoo")
class Clark(_DistributionMetric):
    """Mean Clark distance (lower is better); see `clark`."""

    metric_key, measure = "clark", staticmethod(_clark)

    def __init__(self, name="clark", dtype=None):
        super().__init__(name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="affect_zoo")
class Canberra(_DistributionMetric):
    """Mean Canberra distance (lower is better); see `canberra`."""

    metric_key, measure = "canberra", staticmethod(_canberra)

    def __init__(self, name="canberra", dtype=None):
        super().__init__(name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="affect_zoo")
class KLDivergence(_DistributionMetric):
    """Mean KL(d‖d̂) (lower is better); see `kl_divergence`."""

    metric_key = "kl"

    def __init__(self, name="kl", dtype=None, epsilon=EPSILON):
        super().__init__(name=name, dtype=dtype)
        self.epsilon = epsilon

    def _values(self, t, p):
        return _kl_divergence(keras.ops, t, p, epsilon=self.epsilon)

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


@keras.saving.register_keras_serializable(package="affect_zoo")
class Cosine(_DistributionMetric):
    """Mean cosine similarity (higher is better); see `cosine`."""

    metric_key, measure = "cosine", staticmethod(_cosine)

    def __init__(self, name="cosine", dtype=None):
        super().__init__(name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="affect_zoo")
class Intersection(_DistributionMetric):
    """Mean intersection similarity (higher is better); see `intersection`."""

    metric_key, measure = "intersection", staticmethod(_intersection)

    def __init__(self, name="intersection", dtype=None):
        super().__init__(name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="affect_zoo")
class Top1Accuracy(_DistributionMetric):
    """Fraction of samples whose predicted dominant emotion is the true one (higher is better); see `top1_accuracy`."""

    metric_key, measure = "top1_accuracy", staticmethod(_top1_accuracy)

    def __init__(self, name="top1_accuracy", dtype=None):
        super().__init__(name=name, dtype=dtype)


def distribution_metric_objects():
    """Fresh Keras metrics for all measures, in MEASURES order (e.g. `compile(metrics={"distribution": ...})`)."""
    return [Chebyshev(), Clark(), Canberra(), KLDivergence(), Cosine(), Intersection(), Top1Accuracy()]
