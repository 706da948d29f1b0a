"""AdaptiveFeatureInteraction: the forward against a NumPy transcription of eqs 1–6 with the layer's own
weights, gradient recalibration against eqs 7–8 evaluated in NumPy, the inference graph, serialization and
bad inputs."""
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo.layers.afi import AdaptiveFeatureInteraction, recalibrate_gradient

SHAPE = (2, 3, 3, 8)


def make_layer(rng, shape=SHAPE, **kwargs):
    """A built layer whose weights (biases included) are random, so every term of the equations shows."""
    layer = AdaptiveFeatureInteraction(reduction=4, **kwargs)
    layer.build([shape, shape])
    layer.set_weights([np.asarray(w) if w.name == "temperature" else rng.normal(scale=0.5, size=w.shape)
                       for w in layer.weights])
    return layer


def pair(rng, shape=SHAPE):
    return [rng.normal(size=shape).astype("float32") for _ in range(2)]


def afi_numpy(layer, x_a, x_e):
    """Eqs 1–6 in float64 as the paper writes them (w_self·x + w_other·y), and each direction's w_self."""
    weights = {w.name: np.asarray(w, dtype=np.float64) for w in layer.weights}
    x_a, x_e = x_a.astype(np.float64), x_e.astype(np.float64)
    spatial = tuple(range(1, x_a.ndim - 1))
    directions = [""] if layer.shared_directions else ["_a", "_e"]
    w_self = {d: [] for d in directions}
    for pooling in ["max", "avg"] if layer.pooling == "both" else [layer.pooling]:
        pool = np.max if pooling == "max" else np.mean
        d = np.concatenate([pool(x_a, axis=spatial), pool(x_e, axis=spatial)], axis=-1)
        hidden = np.maximum(d @ weights[f"{pooling}_kernel"] + weights[f"{pooling}_bias"], 0.0)
        for direction in directions:
            u = np.exp(hidden @ weights[f"{pooling}_u{direction}"])
            v = np.exp(hidden @ weights[f"{pooling}_v{direction}"])
            w_self[direction].append(u / (u + v))
    w_a, w_e = (np.mean(w_self[d], axis=0) for d in (directions[0], directions[-1]))
    wa, we = (np.expand_dims(w, spatial) for w in (w_a, w_e))
    return wa * x_a + (1 - wa) * x_e + x_a, we * x_e + (1 - we) * x_a + x_e, w_a, w_e


@pytest.mark.parametrize("pooling, shared, shape", [
    *[(pooling, shared, SHAPE) for pooling in ("both", "max", "avg") for shared in (True, False)],
    ("both", False, (2, 5, 8)),
])
def test_forward_matches_numpy(rng, pooling, shared, shape):
    layer = make_layer(rng, shape, pooling=pooling, shared_directions=shared)
    x_a, x_e = pair(rng, shape)
    want_a, want_e, want_wa, want_we = afi_numpy(layer, x_a, x_e)
    out_a, out_e = layer([x_a, x_e])
    np.testing.assert_allclose(out_a, want_a, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out_e, want_e, rtol=1e-5, atol=1e-5)
    w_a, w_e = layer.interaction_weights([x_a, x_e])
    assert w_a.shape == w_e.shape == (shape[0], shape[-1])
    np.testing.assert_allclose(w_a, want_wa, atol=1e-6)
    np.testing.assert_allclose(w_e, want_we, atol=1e-6)
    assert np.array_equal(w_a, w_e) == shared


def test_hidden_width_is_2c_over_r_with_at_least_one_unit():
    def units(channels, reduction):
        layer = AdaptiveFeatureInteraction(reduction=reduction, pooling="max")
        layer.build([(None, 2, 2, channels)] * 2)
        return layer.weights[0].shape

    assert units(8, 4) == (16, 4)
    assert units(8, 16) == (16, 1)
    assert units(64, 16) == (128, 8)


@pytest.mark.parametrize("recalibrate", [False, True], ids=["plain", "recalibrated"])
def test_identical_inputs_give_exactly_twice_the_input(rng, recalibrate):
    layer = make_layer(rng, recalibrate=recalibrate)
    x = rng.normal(size=SHAPE).astype("float32")
    graph_call = tf.function(lambda a, e: layer([a, e], training=True))
    for out in [*layer([x, x], training=True), *graph_call(tf.constant(x), tf.constant(x))]:
        assert np.array_equal(out, 2 * x)


