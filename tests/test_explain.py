"""Grad-CAM: where the explained feature map is taken, the formula, and the map following the object."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo import explain
from affect_zoo.models import multitask
from affect_zoo.tasks import Task
from affect_zoo.training import MultiTaskModel

SIZE = 32
VA = Task("va", "regression", 2, branch=0, labels=("valence", "arousal"), target_range=(1, 9))
EMOTION = Task("emotion", "distribution", 7, branch=1, circle="emotion6")


def bright_square_detector():
    """Branch e: a 1x1 conv that reads the red channel (a fixed, positive detector), pooled into a 2-way softmax
    whose class 1 grows with the detector's response. Named like the zoo's networks (``e_pool``)."""
    images = keras.Input((SIZE, SIZE, 3), name="images")
    detector = keras.layers.Conv2D(1, 1, use_bias=False, name="e_detector")
    maps = detector(images)
    pooled = keras.layers.GlobalAveragePooling2D(name="e_pool")(maps)
    head = keras.layers.Dense(2, activation="softmax", name="head")
    out = head(pooled)
    network = keras.Model(images, {"object": out})
    detector.set_weights([np.array([1.0, 0.0, 0.0], "float32").reshape(1, 1, 3, 1) / 255.0])
    head.set_weights([np.array([[-1.0, 1.0]], "float32") * 20, np.zeros(2, "float32")])
    return network, Task("object", "classification", 2, branch=1)


def square_at(row, col, size=6):
    image = np.full((SIZE, SIZE, 3), 20.0, "float32")
    image[row:row + size, col:col + size, 0] = 255.0
    return image


def test_the_peak_follows_the_object():
    network, task = bright_square_detector()
    images = np.stack([square_at(3, 4), square_at(22, 20)])
    result = explain.gradcam(network, images, task, output=1)
    assert result["heatmaps"].shape == (2, SIZE, SIZE) and result["layer"] == "e_pool input"
    for heat, (row, col) in zip(result["heatmaps"], [(3, 4), (22, 20)]):
        peak = np.unravel_index(np.argmax(heat), heat.shape)
        assert row <= peak[0] < row + 6 and col <= peak[1] < col + 6
        assert heat.max() == pytest.approx(1.0) and heat.min() >= 0
    assert result["output"] == ["1", "1"]


def test_matches_the_formula_in_numpy():
    """L = ReLU(sum_c alpha_c A_c), alpha_c = mean_ij dy/dA_ijc (Selvaraju et al., eq. 1-2), at the feature
    map's own resolution (input = feature-map size here, so no resize), divided by its max."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = keras.Input((8, 8, 3), name="images")
    conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="e_conv")
    maps = conv(images)
    pooled = keras.layers.GlobalAveragePooling2D(name="e_pool")(maps)
    dense = keras.layers.Dense(3, name="logits")
    network = keras.Model(images, {"t": keras.layers.Softmax()(dense(pooled))})
    x = rng.uniform(0, 2, (2, 8, 8, 3)).astype("float32")  # small inputs: a saturated softmax has no gradient
    result = explain.gradcam(network, x, Task("t", "classification", 3, branch=1))  # the predicted class

    a = keras.Model(images, maps)(x).numpy()  # (N, 8, 8, 4)
    logits = a.mean(axis=(1, 2)) @ dense.kernel.numpy() + dense.bias.numpy()
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    # dp_k/dpooled = p_k * (W[:, k] - sum_j p_j W[:, j]) for the predicted k; dpooled/dA_ijc = 1 / 64
    w = dense.kernel.numpy()
    k = np.argmax(p, axis=-1)
    assert result["output"] == [str(i) for i in k]
    dpooled = p[np.arange(2), k][:, None] * (w[:, k].T - p @ w.T)
    alpha = dpooled / 64.0
    cam = np.maximum((a * alpha[:, None, None, :]).sum(-1), 0)
    cam /= np.maximum(cam.max(axis=(1, 2), keepdims=True), 1e-30)
    np.testing.assert_allclose(result["heatmaps"], cam, atol=1e-5)
    np.testing.assert_allclose(result["score"], p[np.arange(2), k], rtol=1e-5)
    assert cam.max() == pytest.approx(1.0)  # there is positive evidence to compare


