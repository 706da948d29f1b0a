"""SavedModel export for TF Serving: layout, signatures (checked with saved_model_cli), equality with the Keras
model, loading without affect_zoo, no custom-gradient ops, warmup requests, model config."""
import io
import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from PIL import Image
from serving_doubles import SIZE, TASKS, afi_export, dense_network, load
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.config import model_server_config_pb2

from affect_zoo import export, imageio
from affect_zoo.data import resize_for_model
from affect_zoo.layers import AdaptiveFeatureInteraction
from affect_zoo.tasks import Task

JOY = "emotion6/images/joy/1.jpg"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return afi_export(tmp_path_factory)


@pytest.fixture(scope="module")
def loaded(exported):
    return load(exported[1])


@pytest.fixture
def joy(shared_data):
    path = shared_data / JOY
    if not path.exists():
        pytest.skip(f"Emotion6 image not found at {path}")
    return path


def encoded(array, fmt, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def keras_outputs(model, *encoded_images):
    """The Keras model's outputs for encoded images decoded and resized as in training."""
    batch = tf.stack([resize_for_model(tf.io.decode_image(data, channels=3, expand_animations=False), SIZE)
                      for data in encoded_images])
    return {k: v.numpy() for k, v in model(batch, training=False).items()}


def run(*args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=180, **kwargs)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_output_names_cover_every_kind_and_decode_back():
    names = export.output_names(TASKS)
    assert list(names) == ["aesthetic", "quality_prob", "style_probs", "style_label", "emotion_probs",
                           "emotion_label", "emotion_polarity", "emotion_angle", "emotion_intensity", "valence",
                           "arousal", "tags_probs"]
    assert names["emotion_probs"].startswith("emotion: float32 (batch, 7) probabilities over anger, disgust")
    assert "int64" in names["style_label"]
    rng = np.random.default_rng(0)
    outputs = {"aesthetic": rng.random((2, 1)), "quality_prob": rng.random(2), "style_probs": rng.random((2, 3)),
               "emotion_probs": rng.random((2, 7)), "valence": np.array([1.0, 2.0]), "arousal": np.array([3.0, 4.0]),
               "tags_probs": rng.random((2, 4))}
    decoded = export.decode_outputs(outputs, [t.get_config() for t in TASKS])
    assert {k: v.shape for k, v in decoded.items()} == {"aesthetic": (2, 1), "quality": (2, 1), "style": (2, 3),
                                                        "emotion": (2, 7), "va": (2, 2), "tags": (2, 4)}
    np.testing.assert_array_equal(decoded["va"], [[1, 3], [2, 4]])
    with pytest.raises(KeyError, match="'tags'.*tags_probs"):
        export.decode_outputs({k: v for k, v in outputs.items() if k != "tags_probs"}, TASKS)
    clash = [Task("v", "regression", 2, labels=("score", "x")), Task("score", "regression", 1)]
    with pytest.raises(ValueError, match="'score' is already used"):
        export.output_names(clash)


def test_layout_info_and_refusal_to_overwrite(exported):
    model, version_dir = exported
    assert version_dir.name == "1" and version_dir.parent.name == "afi_tiny"
    assert (version_dir / "saved_model.pb").is_file() and (version_dir / "variables" / "variables.index").is_file()
    assert sorted(p.name for p in (version_dir / "assets.extra").iterdir()) == ["affect_zoo.json",
                                                                              "tf_serving_warmup_requests"]
    assert [p.name for p in version_dir.parent.iterdir()] == ["1"]  # no staging directory left behind
    info = export.read_export_info(version_dir)
    assert info["input_size"] == list(SIZE) and info["outputs"] == export.output_names(TASKS)
    assert [Task.from_config(t) for t in info["tasks"]] == TASKS
    with pytest.raises(FileExistsError, match="version 1 of 'afi_tiny' is already exported.*overwrite=True"):
        export.export_saved_model(model, version_dir.parent.parent)


def test_overwrite_versions_names_and_given_warmup_images(tmp_path):
    tasks = [Task("score", "regression", 1)]
    network = dense_network(tasks)
    first = export.export_saved_model(network, tmp_path, tasks=tasks, warmup=False)
    assert first == tmp_path / "dense_tiny" / "1" and not (first / "assets.extra" / export.WARMUP_FILE).exists()
    stamp = (first / "saved_model.pb").stat().st_mtime_ns
    grey = np.arange(12 * 20, dtype=np.uint8).reshape(12, 20)
    again = export.export_saved_model(network, tmp_path, tasks=tasks, overwrite=True,
                                      warmup=[grey, encoded(np.zeros((9, 7, 3), np.uint8), "PNG")])
    assert again == first and (first / "saved_model.pb").stat().st_mtime_ns != stamp
    assert sorted(p.name for p in first.parent.iterdir()) == ["1"]
    logs = export.read_warmup_requests(first)
    assert [log.predict_log.request.model_spec.signature_name for log in logs] == [
        "serving_default", "serving_default", "predict_tensor"]
    with pytest.raises(ValueError, match=r"warmup images\[0\] cannot be decoded"):
        export.export_saved_model(network, tmp_path, version=2, tasks=tasks, warmup=[b"GIF89a broken"])
    with pytest.raises(ValueError, match="non-negative int"):
        export.export_saved_model(network, tmp_path, version=-1, tasks=tasks)
    with pytest.raises(ValueError, match="model name '../x'"):
        export.export_saved_model(network, tmp_path, name="../x", tasks=tasks)
    with pytest.raises(ValueError, match="has no .tasks"):
        export.export_saved_model(network, tmp_path)
    assert export.exported_models(tmp_path) == {"dense_tiny": [1]}


@pytest.mark.slow
def test_saved_model_cli_shows_both_signatures(exported):
    shown = run("saved_model_cli", "show", "--all", "--dir", str(exported[1]))
    signatures = shown.split("Concrete Functions:")[0]
    blocks = {chunk.split("'", 1)[0]: chunk for chunk in signatures.split("signature_def['")[1:]}
    assert set(blocks) >= {"serving_default", "predict_tensor"}
    assert re.search(r"inputs\['images'\] tensor_info:\s+dtype: DT_STRING\s+shape: \(-1\)", blocks["serving_default"])
    assert re.search(r"inputs\['images'\] tensor_info:\s+dtype: DT_FLOAT\s+shape: \(-1, 32, 32, 3\)",
                     blocks["predict_tensor"])
    for block in (blocks["serving_default"], blocks["predict_tensor"]):
        assert re.search(r"outputs\['emotion_label'\] tensor_info:\s+dtype: DT_INT64\s+shape: \(-1\)", block)
        assert re.search(r"outputs\['emotion_probs'\] tensor_info:\s+dtype: DT_FLOAT\s+shape: \(-1, 7\)", block)
        assert re.search(r"outputs\['valence'\] tensor_info:\s+dtype: DT_FLOAT\s+shape: \(-1\)", block)
        assert set(re.findall(r"outputs\['(\w+)'\]", block)) == set(export.output_names(TASKS))
        assert "Method name is: tensorflow/serving/predict" in block


@pytest.mark.slow
def test_saved_model_cli_runs_the_bytes_signature_on_an_emotion6_jpeg(exported, joy, tmp_path):
    model, version_dir = exported
    np.save(tmp_path / "images.npy", np.array([joy.read_bytes()], dtype=object), allow_pickle=True)
    run("saved_model_cli", "run", "--dir", str(version_dir), "--tag_set", "serve", "--signature_def",
        "serving_default", "--inputs", f"images={tmp_path / 'images.npy'}", "--outdir", str(tmp_path / "out"))
    got = {name: np.load(tmp_path / "out" / f"{name}.npy") for name in export.output_names(TASKS)}
    expected = export.decode_outputs(got, TASKS)
    for task, value in keras_outputs(model, joy.read_bytes()).items():
        np.testing.assert_allclose(expected[task], value, atol=1e-5, err_msg=task)


def test_signatures_equal_the_keras_model(exported, loaded):
    model, _ = exported
    rng = np.random.default_rng(0)
    photo = imageio.encode_jpeg(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8))
    wide = imageio.encode_jpeg(rng.integers(0, 255, (40, 200, 3), dtype=np.uint8))
    out = loaded.signatures["serving_default"](images=tf.constant([photo, wide]))
    assert out["emotion_label"].dtype == tf.int64 and out["emotion_probs"].shape == (2, 7)
    got = export.decode_outputs({k: v.numpy() for k, v in out.items()}, TASKS)
    for task, value in keras_outputs(model, photo, wide).items():
        np.testing.assert_allclose(got[task], value, atol=1e-5, err_msg=task)
    pixels = rng.uniform(0, 255, (3, *SIZE, 3)).astype(np.float32)
    tensor_out = loaded.signatures["predict_tensor"](images=tf.constant(pixels))
    reference = model(pixels, training=False)
    decoded = export.decode_outputs({k: v.numpy() for k, v in tensor_out.items()}, TASKS)
    for task in reference:
        np.testing.assert_allclose(decoded[task], reference[task].numpy(), atol=1e-5, err_msg=task)
    polarity, angle, intensity = (tensor_out[f"emotion_{k}"].numpy() for k in ("polarity", "angle", "intensity"))
    assert set(np.unique(polarity)) <= {-1.0, 1.0} and np.all(np.abs(angle) <= np.pi) and np.all(intensity <= 1)


