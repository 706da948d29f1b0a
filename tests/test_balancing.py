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


# Gradient surgery, through Balancer.gradients on a linear problem: L_k = g_k·θ + ½‖h_k‖², so ∇_θ L_k = g_k exactly
# (θ shared, h_k task k's own parameters); each method's combined shared gradient is then its formula applied to
# fixed vectors, computed below in NumPy.

def surgery(balancer, task_gradients, steps=1):
    """The gradients the balancer returns for (θ, h_1..h_K), from the fixed task gradients g_k (rows)."""
    g = np.asarray(task_gradients, np.float64)
    tasks = [Task(f"t{k}", "regression", 1) for k in range(len(g))]
    balancer.configure(tasks)
    theta = tf.Variable(np.ones(g.shape[1], np.float32))
    heads = [tf.Variable([float(k + 1)]) for k in range(len(g))]
    for _ in range(steps):
        with tf.GradientTape(persistent=True) as tape:
            losses = [tf.reduce_sum(tf.constant(row, tf.float32) * theta) + 0.5 * tf.reduce_sum(h * h)
                      for row, h in zip(g, heads)]
            objective = balancer.combine(tf.stack(losses))
        out = balancer.gradients(tape, objective, losses, [theta, *heads], [theta])
    np.testing.assert_allclose([o.numpy() for o in out[1:]], [h.numpy() for h in heads])  # own task's gradient
    return out[0].numpy().astype(np.float64)


def numpy_pcgrad(g, orders):
    """Yu et al. 2020, Algorithm 1: g_i ← g_i − (g_i·g_j / ‖g_j‖²) g_j if g_i·g_j < 0, over j ≠ i in the
    given order; the update is Σ_i g_i^PC."""
    total = np.zeros(g.shape[1])
    for i, order in enumerate(orders):
        pc = g[i].copy()
        for j in order:
            if j != i and pc @ g[j] < 0:
                pc -= (pc @ g[j]) / (g[j] @ g[j]) * g[j]
        total += pc
    return total


def test_pcgrad_projects_conflicting_gradients_as_algorithm_1():
    g = np.array([[1.0, 1.0], [-1.0, 0.5]])
    # two tasks conflict (g1·g2 = −0.5): g1' = g1 + 0.5/1.25·g2, g2' = g2 + 0.5/2·g1
    expected = g[0] + 0.4 * g[1] + g[1] + 0.25 * g[0]
    np.testing.assert_allclose(surgery(balancing.PCGrad(), g), expected, rtol=1e-6)
    no_conflict = np.array([[1.0, 0.0], [1.0, 2.0]])
    np.testing.assert_allclose(surgery(balancing.PCGrad(), no_conflict), no_conflict.sum(0), rtol=1e-6)
    three = np.array([[2.0, -1.0, 0.5, 0.0], [-1.5, 1.0, 1.0, 0.3], [0.2, -2.0, -1.0, 1.0]])
    for step in (1, 2, 3):
        b = balancing.PCGrad(seed=7)
        got = surgery(b, three, steps=step)
        orders = b.task_orders(step - 1).numpy()
        np.testing.assert_allclose(got, numpy_pcgrad(three, orders), rtol=1e-5, atol=1e-6)
    # the order is a function of (seed, step) only
    a, b = balancing.PCGrad(seed=7), balancing.PCGrad(seed=7)
    for x in (a, b):
        x.configure([Task(f"t{k}", "regression", 1) for k in range(4)])
    np.testing.assert_array_equal(a.task_orders(5).numpy(), b.task_orders(5).numpy())
    assert any(not np.array_equal(a.task_orders(s).numpy(), a.task_orders(0).numpy()) for s in range(1, 6))


def test_mgda_two_tasks_is_the_closed_form():
    """Sener & Koltun 2018, Algorithm 1: γ = clip(((g2 − g1)·g2) / ‖g1 − g2‖², 0, 1), d = γ g1 + (1 − γ) g2."""
    for g in (np.array([[1.0, 0.0], [-0.5, 1.0]]), np.array([[3.0, 1.0], [1.0, 0.1]]),
              np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])):
        gamma = np.clip((g[1] - g[0]) @ g[1] / np.sum((g[0] - g[1]) ** 2), 0, 1)
        np.testing.assert_allclose(surgery(balancing.MGDA(), g), gamma * g[0] + (1 - gamma) * g[1], rtol=1e-5,
                                   atol=1e-7)