def test_afi_networks_are_explained_at_the_last_afi_module_per_branch():
    keras.utils.set_random_seed(0)
    network = multitask.build("afi", "vgg16", [VA, EMOTION], (SIZE, SIZE, 3), depth=2)
    model = MultiTaskModel(network, tasks=[VA, EMOTION])
    images = np.random.default_rng(1).uniform(0, 255, (3, 48, 40, 3)).astype("float32")  # resized inside
    first = explain.explain(model, images)
    assert set(first) == {"va", "emotion"}
    assert first["va"]["layer"] == "interaction_2[0]" and first["emotion"]["layer"] == "interaction_2[1]"
    for result in first.values():
        assert result["heatmaps"].shape == (3, SIZE, SIZE)
        assert np.isfinite(result["heatmaps"]).all() and 0 <= result["heatmaps"].min() <= result["heatmaps"].max() <= 1
    assert first["va"]["output"] == ["valence"] * 3
    again = explain.explain(model, images)
    for name in first:
        np.testing.assert_array_equal(first[name]["heatmaps"], again[name]["heatmaps"])  # deterministic
    arousal = explain.explain(model, images, task="va", output="arousal")
    assert arousal["va"]["output"] == ["arousal"] * 3


def test_baselines_use_the_branch_feature_map_and_bad_requests_are_named():
    keras.utils.set_random_seed(0)
    network = multitask.build("hard_share", "vgg16", [VA, EMOTION], (SIZE, SIZE, 3), depth=1)
    model = MultiTaskModel(network, tasks=[VA, EMOTION])
    images = np.zeros((1, SIZE, SIZE, 3), "float32")
    assert explain.explain(model, images, task="emotion")["emotion"]["layer"] == "shared_pool input"
    with pytest.raises(ValueError, match="no task 'mood'"):
        explain.explain(model, images, task="mood")
    with pytest.raises(ValueError, match="no output 'joyful'"):
        explain.explain(model, images, task="va", output="joyful")
    with pytest.raises(ValueError, match="4-D"):
        explain.gradcam(network, images, EMOTION, layer="shared_pool")


def test_overlay_colours_the_map_over_the_image():
    image = np.full((4, 4, 3), 100.0)
    heat = np.zeros((4, 4))
    heat[1, 2] = 1.0
    picture = explain.overlay(image, heat, alpha=0.5)
    assert picture.dtype == np.uint8 and picture.shape == (4, 4, 3)
    from matplotlib import colormaps
    hot, cold = (np.array(colormaps["jet"](v)[:3]) * 255 for v in (1.0, 0.0))
    np.testing.assert_allclose(picture[1, 2], np.round(50 + 0.5 * hot), atol=1)
    np.testing.assert_allclose(picture[0, 0], np.round(50 + 0.5 * cold), atol=1)


def test_trainer_logs_gradcam_images_to_tensorboard(tmp_path):
    keras.utils.set_random_seed(0)
    network = multitask.build("afi", "vgg16", [VA, EMOTION], (SIZE, SIZE, 3), depth=1)
    model = MultiTaskModel(network, tasks=[VA, EMOTION])
    model.compile(optimizer="adam")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (4, SIZE, SIZE, 3)).astype("float32")
    y = {"va": rng.uniform(1, 9, (4, 2)).astype("float32"), "emotion": rng.dirichlet(np.ones(7), 4).astype("float32")}
    model.fit(x, y, epochs=2, verbose=0, callbacks=[explain.GradCamLogger(x[:2], tmp_path / "logs")])
    tags = {}
    for path in (tmp_path / "logs").glob("events.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert tags == {"gradcam/va": [1, 2], "gradcam/emotion": [1, 2]}


def test_overlays_resize_each_image_and_colour_its_own_map():
    keras.utils.set_random_seed(0)
    network = multitask.build("afi", "vgg16", [VA, EMOTION], (SIZE, SIZE, 3), depth=1)
    model = MultiTaskModel(network, tasks=[VA, EMOTION])
    rng = np.random.default_rng(2)
    images = [rng.uniform(0, 255, (40, 50, 3)), rng.uniform(0, 255, (20, 33, 3))]  # sizes differ
    result = explain.overlays(model, images, task="emotion")
    assert set(result) == {"emotion"} and result["emotion"]["overlays"].shape == (2, SIZE, SIZE, 3)
    for i, image in enumerate(images):
        resized = tf.image.resize(image[None], (SIZE, SIZE), antialias=True)[0].numpy().clip(0, 255)
        alone = explain.explain(model, resized, task="emotion")["emotion"]["heatmaps"][0]
        np.testing.assert_allclose(result["emotion"]["heatmaps"][i], alone, atol=1e-5)
        np.testing.assert_array_equal(result["emotion"]["overlays"][i], explain.overlay(resized, alone))
