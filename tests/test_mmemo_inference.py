"""The mmemo family through ``predict`` and the export: text and tags encoded in the graph as in Python, posts with
any subset of modalities answered by their classifier, the serving signatures equal to ``predict``, and errors
that name the input."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from serving_doubles import TASKS, Backend, GrpcDouble, RestDouble, dense_network

import affect_zoo
from affect_zoo import export, families, imageio, text
from affect_zoo.models import mmemo
from affect_zoo.serving import Client
from affect_zoo.text import graph as text_graph
from affect_zoo.training import MultiTaskModel

LABELS = ["amusement", "anger", "awe", "sadness"]
SIZE = (32, 32)
TEXTS = ["What a HAPPY day!", "don't  stop", "'quoted' words''here", "under_score snake_case",
         "Ünïcödé ΣΊΣΥΦΟΣ Straße", "数字 ２３ ² ½", "", "...", "a'b'c 'x'  y''  ''z''", "tab\tnew\nline",
         "rock'n'roll isn't", "emoji 😀 ok", "x'", "'", "l'été", "one two three four five six seven eight"]
TAGS = [["Beach", " sunny  DAY ", "beach", ""], ["", ""], ["a\u00a0b", "A B", "c"], ["x\u200by", "storm"],
        ["sun", "sea", "sand", "surf", "sky"], ["Sunny\tday", "SUNNY DAY"]]


def vocabularies():
    tv = text.Vocabulary.build([text.tokenize(t) for t in TEXTS[:11]])
    gv = text.Vocabulary.build([text.normalize_tags(t) for t in TAGS[:3]])
    return tv, gv


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    tv, gv = vocabularies()
    network = mmemo.build("vgg16", len(LABELS), (*SIZE, 3), text_vocab_size=len(tv), tags_vocab_size=len(gv),
                          max_text_length=6, max_tags=3, text_embedding_dim=8, text_filters=4,
                          tag_embedding_dim=8, tag_filters=8, feature_dim=8, classifier_units=(8,))
    model = MultiTaskModel(network, tasks=mmemo.tasks(len(LABELS), labels=LABELS), name="tiny_mmemo")
    model.vocabularies = {"text": tv, "tags": gv}
    return model


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    return export.export_saved_model(model, tmp_path_factory.mktemp("exports"))


def photo(seed, shape=(40, 50, 3)):
    return imageio.encode_jpeg(np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8))


def graph_pixels(data):
    """Decoded as training, predict and the serving graph decode (TensorFlow's JPEG decoder, not Pillow's)."""
    return imageio.graph.decode_image_bytes(tf.constant(data)).numpy()


POSTS = {"images": [photo(0), None, None, photo(1), None, None, photo(2)],
         "text": ["what a HAPPY day", "so angry", None, None, "don't stop", None, "calm"],
         "tags": [["Beach"], None, ["storm", "sun"], None, ["beach"], None, None]}
ANSWERED = ["p_all", "p_text", "p_tags", "p_image", "p_text_tags", None, "p_image_text"]


def test_graph_text_encoding_equals_python():
    tv, gv = vocabularies()
    ids, present = text_graph.encode_text(tf.constant(TEXTS), text_graph.lookup_table(tv), 6)
    for row, value in enumerate(TEXTS):
        expected, was = tv.encode_text(value, 6)
        np.testing.assert_array_equal(ids[row].numpy(), expected, err_msg=repr(value))
        assert bool(present[row]) == was, repr(value)
    assert ids.dtype == tf.int32 and set(np.unique(ids.numpy())) > {0, 1}  # padding and unknown words occur
    width = max(len(t) for t in TAGS)
    padded = [t + [""] * (width - len(t)) for t in TAGS]
    ids, present = text_graph.encode_tags(tf.constant(padded), text_graph.lookup_table(gv), 3)
    for row, value in enumerate(TAGS):
        expected, was = gv.encode_tags(value, 3)
        np.testing.assert_array_equal(ids[row].numpy(), expected, err_msg=repr(value))
        assert bool(present[row]) == was, repr(value)
    # the dedup and whitespace rules matter here: "a\u00a0b" and "A B" are one tag, "beach" repeats
    assert gv.encode_tags(TAGS[2], 3)[0].tolist() == [gv.id("a b"), gv.id("c"), 0]
    assert gv.encode_tags(TAGS[0], 3)[0].tolist() == [gv.id("beach"), gv.id("sunny day"), 0]


def test_predict_answers_each_post_with_the_classifier_of_its_modalities(model):
    out = affect_zoo.predict(model, POSTS["images"], text=POSTS["text"], tags=POSTS["tags"])
    assert list(out["answered_by"]) == ANSWERED and out["errors"] == [None] * 7
    records = [{"image": None if i is None else graph_pixels(i), "text": t, "tags": g}
               for i, t, g in zip(*POSTS.values())]
    tv, gv = model.vocabularies["text"], model.vocabularies["tags"]
    direct = model.network(mmemo.encode_records(records, tv, gv, (*SIZE, 3), 6, 3), training=False)
    np.testing.assert_allclose(out["prediction_probs"], direct["prediction"], atol=1e-5)
    assert list(out["prediction_label"]) == [LABELS[k] for k in np.argmax(direct["prediction"], axis=1)]
    for name in mmemo.OUTPUT_NAMES:
        np.testing.assert_allclose(out[f"{name}_probs"], direct[name], atol=1e-5)
    np.testing.assert_allclose(out["prediction_probs"][5], 1 / len(LABELS))  # nothing given: uniform


def test_a_bad_image_sinks_only_its_post_and_is_named_by_its_position(model):
    images = [None, b"garbage", photo(3)]
    out = affect_zoo.predict(model, images, text=["calm", "angry", None], tags=None)
    assert out["errors"][0] is None and out["errors"][2] is None
    assert "image 1" in out["errors"][1]
    assert np.isnan(out["prediction_probs"][1]).all() and out["answered_by"][1] is None
    assert list(out["answered_by"][[0, 2]]) == ["p_text", "p_image"]
    alone = affect_zoo.predict(model, [photo(3)], text=[None])
    np.testing.assert_allclose(out["prediction_probs"][2], alone["prediction_probs"][0], atol=1e-6)


def test_text_only_posts_need_no_images(model):
    out = affect_zoo.predict(model, text=["so angry", "what a happy day"])
    assert list(out["answered_by"]) == ["p_text", "p_text"]


@pytest.mark.parametrize("call, message", [
    (lambda m: affect_zoo.predict(m, [None, None], text=["a"]), r"text has 1 entries for 2 posts"),
    (lambda m: affect_zoo.predict(m, [None], caption=["a"]), r"unknown input 'caption'"),
    (lambda m: affect_zoo.predict(m, None), r"images is None"),
])
def test_bad_inputs_are_named(model, call, message):
    with pytest.raises(ValueError, match=message):
        call(model)


def test_without_vocabularies_predict_and_export_say_where_they_come_from(model, tmp_path):
    bare = MultiTaskModel(model.network, tasks=model.tasks, name="bare")
    with pytest.raises(ValueError, match=r"bare: no text and tags vocabularies attached.*text_vocabulary\.txt"):
        affect_zoo.predict(bare, [None], text=["a"])
    with pytest.raises(ValueError, match=r"no text and tags vocabularies"):
        export.export_saved_model(bare, tmp_path)


def test_image_models_refuse_text():
    image_model = MultiTaskModel(dense_network(TASKS), tasks=TASKS, name="dense")
    with pytest.raises(ValueError, match=r"takes images only; got text"):
        affect_zoo.predict(image_model, [np.zeros((8, 8, 3), np.uint8)], text=["a"])


def test_families_are_told_by_the_network_inputs(model):
    assert families.base.family_of_model(model).name == "mmemo"
    assert families.base.family_of_model(dense_network(TASKS)).name == "multitask"


def test_serving_signatures_equal_predict(model, exported):
    loaded = tf.saved_model.load(str(exported))
    images = [b"" if i is None else i for i in POSTS["images"]]
    width = 2
    tags = [(t or [])[:width] + [""] * (width - len(t or [])) for t in POSTS["tags"]]
    texts = [t or "" for t in POSTS["text"]]
    got = loaded.signatures["serving_default"](images=tf.constant(images), text=tf.constant(texts),
                                               tags=tf.constant(tags))
    want = affect_zoo.predict(model, POSTS["images"], text=POSTS["text"], tags=POSTS["tags"])
    assert set(got) == set(families.get_family("mmemo").output_names(model.tasks))
    np.testing.assert_allclose(got["prediction_probs"].numpy(), want["prediction_probs"].astype(np.float32),
                               atol=1e-5)
    names = [*mmemo.OUTPUT_NAMES, None]
    assert [names[i] for i in got["answered_by"].numpy()] == ANSWERED
    assert got["answered_by"].dtype == tf.int32 and got["prediction_label"].dtype == tf.int64
    pixels = np.stack([np.zeros((*SIZE, 3), np.float32) if i is None else
                       np.asarray(imageio.graph.resize_for_model(imageio.graph.decode_image_bytes(tf.constant(i)),
                                                                 SIZE)) for i in POSTS["images"]])
    present = np.array([i is not None for i in POSTS["images"]], np.float32)
    tensor = loaded.signatures["predict_tensor"](images=tf.constant(pixels), image_present=tf.constant(present),
                                                 text=tf.constant(texts), tags=tf.constant(tags))
    np.testing.assert_allclose(tensor["prediction_probs"].numpy(), got["prediction_probs"].numpy(), atol=1e-5)


def test_export_describes_its_inputs_and_warms_every_signature_up(exported):
    info = json.loads((exported / "assets.extra" / export.INFO_FILE).read_text())
    assert set(info["signatures"]["serving_default"]) == {"images", "text", "tags"}
    assert set(info["signatures"]["predict_tensor"]) == {"images", "image_present", "text", "tags"}
    assert "answered_by" in info["outputs"] and "prediction_probs" in info["outputs"]
    loaded = tf.saved_model.load(str(exported))
    requests = export.read_warmup_requests(exported)
    assert {r.predict_log.request.model_spec.signature_name for r in requests} == {"serving_default",
                                                                                   "predict_tensor"}
    for request in requests:
        inputs = {k: tf.make_ndarray(v) for k, v in request.predict_log.request.inputs.items()}
        out = loaded.signatures[request.predict_log.request.model_spec.signature_name](
            **{k: tf.constant(v) for k, v in inputs.items()})
        np.testing.assert_allclose(out["prediction_probs"].numpy().sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("protocol", ["grpc", "rest"])
def test_the_serving_client_sends_posts_and_gets_what_predict_gives(model, exported, protocol):
    backend = Backend(exported.parent.parent, exported.parent.name)
    want = affect_zoo.predict(model, POSTS["images"], text=POSTS["text"], tags=POSTS["tags"])
    with GrpcDouble(backend) as grpc_double, RestDouble(backend) as rest_double:
        client = Client("127.0.0.1", "tiny_mmemo", grpc_port=grpc_double.port, rest_port=rest_double.port,
                        protocol=protocol)
        got = client.predict(POSTS["images"], text=POSTS["text"], tags=POSTS["tags"])
        text_only = client.predict(None, text=["so angry"])
        with pytest.raises(ValueError, match=r"tags has 1 entries for 7 posts"):
            client.predict(POSTS["images"], text=POSTS["text"], tags=[["a"]])
    np.testing.assert_allclose(got["prediction_probs"], want["prediction_probs"].astype(np.float32), atol=1e-5)
    names = [*mmemo.OUTPUT_NAMES, None]
    assert [names[i] for i in got["answered_by"]] == ANSWERED
    assert text_only["answered_by"].tolist() == [mmemo.OUTPUT_NAMES.index("p_text")]


@pytest.mark.slow
def test_saved_model_cli_runs_the_bytes_signature_in_a_tf1_session(exported, tmp_path):
    """TF Serving's loader reads the export as a TF 1 session does: variables and vocabulary tables included."""
    inputs = {"images": np.array([photo(0), b""], dtype=object), "text": np.array(["happy day", "so angry"], object),
              "tags": np.array([["beach"], [""]], dtype=object)}
    for key, value in inputs.items():
        np.save(tmp_path / f"{key}.npy", value, allow_pickle=True)
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    subprocess.run([cli, "run", "--dir", str(exported), "--tag_set", "serve", "--signature_def", "serving_default",
                    "--inputs", ";".join(f"{k}={tmp_path / (k + '.npy')}" for k in inputs),
                    "--outdir", str(tmp_path / "out")], check=True, capture_output=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}, timeout=600)
    answered = np.load(tmp_path / "out" / "answered_by.npy")
    assert answered.tolist() == [mmemo.OUTPUT_NAMES.index("p_all"), mmemo.OUTPUT_NAMES.index("p_text")]
