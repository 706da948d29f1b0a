"""LDL measures, their Keras metric classes, and the regression helpers, on hand-computed cases."""
import math

import keras
import numpy as np
import pytest

from affect_zoo import metrics

# Two samples with zeros. Row 0: d = (.5, .5, 0), d̂ = (.25, .5, .25); row 1: d = (1, 0, 0), d̂ = (.5, 0, .5)
# (entry 1 is 0 on both sides: a 0/0 term). Values worked out by hand from the definitions.
T = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
P = np.array([[0.25, 0.5, 0.25], [0.5, 0.0, 0.5]])
EXPECTED = {
    "chebyshev": [0.25, 0.5],
    "clark": [math.sqrt(1 / 9 + 1), math.sqrt(1 / 9 + 1)],  # (.25/.75)² + 0 + (.25/.25)²; (.5/1.5)² + 0/0 + 1
    "canberra": [1 / 3 + 1, 1 / 3 + 1],
    "kl": [0.5 * math.log(2), math.log(2)],
    "cosine": [0.375 / (math.sqrt(0.5) * math.sqrt(0.375)), 0.5 / math.sqrt(0.5)],
    "intersection": [0.75, 0.5],
    "top1_accuracy": [0.0, 1.0],  # row 0: tie 0/1 in d → first index 0, d̂ peaks at 1
}
CLASSES = {
    "chebyshev": metrics.Chebyshev,
    "clark": metrics.Clark,
    "canberra": metrics.Canberra,
    "kl": metrics.KLDivergence,
    "cosine": metrics.Cosine,
    "intersection": metrics.Intersection,
    "top1_accuracy": metrics.Top1Accuracy,
}


@pytest.mark.parametrize("name", list(EXPECTED))
def test_numpy_measures_by_hand(name):
    values = metrics.MEASURES[name](T, P)
    assert values.shape == (2,)
    np.testing.assert_allclose(values, EXPECTED[name], rtol=1e-12)
    assert float(metrics.MEASURES[name](T[1], P[1])) == pytest.approx(EXPECTED[name][1])


def test_identical_distributions():
    d = np.array([[0.2, 0.0, 0.8]])
    result = metrics.distribution_metrics(d, d)
    assert result == pytest.approx(
        {"chebyshev": 0, "clark": 0, "canberra": 0, "kl": 0, "cosine": 1, "intersection": 1, "top1_accuracy": 1}
    )


def test_kl_clips_zero_predictions():
    assert metrics.kl_divergence([1.0, 0.0], [0.0, 1.0]) == pytest.approx(math.log(1e7))
    assert metrics.kl_divergence([1.0, 0.0], [0.0, 1.0], epsilon=1e-3) == pytest.approx(math.log(1e3))


def test_distribution_metrics_means():
    result = metrics.distribution_metrics(T, P)
    assert list(result) == list(metrics.MEASURES)
    for name, values in EXPECTED.items():
        assert result[name] == pytest.approx(np.mean(values))
        assert isinstance(result[name], float)


def test_directions():
    assert {n for n, d in metrics.DIRECTIONS.items() if d == "up"} == {"cosine", "intersection", "top1_accuracy"}
    assert set(metrics.DIRECTIONS) == set(metrics.MEASURES)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_keras_metric_is_stateful_mean(name):
    metric = CLASSES[name]()
    assert metric.name == name and metric._direction == metrics.DIRECTIONS[name]
    # three samples in two batches of unequal size: the result is the mean over samples, not over batches
    extra_t, extra_p = np.array([[0.0, 0.0, 1.0]]), np.array([[0.0, 0.0, 1.0]])
    metric.update_state(T, P)
    metric.update_state(extra_t, extra_p)
    expected = np.concatenate([EXPECTED[name], metrics.MEASURES[name](extra_t, extra_p)]).mean()
    assert float(metric.result()) == pytest.approx(expected, rel=1e-5)
    metric.reset_state()
    metric.update_state(T[:1], P[:1])
    assert float(metric.result()) == pytest.approx(EXPECTED[name][0], rel=1e-5)


def test_keras_metric_configs_round_trip():
    for metric in [*metrics.distribution_metric_objects(), metrics.KLDivergence(name="kl3", epsilon=1e-3)]:
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
        assert type(restored) is type(metric) and restored.get_config() == metric.get_config()
    assert metrics.KLDivergence(epsilon=1e-3).get_config()["epsilon"] == 1e-3


def test_bad_inputs_raise_value_error():
    with pytest.raises(ValueError, match=r"same shape.*y_true \(2, 3\), y_pred \(2, 4\)"):
        metrics.chebyshev(np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match=r"got y_true \(1, 2, 3\)"):
        metrics.distribution_metrics(np.ones((1, 2, 3)), np.ones((1, 2, 3)))
    with pytest.raises(ValueError, match="y_pred must be probabilities.*-0.5"):
        metrics.clark([0.5, 0.5], [1.5, -0.5])
    with pytest.raises(ValueError, match=r"cosine: y_true and y_pred must have the same number of classes"):
        metrics.Cosine().update_state(np.ones((2, 3)), np.ones((2, 4)))


def test_mae_and_pearson():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([2.0, 2.0, 2.0, 6.0])
    assert metrics.mae(t, p) == pytest.approx((1 + 0 + 1 + 2) / 4)
    # deviations: t − 2.5 = (−1.5, −.5, .5, 1.5), p − 3 = (−1, −1, −1, 3): Σ = 6, Σt² = 5, Σp² = 12
    assert metrics.pearson_r(t, p) == pytest.approx(6 / math.sqrt(5 * 12))
    columns = np.stack([t, t], axis=1)
    np.testing.assert_allclose(metrics.mae(columns, np.stack([p, t], axis=1)), [1.0, 0.0])
    np.testing.assert_allclose(metrics.pearson_r(columns, np.stack([p, -t], axis=1)), [6 / math.sqrt(60), -1.0])


def test_pearson_of_constant_is_nan_and_shapes_are_checked():
    assert np.isnan(metrics.pearson_r([1.0, 2.0, 3.0], [5.0, 5.0, 5.0]))
    with pytest.raises(ValueError, match="at least 2 samples"):
        metrics.pearson_r([1.0], [2.0])
    with pytest.raises(ValueError, match=r"y_true \(3,\), y_pred \(2,\)"):
        metrics.mae([1.0, 2.0, 3.0], [1.0, 2.0])
