"""CrossStitch, NDDR and SqueezeExcitation against NumPy transcriptions of their formulas, their inits,
serialization and bad inputs."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo.layers.mixing import NDDR, CrossStitch
from affect_zoo.layers.se import SqueezeExcitation

SHAPE = (2, 3, 3, 8)
CHANNELS = SHAPE[-1]


def pair(rng, shape=SHAPE):
    return [rng.normal(size=shape).astype("float32") for _ in range(2)]


def randomize(layer, rng):
    """Random weights everywhere (variances kept positive), so that no term of a formula hides behind an init."""
    layer.set_weights([rng.uniform(0.5, 1.5, size=w.shape) if "variance" in w.name else rng.normal(size=w.shape)
                       for w in layer.weights])


# --- CrossStitch -----------------------------------------------------------------------------------------

def test_cross_stitch_init_is_point_nine_on_the_diagonal():
    layer = CrossStitch()
    layer.build([SHAPE, SHAPE])
    want = {"alpha_aa": 0.9, "alpha_ae": 0.1, "alpha_ea": 0.1, "alpha_ee": 0.9}
    assert {w.name: w.shape for w in layer.weights} == {name: (CHANNELS,) for name in want}
    for w in layer.weights:
        np.testing.assert_allclose(w, np.full(CHANNELS, want[w.name]), rtol=1e-7)


@pytest.mark.parametrize("shape", [SHAPE, (2, CHANNELS)], ids=["rank4", "rank2"])
def test_cross_stitch_matches_numpy(rng, shape):
    layer = CrossStitch()
    layer.build([shape, shape])
    randomize(layer, rng)
    alpha = {w.name: np.asarray(w, np.float64) for w in layer.weights}
    x_a, x_e = pair(rng, shape)
    out_a, out_e = layer([x_a, x_e])
    np.testing.assert_allclose(out_a, alpha["alpha_aa"] * x_a + alpha["alpha_ae"] * x_e, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_e, alpha["alpha_ea"] * x_a + alpha["alpha_ee"] * x_e, rtol=1e-5, atol=1e-6)


# --- NDDR ------------------------------------------------------------------------------------------------

def test_nddr_init_is_diagonal_and_near_identity(rng):
    layer = NDDR(bn_epsilon=1e-3)
    x_a, x_e = pair(rng)
    out_a, out_e = layer([x_a, x_e], training=False)
    eye = np.eye(CHANNELS)
    np.testing.assert_array_equal(layer.kernel_a, np.concatenate([0.9 * eye, 0.1 * eye]).astype("float32"))
    np.testing.assert_array_equal(layer.kernel_e, np.concatenate([0.1 * eye, 0.9 * eye]).astype("float32"))
    scale = 1 / np.sqrt(1 + 1e-3)  # BN at init, inference mode: moving mean 0, variance 1, γ = 1, β = 0
    np.testing.assert_allclose(out_a, np.maximum(0.9 * x_a + 0.1 * x_e, 0) * scale, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out_e, np.maximum(0.1 * x_a + 0.9 * x_e, 0) * scale, rtol=1e-5, atol=1e-6)
    assert not any("bias" in w.name for w in layer.weights)


@pytest.mark.parametrize("training", [False, True], ids=["moving_statistics", "batch_statistics"])
def test_nddr_matches_numpy(rng, training):
    layer = NDDR(bn_epsilon=1e-3)
    layer.build([SHAPE, SHAPE])
    randomize(layer, rng)
    weights = {w.path.split("/", 1)[1]: np.asarray(w, np.float64) for w in layer.weights}
    x_a, x_e = pair(rng)
    both = np.concatenate([x_a, x_e], axis=-1).astype(np.float64)
    outputs = layer([x_a, x_e], training=training)
    for branch, out in zip("ae", outputs):
        z = both @ weights[f"kernel_{branch}"]
        bn = {name: weights[f"bn_{branch}/{name}"] for name in ("gamma", "beta", "moving_mean", "moving_variance")}
        mean, var = ((z.mean(axis=(0, 1, 2)), z.var(axis=(0, 1, 2))) if training
                     else (bn["moving_mean"], bn["moving_variance"]))
        want = np.maximum(bn["gamma"] * (z - mean) / np.sqrt(var + 1e-3) + bn["beta"], 0)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


def test_linear_nddr_is_the_diagonal_mixing_alone_and_the_identity_on_equal_branches(rng):
    """batch_norm=False, activation="linear": z = [x_a, x_e] @ K, checked in NumPy after random kernels, and
    at init 0.9·x + 0.1·x = x when both branches carry the same features (one pretrained init)."""
    layer = NDDR(batch_norm=False, activation="linear")
    x_a, x_e = pair(rng)
    out_a, _ = layer([x_a, x_a])
    np.testing.assert_allclose(out_a, x_a, rtol=1e-5, atol=1e-6)
    assert [w.name for w in layer.weights] == ["kernel_a", "kernel_e"]
    randomize(layer, rng)
    both = np.concatenate([x_a, x_e], axis=-1).astype(np.float64)
    for out, kernel in zip(layer([x_a, x_e]), (layer.kernel_a, layer.kernel_e)):
        np.testing.assert_allclose(out, both @ np.asarray(kernel, np.float64), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="activation must be one of"):
        NDDR(activation="tanh")


def test_nddr_passes_its_batch_norm_options():
    layer = NDDR(bn_momentum=0.9, bn_epsilon=1e-5, synchronized_bn=True)
    for bn in (layer.bn_a, layer.bn_e):
        assert (bn.momentum, bn.epsilon, bn.synchronized) == (0.9, 1e-5, True)
    assert not NDDR().bn_a.synchronized


# --- SqueezeExcitation -----------------------------------------------------------------------------------

@pytest.mark.parametrize("ratio, units", [(2, 4), (16, 1)])
def test_squeeze_excitation_matches_numpy(rng, ratio, units):
    layer = SqueezeExcitation(ratio=ratio)
    layer.build(SHAPE)
    randomize(layer, rng)
    assert layer.squeeze.units == units
    x = rng.normal(size=SHAPE).astype("float32")
    w1, b1, w2, b2 = (np.asarray(w, np.float64) for w in (layer.squeeze.kernel, layer.squeeze.bias,
                                                           layer.excite.kernel, layer.excite.bias))
    hidden = np.maximum(x.mean(axis=(1, 2)) @ w1 + b1, 0)
    gate = 1 / (1 + np.exp(-(hidden @ w2 + b2)))
    np.testing.assert_allclose(layer(x), x * gate[:, None, None, :], rtol=1e-5, atol=1e-6)


# --- serialization and bad input -------------------------------------------------------------------------

@pytest.mark.parametrize("layer", [
    CrossStitch(self_weight=0.8, other_weight=0.2, name="cs"),
    NDDR(self_weight=0.7, other_weight=0.3, bn_momentum=0.9, bn_epsilon=1e-5, synchronized_bn=True, name="nddr"),
    NDDR(batch_norm=False, activation="linear", name="nddr_linear"),
    SqueezeExcitation(ratio=4, name="se"),
], ids=["cross_stitch", "nddr", "nddr_linear", "se"])
def test_config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is type(layer) and restored.get_config() == layer.get_config()


def test_model_with_all_three_saves_and_loads(rng, tmp_path):
    in_a, in_e = keras.Input(SHAPE[1:]), keras.Input(SHAPE[1:])
    x_a, x_e = CrossStitch(name="cs")([in_a, in_e])
    x_a, x_e = NDDR(name="nddr")([x_a, x_e])
    model = keras.Model([in_a, in_e], [SqueezeExcitation(ratio=4, name="se_a")(x_a), x_e])
    randomize(model, rng)
    x = pair(rng)
    path = tmp_path / "mixing.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for got, want in zip(loaded(x), model(x)):
        assert np.array_equal(got, want)
    for name in ("cs", "nddr", "se_a"):
        assert loaded.get_layer(name).get_config() == model.get_layer(name).get_config()


@pytest.mark.parametrize("layer_type", [CrossStitch, NDDR])
@pytest.mark.parametrize("inputs, shapes", [
    (lambda x: x, ["(2, 3, 3, 8)"]),
    (lambda x: [x, x, x], ["(2, 3, 3, 8)"]),
    (lambda x: [x, x[..., :4]], ["(2, 3, 3, 8)", "(2, 3, 3, 4)"]),
    (lambda x: [x, x[:, :2]], ["(2, 3, 3, 8)", "(2, 2, 3, 8)"]),
], ids=["single", "triple", "channels", "spatial"])
def test_pair_layers_name_bad_shapes(rng, layer_type, inputs, shapes):
    with pytest.raises(ValueError, match="inputs") as info:
        layer_type()(inputs(tf.constant(rng.normal(size=SHAPE), tf.float32)))
    for shape in shapes:
        assert shape in str(info.value)


@pytest.mark.parametrize("inputs, shape", [
    (lambda x: [x, x], "(2, 3, 3, 8)"), (lambda x: x[:, 0, 0], "(2, 8)")], ids=["pair", "rank2"])
def test_squeeze_excitation_names_bad_shapes(rng, inputs, shape):
    with pytest.raises(ValueError, match="inputs") as info:
        SqueezeExcitation()(inputs(tf.constant(rng.normal(size=SHAPE), tf.float32)))
    assert shape in str(info.value)


@pytest.mark.parametrize("make, argument", [
    (lambda: SqueezeExcitation(ratio=0), "ratio"), (lambda: SqueezeExcitation(ratio=1.5), "ratio"),
    (lambda: CrossStitch(self_weight="0.9"), "self_weight"), (lambda: NDDR(other_weight=None), "other_weight"),
])
def test_bad_arguments_are_named(make, argument):
    with pytest.raises(ValueError, match=f"`{argument}`"):
        make()