def test_forward_is_the_same_with_recalibration_on_and_off(rng):
    on = make_layer(rng, recalibrate=True)
    off = AdaptiveFeatureInteraction.from_config({**on.get_config(), "recalibrate": False})
    off.build([SHAPE, SHAPE])
    off.set_weights(on.get_weights())
    x_a, x_e = pair(rng)
    for got, want in zip(on([x_a, x_e], training=True), off([x_a, x_e], training=True)):
        assert np.array_equal(got, want)


def gradients_of(layer, x_a, x_e, c_a, c_e, training, in_function=False):
    """d(Σ c_a·x'_A + Σ c_e·x'_E) with respect to x_a, x_e and the trainable weights, through the training path
    (fork + hand-written backward pass) or the inference path (TensorFlow's automatic gradient of the formula)."""

    def run(a, e):
        with tf.GradientTape() as tape:
            tape.watch([a, e])
            out_a, out_e = layer([a, e], training=training)
            loss = tf.reduce_sum(c_a * out_a) + tf.reduce_sum(c_e * out_e)
        return tape.gradient(loss, [a, e] + [w.value for w in layer.trainable_weights]), out_a, out_e

    run = tf.function(run) if in_function else run
    grads, out_a, out_e = run(tf.constant(x_a), tf.constant(x_e))
    return [np.asarray(g) for g in grads], np.asarray(out_a), np.asarray(out_e)


