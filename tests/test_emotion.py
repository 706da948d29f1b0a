"""EmotionCircle data, emotion_vector, and CircularEmotionHead, against values computed from the formulas."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo.emotion import (
    CIRCLES,
    EMOTION6,
    MIKELS8,
    EmotionCircle,
    emotion_vector,
    get_circle,
    serialize_circle,
    soft_polarity,
)
from affect_zoo.layers.circle_head import CircularEmotionHead

FI_ORDER = ["amusement", "anger", "awe", "contentment", "disgust", "excitement", "fear", "sadness"]
RING = ["sadness", "fear", "excitement", "awe", "contentment", "amusement", "anger", "disgust"]
POSITIVE = {"amusement", "awe", "contentment", "excitement"}


def reference_vector(dist, angles):
    """Emotion vector of one distribution, written out from the definition (no library code)."""
    ex = sum(d * math.cos(a) for d, a in zip(dist, angles) if a is not None)
    ey = sum(d * math.sin(a) for d, a in zip(dist, angles) if a is not None)
    return math.atan2(ey, ex), math.hypot(ex, ey), (ex, ey)


def test_mikels8_is_fi_order_placed_on_the_ring():
    assert list(MIKELS8.names) == FI_ORDER
    assert MIKELS8.size == 8
    for i, name in enumerate(RING):
        assert MIKELS8.angles[MIKELS8.index(name)] == pytest.approx((2 * i + 1) * math.pi / 8)
    assert MIKELS8.positive == POSITIVE
    for name, angle in zip(MIKELS8.names, MIKELS8.angles):
        assert (math.cos(angle) < 0) == (name in POSITIVE)
    np.testing.assert_allclose(MIKELS8.positive_normal(), [-1.0, 0.0], atol=1e-12)


def test_unit_vectors_and_lookup():
    u = MIKELS8.unit_vectors()
    assert u.shape == (8, 2)
    np.testing.assert_allclose(u[7], [math.cos(math.pi / 8), math.sin(math.pi / 8)])
    assert MIKELS8.index("awe") == 2
    assert MIKELS8.is_positive("awe") and MIKELS8.is_positive(0) and not MIKELS8.is_positive("fear")
    with pytest.raises(ValueError, match="'joy' is not an emotion"):
        MIKELS8.index("joy")
    with pytest.raises(ValueError, match="out of range"):
        MIKELS8.is_positive(8)


def test_emotion6_placement_and_neutral():
    assert list(EMOTION6.names) == ["anger", "disgust", "fear", "joy", "sadness", "surprise", "neutral"]
    expected = {"sadness": 1, "fear": 3, "surprise": 5, "joy": 8, "anger": 13, "disgust": 15}
    for name, eighths in expected.items():
        assert EMOTION6.angles[EMOTION6.index(name)] == pytest.approx(eighths * math.pi / 8)
    assert EMOTION6.angles[6] is None
    np.testing.assert_array_equal(EMOTION6.unit_vectors()[6], [0.0, 0.0])
    assert EMOTION6.positive == {"joy", "surprise"}
    np.testing.assert_array_equal(EMOTION6.negative_mask(), [True, True, True, False, True, False, False])
    polarity, angle, intensity = emotion_vector(np.eye(7), EMOTION6)
    np.testing.assert_array_equal(polarity, [-1, -1, -1, 1, -1, 1, 1])  # neutral: mass tie 0 ≥ 0 → +1
    np.testing.assert_allclose(intensity, [1, 1, 1, 1, 1, 1, 0])
    assert angle[3] == pytest.approx(math.pi) and angle[6] == 0.0
    # neutral mass only shrinks the vector: half joy, half neutral
    _, angle, intensity = emotion_vector([0, 0, 0, 0.5, 0, 0, 0.5], EMOTION6)
    assert float(intensity) == pytest.approx(0.5) and float(angle) == pytest.approx(math.pi)


def test_emotion6_polarity_line_is_max_margin():
    """Flipped negatives lie in [5π/8, 11π/8] with the positives: the bisector π gives n = (-1, 0), margin cos 3π/8."""
    np.testing.assert_allclose(EMOTION6.positive_normal(), [-1.0, 0.0], atol=1e-12)
    side = EMOTION6.unit_vectors() @ EMOTION6.positive_normal()
    np.testing.assert_allclose(side, [-math.cos(3 * math.pi / 8), -math.cos(math.pi / 8), -math.cos(3 * math.pi / 8),
                                      1.0, -math.cos(math.pi / 8), math.cos(3 * math.pi / 8), 0.0], atol=1e-12)
    # a fear-dominant fear/surprise mix stays negative (the positive-sum normal would call it positive)
    assert float(emotion_vector([0, 0, 0.6, 0, 0, 0.4, 0], EMOTION6)[0]) == -1.0


def test_reference_values():
    d = [0.6, 0, 0, 0.3, 0.1, 0, 0, 0]
    polarity, angle, intensity = emotion_vector(d)
    assert float(angle) == pytest.approx(-2.1007, abs=1e-4)
    assert float(intensity) == pytest.approx(0.8198, abs=1e-4)
    assert float(polarity) == 1.0
    ref_angle, ref_r, (ex, _) = reference_vector(d, MIKELS8.angles)
    assert float(angle) == pytest.approx(ref_angle) and float(intensity) == pytest.approx(ref_r)
    assert ex < 0  # positive half-plane of MIKELS8

    polarity, angle, intensity = emotion_vector(np.eye(8)[FI_ORDER.index("sadness")])
    assert float(angle) == pytest.approx(0.3927, abs=1e-4) and float(angle) == pytest.approx(math.pi / 8)
    assert float(intensity) == pytest.approx(1.0) and float(polarity) == -1.0


@pytest.mark.parametrize("make", [np.asarray, lambda x: tf.constant(x, tf.float32)])
def test_uniform_distribution_has_no_direction(make):
    polarity, angle, intensity = emotion_vector(make(np.full((3, 8), 1 / 8)))
    for out in (polarity, angle, intensity):
        assert np.all(np.isfinite(np.asarray(out)))
    np.testing.assert_allclose(np.asarray(intensity), 0, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(angle), 0)
    np.testing.assert_array_equal(np.asarray(polarity), 1)  # mass tie P(pos) − P(neg) = 0 → +1


def test_zero_vector_polarity_falls_back_to_mass():
    # fear + disgust point at π/8 with length √2·w; contentment (9π/8) cancels them exactly.
    w = 1 / (2 + math.sqrt(2))
    d = np.zeros(8)
    d[FI_ORDER.index("fear")] = d[FI_ORDER.index("disgust")] = w
    d[FI_ORDER.index("contentment")] = math.sqrt(2) * w
    polarity, angle, intensity = emotion_vector(d)
    assert float(intensity) == 0.0 and float(angle) == 0.0
    assert float(polarity) == -1.0  # P(pos) = 0.414 < P(neg) = 0.586


def test_batched_numpy_and_tensor_agree(rng):
    d = rng.dirichlet(np.ones(8), size=6)
    p_np, a_np, r_np = emotion_vector(d)
    assert isinstance(a_np, np.ndarray) and a_np.shape == (6,)
    for i, row in enumerate(d):
        ref_angle, ref_r, (ex, _) = reference_vector(row, MIKELS8.angles)
        assert a_np[i] == pytest.approx(ref_angle) and r_np[i] == pytest.approx(ref_r)
        assert p_np[i] == (1.0 if ex < 0 else -1.0)
        single = emotion_vector(row)
        assert np.shape(single[1]) == () and float(single[1]) == pytest.approx(a_np[i])
    p_tf, a_tf, r_tf = emotion_vector(tf.constant(d, tf.float64))
    assert tf.is_tensor(a_tf) and a_tf.dtype == tf.float64
    np.testing.assert_allclose(a_tf.numpy(), a_np)
    np.testing.assert_allclose(r_tf.numpy(), r_np)
    np.testing.assert_array_equal(p_tf.numpy(), p_np)


def test_soft_polarity_is_mass_difference():
    d = np.array([[0.6, 0, 0, 0.3, 0.1, 0, 0, 0], [0, 0.2, 0, 0, 0, 0.1, 0.3, 0.4]])
    np.testing.assert_allclose(soft_polarity(d), [0.8, -0.8])
    np.testing.assert_allclose(soft_polarity([0, 0, 0, 0.5, 0, 0, 0.5], EMOTION6), 0.5)  # neutral counts for neither


@pytest.mark.parametrize(
    "dist, match",
    [
        (np.ones((2, 7)) / 7, r"dist must have shape \(K,\) or \(B, K\) with K = 8.*got shape \(2, 7\)"),
        (np.ones((2, 3, 8)) / 8, r"got shape \(2, 3, 8\)"),
        ([0.5, 0.7, -0.2, 0, 0, 0, 0, 0], r"dist must be probabilities.*minimum -0.2"),
        (tf.ones((4, 5)), r"got shape \(4, 5\)"),
    ],
)
def test_bad_distributions_raise_value_error(dist, match):
    with pytest.raises(ValueError, match=match):
        emotion_vector(dist)


def test_circle_validation():
    with pytest.raises(ValueError, match="angles has length 1 but names has length 2"):
        EmotionCircle(names=["a", "b"], angles=[0.0], positive=["a"], name="bad")
    with pytest.raises(ValueError, match=r"positive names \['c'\] are not in names"):
        EmotionCircle(names=["a", "b"], angles=[0.0, math.pi], positive=["c"], name="bad")
    with pytest.raises(ValueError, match="no line through the centre separates"):
        EmotionCircle(names=["a", "b", "c"], angles=[0.0, 0.1, math.pi], positive=["a", "c"], name="bad")
    with pytest.raises(ValueError, match="no line through the centre separates"):
        angles = [0.0, math.pi, math.pi / 2, -math.pi / 2]  # positives opposite each other: any line cuts them
        EmotionCircle(names=["a", "b", "c", "d"], angles=angles, positive=["a", "b"], name="bad")
    with pytest.raises(ValueError, match="have no angle"):
        EmotionCircle(names=["a", "b", "n"], angles=[0.0, math.pi, None], positive=["n"], name="bad")


def test_circle_config_round_trip():
    custom = EmotionCircle(names=["calm", "tense", "none"], angles=[math.pi, 0.0, None], positive=["calm"], name="two")
    assert serialize_circle(MIKELS8) == "mikels8" and get_circle("emotion6") is EMOTION6
    config = serialize_circle(custom)
    assert config == {"name": "two", "names": ["calm", "tense", "none"], "angles": [math.pi, 0.0, None],
                      "positive": ["calm"]}
    assert get_circle(config) == custom
    # a circle that only borrows a built-in name is stored by its fields
    impostor = EmotionCircle(names=custom.names, angles=custom.angles, positive=custom.positive, name="mikels8")
    assert serialize_circle(impostor) == impostor.to_config()
    assert set(CIRCLES) == {"mikels8", "emotion6"}
    with pytest.raises(ValueError, match="known circles are"):
        get_circle("plutchik")


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("circle", ["mikels8", EMOTION6])
def test_head_outputs_match_numpy(circle, rng):
    head = CircularEmotionHead(circle=circle)
    x = rng.normal(size=(5, 3)).astype("float32") * 3
    out = head(x)
    assert set(out) == {"distribution", "polarity", "angle", "intensity"}
    kernel, bias = (w.numpy() for w in head.logits.weights)
    dist = _softmax(x.astype(np.float64) @ kernel + bias)
    np.testing.assert_allclose(out["distribution"].numpy(), dist, rtol=1e-5, atol=1e-6)
    for i, row in enumerate(dist):
        ref_angle, ref_r, (ex, _) = reference_vector(row, get_circle(circle).angles)
        assert out["angle"].numpy()[i] == pytest.approx(ref_angle, abs=1e-5)
        assert out["intensity"].numpy()[i] == pytest.approx(ref_r, abs=1e-5)
        assert out["polarity"].numpy()[i] == (1.0 if ex < 0 else -1.0)  # both circles: positive half is x < 0
    for key, value in zip(("polarity", "angle", "intensity"), emotion_vector(dist, circle)):
        np.testing.assert_allclose(out[key].numpy(), value, atol=1e-5)
    assert out["polarity"].shape == (5,)


def test_head_rejects_feature_maps():
    with pytest.raises(ValueError, match=r"features of shape \(B, F\).*got shape \(None, 4, 4, 3\)"):
        CircularEmotionHead()(keras.Input((4, 4, 3)))


def test_head_survives_keras_save(tmp_path, rng):
    custom = EmotionCircle(names=["calm", "tense", "none"], angles=[math.pi, 0.0, None], positive=["calm"], name="two")
    inputs = keras.Input((4,))
    features = keras.layers.Dense(6, activation="relu")(inputs)
    outputs = {
        "builtin": CircularEmotionHead("emotion6", name="e6")(features)["distribution"],
        **CircularEmotionHead(custom, name="custom")(features),
    }
    model = keras.Model(inputs, outputs)
    path = tmp_path / "head.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_layer("custom").circle == custom
    assert loaded.get_layer("e6").get_config()["circle"] == "emotion6"
    x = rng.normal(size=(3, 4)).astype("float32")
    before, after = model.predict(x, verbose=0), loaded.predict(x, verbose=0)
    for key in ("builtin", "distribution", "polarity", "angle", "intensity"):
        np.testing.assert_array_equal(before[key], after[key])
