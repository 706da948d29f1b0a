"""Registry, recipes, cards, verified weights (local and downloaded over loopback HTTP), load and predict."""
import functools
import hashlib
import http.server
import io
import json
import threading

import numpy as np
import pytest
import tensorflow as tf
import yaml
from PIL import Image

import affect_zoo
from affect_zoo import recipes, registry, zoo

TINY = {
    "name": "tiny_entry",
    "description": "a tiny two-task net for tests",
    "dataset": {"name": "emotion6", "splits": {"train": "train", "test": "test"},
                "targets": {"emotion": ["distribution"], "va": ["valence", "arousal"]}},
    "model": {"family": "multitask", "architecture": "afi", "backbone": "mobilenetv2", "input_size": [32, 32],
              "options": {"alpha": 0.35, "recalibrate": True}},
    "tasks": [{"name": "va", "kind": "regression", "size": 2, "branch": 0, "labels": ["valence", "arousal"],
               "target_range": [1, 9]},
              {"name": "emotion", "kind": "distribution", "size": 7, "branch": 1, "circle": "emotion6"}],
    "training": {"epochs": 1, "batch_size": 4},
}


@pytest.fixture
def zoo_dirs(tmp_path, monkeypatch):
    """An isolated zoo: recipes/ and saved_models/ in tmp, no code-registered entries, the cache in tmp (for the
    registry and, through $AFFECT_ZOO_HOME, everything else that caches)."""
    (tmp_path / "recipes").mkdir()
    (tmp_path / "saved_models").mkdir()
    (tmp_path / "recipes" / "tiny_entry.yaml").write_text(yaml.safe_dump(TINY))
    monkeypatch.setenv("AFFECT_ZOO_HOME", str(tmp_path / "cache"))
    with registry.using(recipes=tmp_path / "recipes", saved_models=tmp_path / "saved_models", cache=tmp_path / "cache"):
        yield tmp_path


@functools.lru_cache(maxsize=None)
def tiny_weights(tmp_root):
    """Weights of the untrained tiny entry, saved once (building the model is the slow part)."""
    model = zoo.model_from_recipe(registry.load_recipe(TINY["name"]))
    path = f"{tmp_root}/tiny.weights.h5"
    model.network.save_weights(path)  # entry files hold the network only
    return path, model


def publish(root, weights_path, url=None, sha=None, local=True):
    folder = root / "saved_models" / "tiny_entry"
    folder.mkdir(parents=True, exist_ok=True)
    data = open(weights_path, "rb").read()
    if local:
        (folder / "tiny_entry.weights.h5").write_bytes(data)
    card = zoo.card_from_recipe(registry.load_recipe("tiny_entry"))
    card.weights = {"file": "tiny_entry.weights.h5", "sha256": sha or hashlib.sha256(data).hexdigest(),
                    **({"url": url} if url else {})}
    (folder / "card.json").write_text(json.dumps(card.to_dict(), default=list))


def test_every_shipped_recipe_is_listed_valid_and_builds_its_card():
    names = affect_zoo.list_models()
    for expected in ["afi_resnet50_uae", "afi_vgg16_uae", "single_resnet50_uae", "hard_share_vgg16_uae",
                     "cross_stitch_resnet50_uae", "nddr_vgg16_uae", "circle_resnet50_flickr_ldl",
                     "circle_resnet50_twitter_ldl", "circle_resnet50_fi"]:
        assert expected in names
    assert affect_zoo.list_models("circle_*") == [n for n in names if n.startswith("circle_")]
    card = affect_zoo.model_card("nddr_vgg16_uae")
    assert card.architecture == "nddr" and card.backbone == "vgg16" and card.dataset == "uae"
    assert card.recipe == "recipes/nddr_vgg16_uae.yaml" and not card.pretrained
    assert "emotion_label" in card.outputs


def test_paper_entry_without_weights_names_its_recipe_and_builds_untrained():
    with pytest.raises(zoo.WeightsError, match=r"recipes/circle_resnet50_fi\.yaml.*tfds_builders/fi"):
        affect_zoo.load("circle_resnet50_fi")
    assert "circle_resnet50_fi" in affect_zoo.list_models(pretrained=False)


def test_unknown_name_lists_the_closest():
    with pytest.raises(ValueError, match=r"unknown model 'afi_resnet50_ua'; did you mean: afi_resnet50_uae"):
        affect_zoo.load("afi_resnet50_ua")


def test_recipe_validation_names_the_key(tmp_path):
    bad = dict(TINY, training={"epochs": "ten"})
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(recipes.RecipeError, match=r"'training.epochs' must be int, got str 'ten'"):
        recipes.load_recipe(tmp_path / "bad.yaml")
    (tmp_path / "bad2.yaml").write_text(yaml.safe_dump(dict(TINY, model=dict(TINY["model"], colour="red"))))
    with pytest.raises(recipes.RecipeError, match=r"unknown key 'model.colour'"):
        recipes.load_recipe(tmp_path / "bad2.yaml")
    (tmp_path / "child.yaml").write_text(yaml.safe_dump({"name": "child", "extends": "bad2"}))
    with pytest.raises(recipes.RecipeError, match="unknown key 'model.colour'"):
        recipes.load_recipe(tmp_path / "child.yaml")