@pytest.mark.parametrize("in_function", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize("pooling, shared, shape", [
    *[(pooling, shared, SHAPE) for pooling in ("both", "max", "avg") for shared in (True, False)],
    ("both", True, (2, 5, 8)), ("both", False, (2, 2, 3, 2, 8)),
])
def test_training_backward_pass_equals_the_automatic_gradient_of_the_formula(rng, pooling, shared, shape,
                                                                              in_function):
    """The training path's hand-written backward pass against TensorFlow's gradient of the plain ops (the
    inference path), with ties in the maxima: small integers make many, and one channel is constant."""
    layer = make_layer(rng, shape, pooling=pooling, shared_directions=shared)
    x_a, x_e = (rng.integers(-2, 3, size=shape).astype("float32") for _ in range(2))
    x_a[..., 0] = 1.0  # every position ties for the maximum of channel 0
    c_a, c_e = (rng.normal(size=shape).astype("float32") for _ in range(2))
    fast, fast_a, fast_e = gradients_of(layer, x_a, x_e, c_a, c_e, training=True, in_function=in_function)
    auto, auto_a, auto_e = gradients_of(layer, x_a, x_e, c_a, c_e, training=False, in_function=in_function)
    rounding = 1e-6 if in_function else 0  # the same forward: bit for bit op by op; Grappler may reorder adds
    for got, want in ((fast_a, auto_a), (fast_e, auto_e)):
        np.testing.assert_allclose(got, want, rtol=rounding, atol=rounding)
    assert len(fast) == len(auto) == 2 + len(layer.trainable_weights)
    for got, want, name in zip(fast, auto, ["x_a", "x_e"] + [w.name for w in layer.trainable_weights]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_training_backward_pass_matches_central_differences_in_float64(rng):
    """An independent check of the hand-written gradient: central differences of the loss in float64."""
    shape = (2, 3, 2, 4)
    layer = AdaptiveFeatureInteraction(reduction=2, shared_directions=False, dtype="float64")
    layer.build([shape, shape])
    layer.set_weights([np.asarray(w) if w.name == "temperature" else rng.normal(scale=0.5, size=w.shape)
                       for w in layer.weights])
    x_a, x_e, c_a, c_e = (rng.normal(size=shape) for _ in range(4))
    grads, _, _ = gradients_of(layer, x_a, x_e, c_a, c_e, training=True)

    def loss(a, e):
        out_a, out_e = layer([a, e], training=False)
        return float(np.sum(c_a * np.asarray(out_a)) + np.sum(c_e * np.asarray(out_e)))

    step = 1e-6
    for which, grad in ((0, grads[0]), (1, grads[1])):
        for index in [(0, 0, 0, 0), (1, 2, 1, 3), (0, 1, 1, 2)]:
            plus, minus = [x_a.copy(), x_e.copy()], [x_a.copy(), x_e.copy()]
            plus[which][index] += step
            minus[which][index] -= step
            numeric = (loss(*plus) - loss(*minus)) / (2 * step)
            assert grad[index] == pytest.approx(numeric, rel=1e-6, abs=1e-8), (which, index)
    kernel = layer.trainable_weights.index(next(w for w in layer.trainable_weights if w.name == "max_kernel"))
    original = np.asarray(layer.trainable_weights[kernel])
    for index in [(0, 0), (5, 1)]:
        values = []
        for sign in (1, -1):
            changed = original.copy()
            changed[index] += sign * step
            layer.trainable_weights[kernel].assign(changed)
            values.append(loss(x_a, x_e))
        layer.trainable_weights[kernel].assign(original)
        assert grads[2 + kernel][index] == pytest.approx((values[0] - values[1]) / (2 * step), rel=1e-6, abs=1e-8)


# --- gradient recalibration ------------------------------------------------------------------------------

def recalibrated_numpy(g_afi, g_sc, temperature):
    """Eq. 8 in float64; ‖g_SC‖ = 0 < ‖g_AFI‖ takes the formula's limit, a factor 0."""
    g_afi, g_sc = g_afi.astype(np.float64), g_sc.astype(np.float64)
    norm_afi, norm_sc = np.linalg.norm(g_afi), np.linalg.norm(g_sc)
    if norm_afi <= norm_sc:
        return g_sc + g_afi
    if norm_sc == 0:  # lim_{s→0+} T / (ln(a/s) + 1) = 0
        return g_sc
    return g_sc + temperature / (np.log(norm_afi / norm_sc) + 1.0) * g_afi


def input_and_weight_gradients(layer, x_a, x_e, c_a, c_e, in_function):
    """d(Σ c_a·x'_A + Σ c_e·x'_E) with respect to (x_a, x_e) and to the layer's trainable weights."""

    def run(a, e):
        with tf.GradientTape() as tape:
            tape.watch([a, e])
            out_a, out_e = layer([a, e], training=True)
            loss = tf.reduce_sum(c_a * out_a) + tf.reduce_sum(c_e * out_e)
        grads = tape.gradient(loss, [a, e] + [w.value for w in layer.trainable_weights])
        return grads[:2], grads[2:]

    run = tf.function(run) if in_function else run
    (g_a, g_e), g_w = run(tf.constant(x_a), tf.constant(x_e))
    return np.asarray(g_a), np.asarray(g_e), [np.asarray(g) for g in g_w]


def twin_without_recalibration(layer):
    twin = AdaptiveFeatureInteraction.from_config({**layer.get_config(), "recalibrate": False})
    twin.build([SHAPE, SHAPE])
    twin.set_weights(layer.get_weights())
    return twin


@pytest.mark.parametrize("in_function", [False, True], ids=["eager", "tf_function"])
@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_recalibration_matches_eq8(rng, temperature, in_function):
    layer = make_layer(rng, recalibrate=True)
    layer.temperature.assign(temperature)
    x_a, x_e = pair(rng)
    # A small cotangent on x'_A makes ‖g_AFI‖ > ‖g_SC‖ for x_A (scaled); x_E keeps a large g_SC (unscaled).
    c_a = (1e-2 * rng.normal(size=SHAPE)).astype("float32")
    c_e = rng.normal(size=SHAPE).astype("float32")
    g_a, g_e, g_w = input_and_weight_gradients(layer, x_a, x_e, c_a, c_e, in_function)
    plain_a, plain_e, plain_w = input_and_weight_gradients(twin_without_recalibration(layer), x_a, x_e, c_a, c_e,
                                                           in_function)
    # Without recalibration the input gradient is g_SC + g_AFI, and g_SC is the cotangent of the output.
    g_afi_a, g_afi_e = plain_a - c_a, plain_e - c_e
    assert np.linalg.norm(g_afi_a) > np.linalg.norm(c_a)
    assert np.linalg.norm(g_afi_e) < np.linalg.norm(c_e)
    want_a = recalibrated_numpy(g_afi_a, c_a, temperature)
    np.testing.assert_allclose(g_a, want_a, atol=1e-5)
    np.testing.assert_allclose(g_e, recalibrated_numpy(g_afi_e, c_e, temperature), atol=1e-5)
    assert np.abs(want_a - plain_a).max() > 1e-2  # the scaled case really differs from the plain gradient
    for got, plain in zip(g_w, plain_w):  # the module's own weights see the plain gradient
        np.testing.assert_allclose(got, plain, atol=1e-6)


@pytest.mark.parametrize("sc_scale", [1e-1, 1e-8, 1e-15, 0.0])
def test_recalibration_factor_tends_to_zero_as_the_shortcut_gradient_vanishes(rng, sc_scale):
    """Eq. 8: f = T / (ln(‖g_AFI‖/‖g_SC‖) + 1) · g_AFI when ‖g_AFI‖ > ‖g_SC‖. As ‖g_SC‖ → 0 the log grows without
    bound, so the factor tends to 0; at ‖g_SC‖ = 0 the layer uses that limit (not a floored ratio, which would
    give T/29 at a floor of 1e-12). Checked against the formula in NumPy, T = 0.7."""
    g_afi = rng.normal(size=SHAPE).astype("float32")
    g_sc = (sc_scale * rng.normal(size=SHAPE)).astype("float32")
    got = np.asarray(recalibrate_gradient(tf.constant(g_afi), tf.constant(g_sc), tf.constant(0.7)))
    want = recalibrated_numpy(g_afi, g_sc, 0.7)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-30)
    factor = np.linalg.norm(got - g_sc) / np.linalg.norm(g_afi)
    ln_ratio = np.log(np.linalg.norm(g_afi) / np.linalg.norm(g_sc)) if sc_scale else np.inf
    assert factor == pytest.approx(0.7 / (ln_ratio + 1.0), rel=1e-5, abs=0.0)
    if sc_scale == 0.0:
        assert np.array_equal(got, np.zeros_like(got))


def test_recalibration_with_zero_norms_stays_finite(rng):
    layer = make_layer(rng, recalibrate=True)
    x_a, x_e = pair(rng)
    zero = np.zeros(SHAPE, "float32")
    c_e = rng.normal(size=SHAPE).astype("float32")
    # x'_A does not reach the loss (no aesthetic label in the batch): ‖g_SC‖ = 0 < ‖g_AFI‖ for x_A, so the factor
    # is the limit 0 and x_A gets g_SC + 0·g_AFI = 0, finite; x_E is recalibrated as usual.
    g_a, g_e, g_w = input_and_weight_gradients(layer, x_a, x_e, zero, c_e, in_function=True)
    plain_a, plain_e, _ = input_and_weight_gradients(twin_without_recalibration(layer), x_a, x_e, zero, c_e,
                                                     in_function=False)
    assert np.isfinite(g_a).all() and np.isfinite(g_e).all() and all(np.isfinite(g).all() for g in g_w)
    assert np.linalg.norm(plain_a) > 0
    np.testing.assert_array_equal(g_a, recalibrated_numpy(plain_a, zero, 1.0))
    np.testing.assert_array_equal(g_a, zero)
    np.testing.assert_allclose(g_e, recalibrated_numpy(plain_e - c_e, c_e, 1.0), atol=1e-5)
    # Nothing reaches the loss: both norms are zero, and the gradient is zero, not NaN.
    g_a, g_e, _ = input_and_weight_gradients(layer, x_a, x_e, zero, zero, in_function=False)
    assert np.array_equal(g_a, zero) and np.array_equal(g_e, zero)


def test_temperature_is_a_fixed_tracked_variable(rng):
    layer = make_layer(rng, recalibrate=True, temperature=0.5)
    assert any(w is layer.temperature for w in layer.non_trainable_weights)
    assert not any(w is layer.temperature for w in layer.trainable_weights)
    assert float(layer.temperature) == 0.5
    x_a, x_e = pair(rng)
    with tf.GradientTape() as tape:
        tape.watch(layer.temperature.value)
        out_a, out_e = layer([x_a, x_e], training=True)
        loss = tf.reduce_sum(out_a * out_e)
    assert tape.gradient(loss, layer.temperature.value) is None


def custom_gradient_ops(layer, training):
    """Ops of the traced call that carry a gradient override (tf.custom_gradient marks its IdentityN so)."""
    spec = tf.TensorSpec(SHAPE, tf.float32)
    graph = tf.function(lambda a, e: layer([a, e], training=training)).get_concrete_function(spec, spec).graph
    found = []
    for op in graph.get_operations():
        try:
            found.append((op.type, op.get_attr("_gradient_op_type")))
        except ValueError:
            continue
    return found


def test_inference_graph_has_no_custom_gradient_op(rng):
    layer = make_layer(rng, recalibrate=True)
    training_ops = custom_gradient_ops(layer, training=True)
    assert any(op_type == "IdentityN" and marker.startswith(b"CustomGradient") for op_type, marker in training_ops)
    assert custom_gradient_ops(layer, training=False) == []
    assert custom_gradient_ops(make_layer(rng, recalibrate=False), training=False) == []


def test_training_stats_record_the_norm_ratio_and_mean_self_weight(rng):
    for recalibrate in (False, True):
        layer = make_layer(rng, recalibrate=recalibrate)
        x_a, x_e = (tf.constant(rng.normal(size=(2, 3, 3, 8)), tf.float32) for _ in range(2))
        cot_a, cot_e = (tf.constant(rng.normal(size=(2, 3, 3, 8)), tf.float32) for _ in range(2))
        with tf.GradientTape() as tape:
            tape.watch([x_a, x_e])
            out_a, out_e = layer([x_a, x_e], training=True)
            loss = tf.reduce_sum(out_a * cot_a) + tf.reduce_sum(out_e * 0.01 * cot_e)
        grad_a, grad_e = tape.gradient(loss, [x_a, x_e])
        off = make_layer(rng, recalibrate=False)
        off.set_weights(layer.get_weights())
        with tf.GradientTape() as tape:
            tape.watch([x_a, x_e])
            out_a, out_e = off([x_a, x_e])
            loss = tf.reduce_sum(out_a * cot_a) + tf.reduce_sum(out_e * 0.01 * cot_e)
        plain_a, plain_e = (g.numpy() for g in tape.gradient(loss, [x_a, x_e]))
        g_sc_a, g_sc_e = cot_a.numpy(), 0.01 * cot_e.numpy()
        expected = [np.linalg.norm(plain_a - g_sc_a) / np.linalg.norm(g_sc_a),
                    np.linalg.norm(plain_e - g_sc_e) / np.linalg.norm(g_sc_e)]
        stats = {k: float(v) for k, v in layer.training_stats().items()}
        np.testing.assert_allclose([stats["grad_ratio_a"], stats["grad_ratio_e"]], expected, rtol=1e-4)
        w_a, w_e = layer.interaction_weights([x_a, x_e])
        np.testing.assert_allclose([stats["w_self_a"], stats["w_self_e"]],
                                   [np.mean(w_a.numpy()), np.mean(w_e.numpy())], rtol=1e-5)
        if not recalibrate:
            np.testing.assert_allclose(grad_a.numpy(), plain_a, atol=1e-6)
            np.testing.assert_allclose(grad_e.numpy(), plain_e, atol=1e-6)


# --- serialization and bad input -------------------------------------------------------------------------

def test_config_round_trip():
    layer = AdaptiveFeatureInteraction(reduction=8, pooling="avg", shared_directions=False, recalibrate=True,
                                       temperature=0.5, name="afi")
    clone = AdaptiveFeatureInteraction.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is AdaptiveFeatureInteraction and restored.get_config() == layer.get_config()


def test_model_saves_and_loads(rng, tmp_path):
    in_a, in_e = keras.Input(SHAPE[1:]), keras.Input(SHAPE[1:])
    afi = AdaptiveFeatureInteraction(reduction=4, pooling="max", shared_directions=False, recalibrate=True,
                                     name="afi")
    model = keras.Model([in_a, in_e], afi([in_a, in_e]))
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.weights])
    afi.temperature.assign(0.25)
    x = pair(rng)
    path = tmp_path / "afi.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for got, want in zip(loaded(x), model(x)):
        assert np.array_equal(got, want)
    loaded_afi = loaded.get_layer("afi")
    assert loaded_afi.get_config() == afi.get_config()
    assert float(loaded_afi.temperature) == 0.25


