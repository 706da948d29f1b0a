"""Each balancer against its published formula, on hand-built loss sequences."""
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo import balancing
from affect_zoo.tasks import Task

TASKS = [Task("emotion", "distribution", 7), Task("va", "regression", 2)]


def configured(balancer):
    balancer.configure(TASKS)
    return balancer


def test_fixed_weights_is_the_weighted_sum():
    b = configured(balancing.FixedWeights([0.25, 2.0]))
    assert float(b.combine(tf.constant([3.0, 5.0]))) == pytest.approx(0.25 * 3 + 2.0 * 5)
    with pytest.raises(ValueError, match="3 weights given for 2 tasks"):
        configured(balancing.FixedWeights([1, 1, 1]))


def test_uncertainty_matches_kendall_and_its_gradient():
    b = configured(balancing.Uncertainty())
    s = np.array([0.3, -0.7], np.float32)
    b.log_variance.assign(s)
    losses = np.array([1.2, 0.4], np.float32)
    # Classification-like task: L/σ² + log σ; regression: L/(2σ²) + log σ, with s = log σ².
    expected = np.exp(-s[0]) * losses[0] + 0.5 * s[0] + 0.5 * np.exp(-s[1]) * losses[1] + 0.5 * s[1]
    with tf.GradientTape() as tape:
        value = b.combine(tf.constant(losses))
    assert float(value) == pytest.approx(expected, rel=1e-6)
    grad = tape.gradient(value, b.log_variance).numpy()
    np.testing.assert_allclose(grad, [-np.exp(-s[0]) * losses[0] + 0.5, -0.5 * np.exp(-s[1]) * losses[1] + 0.5],
                               rtol=1e-5)


def test_dwa_weights_follow_the_loss_ratios_after_two_epochs():
    b = configured(balancing.DWA())
    history = [[2.0, 1.0], [1.0, 0.9], [0.8, 0.9], [0.7, 0.45]]
    seen = []
    for epoch_losses in history:
        seen.append(b.task_weights().numpy().copy())
        b.end_epoch(epoch_losses)
    np.testing.assert_allclose(seen[0], [1, 1])
    np.testing.assert_allclose(seen[1], [1, 1])
    for t in (2, 3):
        r = np.array(history[t - 1]) / np.array(history[t - 2])
        e = np.exp(r / 2.0)
        np.testing.assert_allclose(seen[t], 2 * e / e.sum(), rtol=1e-6)
    assert seen[2][0] < seen[2][1]  # the task whose loss fell faster gets less weight


def test_gradnorm_objective_gradient_and_renormalisation():
    b = configured(balancing.GradNorm(alpha=1.5))
    first = np.array([2.0, 1.0], np.float32)
    b.auxiliary_loss(tf.constant(first), tf.constant([1.0, 1.0]))  # records L(0)
    np.testing.assert_allclose(b.initial_losses.numpy(), first)
    w = np.array([1.4, 0.6], np.float32)
    b.weights_var.assign(w)
    losses, norms = np.array([1.0, 0.8], np.float32), np.array([3.0, 0.5], np.float32)
    with tf.GradientTape() as tape:
        value = b.auxiliary_loss(tf.constant(losses), tf.constant(norms))
    g = w * norms
    relative = losses / first
    r = relative / relative.mean()
    target = g.mean() * r ** 1.5
    assert float(value) == pytest.approx(np.abs(g - target).sum(), rel=1e-5)
    grad = tape.gradient(value, b.weights_var).numpy()
    np.testing.assert_allclose(grad, np.sign(g - target) * norms, rtol=1e-5)
    b.weights_var.assign([3.0, 1.0])
    b.after_update()
    np.testing.assert_allclose(b.task_weights().numpy(), [1.5, 0.5], rtol=1e-6)


def test_unknown_balancer_is_named():
    with pytest.raises(ValueError, match="unknown balancer 'nope'"):
        balancing.get("nope")