def test_the_graph_decoder_reads_every_format_like_the_dataset_builders():
    """Grey, alpha (composited on white), palette, GIF and BMP: the serving decoder agrees with affect_zoo.imageio
    (Pillow, used when the datasets were built) within one grey level."""
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 255, (9, 11, 4), dtype=np.uint8)
    rgb = rgba[..., :3].copy()
    cases = {"png rgba": encoded(rgba, "PNG"), "png grey+alpha": encoded(rgba[..., [0, 3]], "PNG"),
             "png grey": encoded(rgb[..., 0], "PNG"), "bmp": encoded(rgb, "BMP"), "gif": encoded(rgb, "GIF"),
             "png palette+transparency": encoded(rgb[..., 0], "PNG", transparency=7)}
    for case, data in cases.items():
        got = export.decode_image_bytes(tf.constant(data)).numpy()
        expected = imageio.decode_image(data)
        assert got.shape == expected.shape, case
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1, case


def test_a_non_image_is_named_by_the_graph(loaded, joy):
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images\[1\] is not an image"):
        loaded.signatures["serving_default"](images=tf.constant([joy.read_bytes(), b"hello"]))


@pytest.mark.slow
def test_loads_and_runs_in_a_fresh_process_without_affect_zoo(exported, loaded, joy):
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["affect_zoo"] = None  # any import of affect_zoo now fails
        import tensorflow as tf
        model = tf.saved_model.load({str(exported[1])!r})
        data = open({str(joy)!r}, "rb").read()
        out = model.signatures["serving_default"](images=tf.constant([data]))
        assert not any(name.startswith("affect_zoo") for name in sys.modules if sys.modules[name] is not None)
        print(json.dumps({{k: v.numpy().tolist() for k, v in out.items()}}))
    """)
    fresh = json.loads(run(sys.executable, "-c", script).strip().splitlines()[-1])
    here = loaded.signatures["serving_default"](images=tf.constant([joy.read_bytes()]))
    assert set(fresh) == set(here)
    for name, value in here.items():
        np.testing.assert_allclose(np.asarray(fresh[name]), value.numpy(), atol=1e-6, err_msg=name)


def test_no_custom_gradient_op_in_the_export(exported, loaded):
    raw = (exported[1] / "saved_model.pb").read_bytes()
    assert b"CustomGradient" not in raw
    graph = saved_model_pb2.SavedModel.FromString(raw).meta_graphs[0].graph_def
    assert export.custom_gradient_ops(graph) == []
    for function in loaded.signatures.values():
        assert export.custom_gradient_ops(function.graph.as_graph_def()) == []


def test_the_custom_gradient_check_can_fail(tmp_path):
    """An AFI layer with recalibration holds custom-gradient ops when traced for training, and export refuses a
    network that keeps one in inference."""
    images = keras.Input((8, 8, 3), name="images")
    x_a, x_e = keras.layers.Conv2D(8, 1)(images), keras.layers.Conv2D(8, 1)(images)
    x_a, _ = AdaptiveFeatureInteraction(reduction=4, recalibrate=True)([x_a, x_e])
    score = keras.layers.Dense(1, name="score")(keras.layers.GlobalAveragePooling2D()(x_a))
    network = keras.Model(images, {"score": score})
    training = tf.function(lambda x: network(x, training=True), autograph=False)
    traced = training.get_concrete_function(tf.TensorSpec([None, 8, 8, 3], tf.float32))
    assert export.custom_gradient_ops(traced.graph.as_graph_def())

    class AlwaysCustom(keras.layers.Layer):
        def call(self, x):
            return _identity_with_custom_gradient(x)

    always = keras.Model(images, {"score": keras.layers.Dense(1)(AlwaysCustom()(keras.layers.Flatten()(images)))})
    with pytest.raises(RuntimeError, match="custom-gradient ops"):
        export.export_saved_model(always, tmp_path, name="custom", tasks=[Task("score", "regression", 1)])
    assert not (tmp_path / "custom").exists()


@tf.custom_gradient
def _identity_with_custom_gradient(x):
    return tf.identity(x), lambda g: g


def test_warmup_requests_replay_on_the_export(exported, loaded):
    logs = export.read_warmup_requests(exported[1])
    sizes = set()
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == "afi_tiny"
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        out = loaded.signatures[request.model_spec.signature_name](**{k: tf.constant(v) for k, v in inputs.items()})
        assert out["emotion_probs"].shape[0] == inputs["images"].shape[0]
        if request.model_spec.signature_name == "serving_default":
            sizes.add(imageio.decode_image(inputs["images"][0]).shape[:2])
    assert len(sizes) == len(export.WARMUP_SIZES) >= 3
    assert {log.predict_log.request.model_spec.signature_name for log in logs} == {"serving_default",
                                                                                   "predict_tensor"}


def test_model_config_lists_every_export(tmp_path):
    tasks = [Task("score", "regression", 1)]
    network = dense_network(tasks)
    for name, version in (("alpha", 1), ("alpha", 3), ("beta", 2)):
        export.export_saved_model(network, tmp_path, version=version, name=name, tasks=tasks, warmup=False)
    (tmp_path / "notes").mkdir()
    path = export.write_model_config(tmp_path)
    assert path == tmp_path / "models.config"
    config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    entries = {c.name: c for c in config.model_config_list.config}
    assert sorted(entries) == ["alpha", "beta"]
    assert entries["alpha"].base_path == str(tmp_path.resolve() / "alpha")
    assert entries["alpha"].model_platform == "tensorflow"
    assert entries["beta"].model_version_policy.WhichOneof("policy_choice") == "all"
    pinned = text_format.Parse(export.write_model_config(tmp_path, base_path="/models/", policy="specific")
                               .read_text(), model_server_config_pb2.ModelServerConfig())
    alpha = pinned.model_config_list.config[0]
    assert alpha.base_path == "/models/alpha" and list(alpha.model_version_policy.specific.versions) == [1, 3]
    with pytest.raises(ValueError, match="base_path must be absolute"):
        export.write_model_config(tmp_path, base_path="models")
    with pytest.raises(ValueError, match="policy must be one of"):
        export.write_model_config(tmp_path, policy="newest")
    with pytest.raises(FileNotFoundError, match="no exported models"):
        export.write_model_config(tmp_path / "notes")
