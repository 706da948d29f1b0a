"""LabelAttention, SemanticDependency and AlphaFusion: the formulas in NumPy, constraints, config round trips."""
import keras
import numpy as np
import pytest

from affect_zoo.layers.attention import AlphaFusion, LabelAttention, SemanticDependency, spatial_softmax
from affect_zoo.layers.se import SqueezeExcitation


def np_softmax_positions(z):
    b, h, w, c = z.shape
    flat = z.reshape(b, h * w, c)
    e = np.exp(flat - flat.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).reshape(z.shape)


def test_spatial_softmax_is_per_channel_over_positions(rng):
    z = rng.normal(size=(2, 3, 4, 5)).astype("float32")
    a = keras.ops.convert_to_numpy(spatial_softmax(z))
    np.testing.assert_allclose(a, np_softmax_positions(z), rtol=1e-5)
    np.testing.assert_allclose(a.sum(axis=(1, 2)), 1.0, rtol=1e-5)


def test_label_attention_default_is_the_papers_maps(rng):
    """Xue et al. 2019, eq. 8: M = F_cc(A, θ_cc), A ∈ R^{14×14×C}: by default the layer passes the attention maps
    A (softmax over positions per label) on unchanged, with no weights and no extra output."""
    z = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    layer = LabelAttention()
    out = {k: keras.ops.convert_to_numpy(v) for k, v in layer(z).items()}
    assert sorted(out) == ["attended", "attention"] and not layer.weights
    np.testing.assert_allclose(out["attended"], np_softmax_positions(z), rtol=1e-5)


def test_label_attention_confidence_variant_weights_the_confidence_maps(rng):
    z = rng.normal(size=(2, 3, 3, 4)).astype("float32")
    x = rng.normal(size=(2, 3, 3, 6)).astype("float32")
    layer = LabelAttention(mode="confidence")
    out = {k: keras.ops.convert_to_numpy(v) for k, v in layer([z, x]).items()}
    kernel, bias = layer.confidence.get_weights()
    s = x @ kernel[0, 0] + bias
    a = np_softmax_positions(z)
    np.testing.assert_allclose(out["attention"], a, rtol=1e-5)
    np.testing.assert_allclose(out["attended"], a / (1 + np.exp(-s)), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(out["scores"], (a * s).sum(axis=(1, 2)), rtol=1e-4, atol=1e-6)
    rescaled = LabelAttention(rescale=True, mode="maps")(z)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rescaled["attended"]), a * 9, rtol=1e-5)


def test_label_attention_rejects_bad_inputs(rng):
    with pytest.raises(ValueError, match=r"takes \[scores, features\]"):
        LabelAttention(mode="confidence")(rng.normal(size=(1, 2, 2, 3)).astype("float32"))
    with pytest.raises(ValueError, match=r"same H, W"):
        LabelAttention(mode="confidence")([np.zeros((1, 2, 2, 3), "float32"), np.zeros((1, 3, 3, 4), "float32")])
    with pytest.raises(ValueError, match=r"mode must be one of"):
        LabelAttention(mode="soft")


def test_semantic_dependency_structure(rng):
    layer = SemanticDependency(name="semantic_dependency")
    y = layer(rng.normal(size=(2, 3, 3, 20)).astype("float32"))
    assert y.shape == (2, 3, 3, 1024)
    assert [c.filters for c in layer.convs] == [256, 256, 512, 1024]
    assert all(c.kernel.shape[:2] == (1, 1) for c in layer.convs)
    ses = [layer.se_in, *layer.ses]
    assert all(isinstance(s, SqueezeExcitation) for s in ses) and ses[0].squeeze.units == 1  # 20 // 16
    assert len(layer.trainable_weights) == 4 * 2 + 5 * 4
    assert SemanticDependency(input_se=False, filters=(8,))(np.ones((1, 2, 2, 3), "float32")).shape == (1, 2, 2, 8)


def test_alpha_fusion_formula_and_bounds():
    a, b = np.array([[2.0, -1.0]], "float32"), np.array([[0.0, 3.0]], "float32")
    for parametrization in ("clip", "sigmoid"):
        layer = AlphaFusion(parametrization=parametrization)
        out = keras.ops.convert_to_numpy(layer([a, b]))
        assert float(layer.alpha) == pytest.approx(0.48, rel=1e-6)
        np.testing.assert_allclose(out, 0.48 * a + 0.52 * b, rtol=1e-5)
    layer = AlphaFusion()
    layer([a, b])
    optimizer = keras.optimizers.SGD(learning_rate=10.0)
    for sign in (-1.0, 1.0):  # a huge step each way: the constraint projects α back into [0, 1]
        optimizer.apply([keras.ops.convert_to_tensor(sign)], [layer.alpha_variable])
        assert float(layer.alpha) == (0.0 if sign > 0 else 1.0)
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\]"):
        AlphaFusion(alpha=1.5)


@pytest.mark.parametrize("make, inputs", [
    (lambda: LabelAttention(mode="confidence", rescale=True, name="att"),
     lambda r: [r.normal(size=(1, 2, 2, 3)), r.normal(size=(1, 2, 2, 5))]),
    (lambda: SemanticDependency((4, 6), se_ratio=2, name="sem"), lambda r: r.normal(size=(1, 2, 2, 3))),
    (lambda: AlphaFusion(0.3, parametrization="sigmoid", name="fus"),
     lambda r: [r.normal(size=(1, 3)), r.normal(size=(1, 3))]),
])
def test_config_round_trip_gives_the_same_layer(make, inputs, rng):
    layer = make()
    x = keras.tree.map_structure(lambda v: v.astype("float32"), inputs(rng))
    before = layer(x)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    clone(x)
    clone.set_weights(layer.get_weights())
    keras.tree.map_structure(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-6), before, clone(x))
