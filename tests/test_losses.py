"""KL, progressive circular and circular emotion losses, against NumPy re-computations of the formulas."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo import metrics
from affect_zoo.emotion import EMOTION6, MIKELS8, EmotionCircle
from affect_zoo.layers.circle_head import CircularEmotionHead
from affect_zoo.losses import CircularEmotionLoss, KLDivergenceLoss, ProgressiveCircularLoss

EPS = 1e-7


def np_kl(t, p):
    p = np.clip(p, EPS, 1)
    return np.array([sum(ti * math.log(ti / pi) for ti, pi in zip(tr, pr) if ti > 0) for tr, pr in zip(t, p)])


def np_progressive(t, p, circle):
    """Per-sample r·((p − p̂)² + Δθ²) written out from the definition."""
    angles = circle.angles
    pos = [n in circle.positive for n in circle.names]
    neg = [a is not None and not q for a, q in zip(angles, pos)]
    out = []
    for tr, pr in zip(t, p):
        ex = sum(d * math.cos(a) for d, a in zip(tr, angles) if a is not None)
        ey = sum(d * math.sin(a) for d, a in zip(tr, angles) if a is not None)
        r, theta = math.hypot(ex, ey), math.atan2(ey, ex)
        polarity = 1.0 if ex < 0 else -1.0  # both built-in circles put the positives in the half-plane x < 0
        hx = sum(d * math.cos(a) for d, a in zip(pr, angles) if a is not None)
        hy = sum(d * math.sin(a) for d, a in zip(pr, angles) if a is not None)
        theta_hat = math.atan2(hy, hx)
        polarity_hat = sum(d for d, q in zip(pr, pos) if q) - sum(d for d, q in zip(pr, neg) if q)
        delta = (theta - theta_hat + math.pi) % (2 * math.pi) - math.pi
        out.append(r * ((polarity - polarity_hat) ** 2 + delta**2))
    return np.array(out)


def test_kl_loss_with_zeros():
    t = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], np.float32)
    p = np.array([[0.25, 0.5, 0.25], [0.0, 0.5, 0.5]], np.float32)
    # by hand: 0.5·ln 2 and ln(1/1e-7) (the clip), mean over the batch
    expected = (0.5 * math.log(2) + math.log(1 / EPS)) / 2
    assert float(KLDivergenceLoss()(t, p)) == pytest.approx(expected, rel=1e-5)
    assert float(KLDivergenceLoss()(t, p)) == pytest.approx(np_kl(t, p).mean(), rel=1e-5)


@pytest.mark.parametrize("circle", [MIKELS8, EMOTION6])
def test_progressive_loss_matches_numpy(circle, rng):
    t = rng.dirichlet(np.ones(circle.size) * 0.5, size=8)
    p = rng.dirichlet(np.ones(circle.size), size=8)
    value = ProgressiveCircularLoss(circle)(t, p)
    assert float(value) == pytest.approx(np_progressive(t, p, circle).mean(), rel=1e-5)


def test_wrapped_angle_difference():
    # awe (7π/8) and contentment (9π/8) mixed so that θ = 3.0; the swapped mix has θ̂ = −3.0
    k = math.tan(math.pi - 3.0) / math.tan(math.pi / 8)
    a, c = (1 + k) / 2, (1 - k) / 2
    t = np.zeros((1, 8))
    p = np.zeros((1, 8))
    t[0, MIKELS8.index("awe")], t[0, MIKELS8.index("contentment")] = a, c
    p[0, MIKELS8.index("awe")], p[0, MIKELS8.index("contentment")] = c, a
    r = math.hypot((a + c) * math.cos(math.pi / 8), (a - c) * math.sin(math.pi / 8))
    assert 2 * math.pi - 6 == pytest.approx(0.283, abs=1e-3)
    # both all-positive: polarity term (1 − 1)² = 0, only r·Δθ² with Δθ = 2π − 6 (not 6) remains
    expected = r * (2 * math.pi - 6) ** 2
    assert float(ProgressiveCircularLoss()(t, p)) == pytest.approx(expected, rel=1e-5)
    assert float(ProgressiveCircularLoss()(t, p)) == pytest.approx(np_progressive(t, p, MIKELS8)[0], rel=1e-5)


def test_circular_loss_mixes_kl_and_progressive(rng):
    t = rng.dirichlet(np.ones(8), size=4).astype("float32")
    p = rng.dirichlet(np.ones(8), size=4).astype("float32")
    kl, pc = np_kl(t, p).mean(), np_progressive(t, p, MIKELS8).mean()
    assert float(CircularEmotionLoss()(t, p)) == pytest.approx(0.3 * kl + 0.7 * pc, rel=1e-5)
    assert float(CircularEmotionLoss(mu=0.0)(t, p)) == pytest.approx(float(KLDivergenceLoss()(t, p)), rel=1e-6)
    assert float(CircularEmotionLoss(mu=1.0)(t, p)) == pytest.approx(float(ProgressiveCircularLoss()(t, p)), rel=1e-6)


@pytest.mark.parametrize("uniform", [False, True])
def test_gradients_reach_logits_through_softmax(uniform, rng):
    t = tf.constant(rng.dirichlet(np.ones(8), size=4), tf.float32)
    logits = tf.Variable(np.zeros((4, 8)) if uniform else rng.normal(size=(4, 8)), dtype=tf.float32)
    for loss in (CircularEmotionLoss(), ProgressiveCircularLoss()):
        with tf.GradientTape() as tape:
            value = loss(t, tf.nn.softmax(logits))
        grad = tape.gradient(value, logits).numpy()
        assert np.all(np.isfinite(grad)), f"{loss.name}: {grad}"
        assert np.abs(grad).max() > 1e-4
        if uniform:
            # the predicted vector is ~1e-8 long: an unguarded atan2 would give gradients ~1e7 (NaN at exactly 0)
            assert np.abs(grad).max() < 10


def test_bad_shapes_and_mu():
    with pytest.raises(ValueError, match=r"y_true must have shape \(B, 8\); got y_true shape \(2, 7\)"):
        CircularEmotionLoss()(np.ones((2, 7)) / 7, np.ones((2, 8)) / 8)
    with pytest.raises(ValueError, match=r"y_pred must have shape \(B, 7\)"):
        ProgressiveCircularLoss("emotion6")(np.ones((2, 7)) / 7, np.ones((2, 8)) / 8)
    with pytest.raises(ValueError, match=r"y_true must have shape \(B, 3\)"):
        KLDivergenceLoss()(np.ones((2, 4)) / 4, np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match="mu must be in"):
        CircularEmotionLoss(mu=1.5)


def test_loss_configs_round_trip():
    custom = EmotionCircle(names=["calm", "tense"], angles=[math.pi, 0.0], positive=["calm"], name="two")
    for loss in (KLDivergenceLoss(epsilon=1e-5), ProgressiveCircularLoss(custom), CircularEmotionLoss(0.4, "emotion6")):
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
    assert ProgressiveCircularLoss(custom).get_config()["circle"] == custom.to_config()


def test_compiled_model_survives_keras_save(tmp_path, rng):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, CircularEmotionHead("emotion6")(inputs)["distribution"])
    model.compile("sgd", loss=CircularEmotionLoss(mu=0.5, circle="emotion6"),
                  metrics=metrics.distribution_metric_objects())
    x = rng.normal(size=(6, 4)).astype("float32")
    y = rng.dirichlet(np.ones(7), size=6).astype("float32")
    path = tmp_path / "compiled.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.loss.get_config() == model.loss.get_config()
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    before = model.evaluate(x, y, verbose=0, return_dict=True)
    after = loaded.evaluate(x, y, verbose=0, return_dict=True)
    assert set(before) == {"loss", *metrics.MEASURES}
    for name, value in before.items():
        assert after[name] == pytest.approx(value, rel=1e-6)