def simplex_grid_3(n):
    """Every point of the 3-simplex with coordinates in multiples of 1/n."""
    i, j = (a.ravel() for a in np.meshgrid(np.arange(n + 1), np.arange(n + 1)))
    keep = i + j <= n
    return np.stack([i[keep], j[keep], n - i[keep] - j[keep]], 1) / n


def test_mgda_frank_wolfe_matches_a_brute_force_min_norm():
    """Eq. 3 for K = 3: min_{α ∈ Δ} ‖Σ α_k g_k‖², brute force over a 1/1500 grid of the simplex."""
    for g in (np.array([[1.0, 0.2, 0.0, 0.5], [-0.4, 1.0, 0.3, 0.0], [0.1, -0.6, 1.0, -0.2]]),
              np.array([[2.0, 0.0, 1.0, 0.0], [0.0, 2.0, 1.0, 0.0], [1.0, 1.0, 0.0, 3.0]])):
        alphas = simplex_grid_3(1500)
        points = alphas @ g
        best = points[np.argmin(np.sum(points ** 2, axis=1))]
        got = surgery(balancing.MGDA(), g)
        assert got @ got == pytest.approx(best @ best, rel=1e-4, abs=1e-8)
        np.testing.assert_allclose(got, best, atol=2e-3)


def cagrad_primal_2d(g, c):
    """Liu et al. 2021, eq. 2 for 2-d gradients: max_d min_k g_k·d over ‖d − g0‖ ≤ c‖g0‖ (g0 the mean), by brute
    force over 10⁶ directions of the circle (the maximum of a minimum of linear functions over a disc is on its
    boundary)."""
    g0 = g.mean(0)
    theta = np.linspace(0, 2 * np.pi, 1_000_001)
    d = g0 + c * np.linalg.norm(g0) * np.stack([np.cos(theta), np.sin(theta)], 1)
    return d[np.argmax(np.min(d @ g.T, axis=1))]


def test_cagrad_solves_its_primal_problem():
    """Through the dual (w ∈ Δ minimising g_wᵀg0 + √φ‖g_w‖, d = g0 + √φ/‖g_w‖·g_w) to the primal's answer, for
    c in the paper's range [0, 1), with and without 0 in the gradients' convex hull."""
    for g in (np.array([[1.0, 0.3], [-0.6, 1.0]]), np.array([[2.0, -1.0], [-1.0, 0.4], [0.5, 1.5]]),
              np.array([[1.0, 0.0], [0.9, 0.2]])):
        np.testing.assert_allclose(surgery(balancing.CAGrad(), g), cagrad_primal_2d(g, 0.5), atol=1e-5)
        np.testing.assert_allclose(surgery(balancing.CAGrad(c=0.9), g), cagrad_primal_2d(g, 0.9), atol=1e-5)
    g = np.array([[1.0, 0.3], [-0.6, 1.0]])
    np.testing.assert_allclose(surgery(balancing.CAGrad(c=0.0), g), g.mean(0), rtol=1e-6)


def test_surgery_balancers_are_registered_and_round_trip_their_options():
    import keras

    for name, cls, options in (("pcgrad", balancing.PCGrad, {"seed": 4}), ("mgda", balancing.MGDA, {}),
                               ("cagrad", balancing.CAGrad, {"c": 0.3})):
        b = balancing.get(name, **options)
        assert isinstance(b, cls) and b.needs_task_gradients and b.shared_role == "shared"
        copy = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(b))
        assert type(copy) is cls and all(copy.get_config()[k] == v for k, v in options.items())
    with pytest.raises(ValueError, match="c must be >= 0"):
        balancing.CAGrad(c=-1)


def test_a_recipe_names_a_gradient_balancer_and_its_options():
    import keras

    from affect_zoo import zoo
    from affect_zoo.models import shared

    inputs = keras.Input((3,))
    h = keras.layers.Dense(4, name="trunk")(inputs)
    network = shared.declare(keras.Model(inputs, {t.name: t.head(h) for t in TASKS}), ["trunk"], ["trunk"])
    recipe = {"name": "r", "dataset": {"name": "emotion6"}, "model": {"family": "multitask", "backbone": "vgg16"},
              "tasks": [t.get_config() for t in TASKS], "training": {"balancer": {"name": "pcgrad", "seed": 5}}}
    model = zoo.multitask_model(recipe, network)
    assert isinstance(model.balancer, balancing.PCGrad) and model.balancer.seed == 5
    assert [v.path for v in model.balancer_variables()] == ["trunk/kernel", "trunk/bias"]
    with pytest.raises(ValueError, match="cc"):
        zoo.multitask_model({**recipe, "training": {"balancer": {"name": "cagrad", "cc": 1}}}, network)