def test_extends_merges_mappings_and_replaces_the_rest():
    child = recipes.load_recipe("single_vgg16_uae")
    parent = recipes.load_recipe("afi_vgg16_uae")
    assert child.model.architecture == "single" and child.model.backbone == "vgg16"
    assert child.model.input_size == parent.model.input_size
    assert child.tasks == parent.tasks and child.training == parent.training


def test_load_verifies_the_local_sha256(zoo_dirs):
    path, model = tiny_weights(str(zoo_dirs.parent))
    publish(zoo_dirs, path)
    assert "tiny_entry" in affect_zoo.list_models(pretrained=True)
    loaded = affect_zoo.load("tiny_entry")
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    publish(zoo_dirs, path, sha="0" * 64)
    with pytest.raises(zoo.WeightsError, match="sha256 does not match"):
        affect_zoo.load("tiny_entry")


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    """A loopback HTTP server serving tmp_path/www; stopped after the test."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Files, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_hosted_weights_download_verified_and_cached(zoo_dirs, http_root):
    root, base = http_root
    path, model = tiny_weights(str(zoo_dirs.parent))
    (root / "tiny.weights.h5").write_bytes(open(path, "rb").read())
    publish(zoo_dirs, path, url=f"{base}/tiny.weights.h5", local=False)
    loaded = affect_zoo.load("tiny_entry")
    cached = zoo_dirs / "cache" / "tiny_entry" / "tiny_entry.weights.h5"
    assert cached.is_file()
    np.testing.assert_array_equal(loaded.weights[0].numpy(), model.weights[0].numpy())
    (root / "tiny.weights.h5").unlink()
    affect_zoo.load("tiny_entry")  # served from the verified cache now


def test_hosted_weights_with_a_wrong_hash_are_refused_and_not_kept(zoo_dirs, http_root):
    root, base = http_root
    (root / "evil.h5").write_bytes(b"not the weights")
    path, _ = tiny_weights(str(zoo_dirs.parent))
    publish(zoo_dirs, path, url=f"{base}/evil.h5", local=False)
    with pytest.raises(zoo.WeightsError, match="has sha256 .* expected .*: not kept"):
        affect_zoo.load("tiny_entry")
    assert not any((zoo_dirs / "cache").rglob("*.h5")) and not any((zoo_dirs / "cache").rglob("*.part"))
    publish(zoo_dirs, path, url=f"{base}/missing.h5", local=False)
    with pytest.raises(zoo.WeightsError, match="could not download"):
        affect_zoo.load("tiny_entry")


def _encoded(mode, fmt, size=(40, 30)):
    buffer = io.BytesIO()
    Image.new(mode, size, color=(200,) * len(mode) if len(mode) > 1 else 120).save(buffer, format=fmt)
    return buffer.getvalue()


def test_predict_accepts_many_kinds_of_image_and_reports_bad_ones(zoo_dirs, tmp_path):
    _, model = tiny_weights(str(zoo_dirs.parent))
    jpeg = tmp_path / "a.jpg"
    jpeg.write_bytes(_encoded("RGB", "JPEG"))
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    images = [str(jpeg), _encoded("L", "PNG"), _encoded("RGBA", "PNG"), _encoded("CMYK", "JPEG"),
              _encoded("RGB", "GIF"), _encoded("RGB", "BMP"), _encoded("RGB", "PNG", (1, 1)),
              _encoded("RGB", "JPEG", (3000, 2000)), str(empty), b"garbage",
              np.zeros((10, 12, 3), np.uint8), np.zeros((10, 12), np.uint8)]
    out = affect_zoo.predict(model, images)
    bad = [i for i, e in enumerate(out["errors"]) if e is not None]
    assert bad == [8, 9]
    assert "empty.jpg" in out["errors"][8]
    good = [i for i in range(len(images)) if i not in bad]
    np.testing.assert_allclose(out["emotion"][good].sum(axis=1), 1.0, rtol=1e-5)
    assert np.isnan(out["emotion"][8]).all() and out["emotion_label"][8] is None
    assert set(out) >= {"emotion", "emotion_label", "emotion_polarity", "emotion_angle", "emotion_intensity",
                        "valence", "arousal", "errors"}
    assert out["valence"].shape == (12,) and out["emotion_label"][0] in affect_zoo.emotion.EMOTION6.names
    pixels = affect_zoo.data.decode_image_bytes(tf.constant(jpeg.read_bytes()))  # training's and serving's decoder
    direct = model.predict(np.stack([affect_zoo.data.resize_for_model(pixels, (32, 32))]), verbose=0)
    np.testing.assert_allclose(out["emotion"][0], direct["emotion"][0], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name, output", [("semdep_densenet121_voc2007", "labels"),
                                          ("mmemo_densenet121_multimodal", "p_all"),
                                          ("circle_resnet50_fi", "emotion")])
def test_paper_scale_entries_of_every_family_build_untrained(name, output):
    model = affect_zoo.load(name, weights=None)
    assert output in model.network.output
    card = affect_zoo.model_card(name)
    assert card.recipe == f"recipes/{name}.yaml" and card.family == recipes.load_recipe(name).model.family