@pytest.mark.parametrize("inputs, shapes", [
    (lambda x: x, ["(2, 3, 3, 8)"]),
    (lambda x: [x, x, x], ["(2, 3, 3, 8)"]),
    (lambda x: [x, x[..., :4]], ["(2, 3, 3, 8)", "(2, 3, 3, 4)"]),
    (lambda x: [x, x[:, :2]], ["(2, 3, 3, 8)", "(2, 2, 3, 8)"]),
    (lambda x: [x[:, 0, 0], x[:, 0, 0]], ["(2, 8)"]),
], ids=["single", "triple", "channels", "spatial", "rank2"])
def test_bad_inputs_name_the_shapes(rng, inputs, shapes):
    with pytest.raises(ValueError, match="inputs") as info:
        AdaptiveFeatureInteraction()(inputs(tf.constant(rng.normal(size=SHAPE), tf.float32)))
    for shape in shapes:
        assert shape in str(info.value)


def test_built_layer_rejects_a_single_tensor(rng):
    layer = make_layer(rng)
    with pytest.raises(ValueError, match=re.escape("got EagerTensor with shape (2, 3, 3, 8)")):
        layer(tf.zeros(SHAPE))


@pytest.mark.parametrize("kwargs, argument", [
    ({"pooling": "min"}, "pooling"), ({"reduction": 0}, "reduction"), ({"reduction": 2.5}, "reduction"),
    ({"temperature": 0.0}, "temperature"),
])
def test_bad_arguments_are_named(kwargs, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        AdaptiveFeatureInteraction(**kwargs)
