"""The TF Serving client against in-process doubles (gRPC PredictionService and REST) on 127.0.0.1: same outputs
over both protocols, the failing item named, empty batches, timeouts, server errors, wrong dtypes."""
import base64
import io
import json
import socket
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from serving_doubles import SIZE, TASKS, Backend, GrpcDouble, RestDouble, afi_export, dense_network
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from affect_zoo import export, imageio
from affect_zoo.serving import Client, ServingError
from affect_zoo.tasks import Task

PROTOCOLS = ("grpc", "rest")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    return afi_export(tmp_path_factory)


@pytest.fixture(scope="module")
def backend(exported):
    version_dir = exported[1]
    return Backend(version_dir.parent.parent, version_dir.parent.name)


@pytest.fixture(scope="module")
def servers(backend):
    with GrpcDouble(backend) as grpc_double, RestDouble(backend) as rest_double:
        yield {"grpc": grpc_double, "rest": rest_double}


def client(servers, protocol, **options):
    options = {"model_name": "afi_tiny", **options}
    return Client("127.0.0.1", grpc_port=servers["grpc"].port, rest_port=servers["rest"].port, protocol=protocol,
                  **options)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A JPEG path, PNG bytes (with alpha) and an RGB array, plus a truncated JPEG file."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    photo = folder / "photo.jpg"
    photo.write_bytes(imageio.encode_jpeg(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)))
    broken = folder / "broken.jpg"
    broken.write_bytes(photo.read_bytes()[:400])
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (30, 20, 4), dtype=np.uint8)).save(buffer, format="PNG")
    return {"path": photo, "png": buffer.getvalue(), "array": rng.integers(0, 255, (50, 40, 3), dtype=np.uint8),
            "broken": broken}


def local(backend, data):
    out = backend.loaded.signatures["serving_default"](images=tf.constant(data))
    return {k: v.numpy() for k, v in out.items()}


def test_the_double_replayed_the_warmup_requests(backend):
    assert backend.warmed_up == len(export.WARMUP_SIZES) + 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_predict_returns_the_named_outputs_of_the_export(servers, backend, images, protocol):
    with client(servers, protocol) as c:
        got = c.predict([images["path"], images["png"], images["array"]])
    assert set(got) == set(export.output_names(TASKS))
    assert got["emotion_label"].dtype == np.int64 and got["emotion_probs"].dtype == np.float32
    assert got["emotion_probs"].shape == (3, 7) and got["valence"].shape == (3,)
    sent = [images["path"].read_bytes(), images["png"], imageio.encode_jpeg(images["array"])]
    expected = local(backend, sent)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=1e-6, err_msg=name)
    decoded = export.decode_outputs(got, TASKS)
    assert decoded["va"].shape == (3, 2) and decoded["quality"].shape == (3, 1)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_predict_tensor_signature(servers, exported, protocol):
    pixels = np.random.default_rng(1).uniform(0, 255, (2, *SIZE, 3)).astype(np.float32)
    with client(servers, protocol, signature="predict_tensor") as c:
        got = c.predict(pixels)
        with pytest.raises(TypeError, match="'predict_tensor' takes decoded RGB arrays"):
            c.predict([b"\xff\xd8\xff"])
    expected = exported[0](pixels, training=False)
    decoded = export.decode_outputs(got, TASKS)
    for task, value in expected.items():
        np.testing.assert_allclose(decoded[task], value.numpy(), atol=1e-5, err_msg=task)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_undecodable_item_is_named(servers, images, protocol):
    with client(servers, protocol) as c:
        with pytest.raises(ServingError) as truncated:
            c.predict([images["path"], images["broken"]])
        with pytest.raises(ServingError) as text:
            c.predict([images["png"], images["path"], b"just text"])
    assert truncated.value.code == "INVALID_ARGUMENT" and truncated.value.index == 1
    assert truncated.value.item == str(images["broken"])
    assert f"images[1] ({images['broken']}) cannot be decoded" in str(truncated.value)
    assert text.value.index == 2 and text.value.item == "<bytes>"
    assert "images[2] (<bytes>) was refused" in str(text.value)
    assert "images[2] is not an image" in text.value.message  # the server's own message, which named it


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_input_is_refused_before_sending(servers, backend, images, tmp_path, protocol):
    before = backend.requests
    with client(servers, protocol) as c:
        with pytest.raises(ValueError, match="empty batch"):
            c.predict([])
        with pytest.raises(ValueError, match=r"images\[1\] \(.*missing.jpg\): cannot read file"):
            c.predict([images["path"], tmp_path / "missing.jpg"])
        with pytest.raises(ValueError, match=r"images\[0\]: array values must lie in \[0, 255\]"):
            c.predict([images["array"] * 2.0])
        with pytest.raises(TypeError, match="'serving_default' input 'images' takes a 1-D batch of encoded image "
                                            "bytes.*got a float32 array.*'predict_tensor'"):
            c.predict_raw({"images": np.zeros((1, *SIZE, 3), np.float32)})
        with pytest.raises(ValueError, match="takes one input named 'images'"):
            c.predict_raw({"pixels": np.zeros((1, *SIZE, 3), np.float32)}, signature="predict_tensor")
    assert backend.requests == before


def test_the_doubles_refuse_a_wrong_dtype_like_tf_serving(servers):
    """Past the client's own check (a raw stub / raw HTTP), the server answers INVALID_ARGUMENT."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "afi_tiny"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, *SIZE, 3), np.float32)))
    with grpc.insecure_channel(f"127.0.0.1:{servers['grpc'].port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.Predict(request, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Expects arg[0] to be string but float32 is provided" in error.value.details()
    body = json.dumps({"instances": [[[[0.0, 0.0, 0.0]]]]}).encode()
    url = f"http://127.0.0.1:{servers['rest'].port}/v1/models/afi_tiny:predict"
    with pytest.raises(urllib.error.HTTPError) as http_error:
        urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=10)
    assert http_error.value.code == 400 and "to be string" in json.loads(http_error.value.read())["error"]


def test_the_rest_double_answers_the_row_format_too(servers, images):
    data = images["path"].read_bytes()
    body = json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}]}).encode()
    url = f"http://127.0.0.1:{servers['rest'].port}/v1/models/afi_tiny/versions/1:predict"
    with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=10) as response:
        rows = json.loads(response.read())["predictions"]
    with client(servers, "rest", version=1) as c:
        columns = c.predict(images["path"])
    assert len(rows) == 1 and set(rows[0]) == set(columns)
    np.testing.assert_allclose(rows[0]["emotion_probs"], columns["emotion_probs"][0], atol=1e-6)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_errors_carry_code_and_message(servers, images, protocol):
    with client(servers, protocol, model_name="nobody") as c:
        with pytest.raises(ServingError) as missing:
            c.predict(images["path"])
    assert missing.value.code == "NOT_FOUND" and "Servable not found" in missing.value.message
    assert "model 'nobody' at 127.0.0.1" in str(missing.value)
    with client(servers, protocol, version=7) as c:
        with pytest.raises(ServingError, match="NOT_FOUND.*Specific\\(afi_tiny, 7\\)"):
            c.predict(images["path"])
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with Client("127.0.0.1", "afi_tiny", grpc_port=port, rest_port=port, protocol=protocol, timeout=5) as c:
        with pytest.raises(ServingError) as down:
            c.predict(images["path"])
    assert down.value.code == "UNAVAILABLE" and "cannot reach model 'afi_tiny'" in down.value.message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_slow_server_times_out(backend, images, protocol):
    double = (GrpcDouble if protocol == "grpc" else RestDouble)(backend, delay=5.0)
    with double, Client("127.0.0.1", "afi_tiny", grpc_port=double.port, rest_port=double.port,
                        protocol=protocol, timeout=0.5) as c:
        start = time.monotonic()
        with pytest.raises(ServingError) as late:
            c.predict(images["path"])
        assert time.monotonic() - start < 3
    assert late.value.code == "DEADLINE_EXCEEDED" and "within 0.5 s" in late.value.message


def test_rest_names_the_output_of_a_single_output_signature(tmp_path):
    """TF Serving's columnar answer drops the name of a lone output; the client reads it from the metadata."""
    tasks = [Task("quality", "binary", 1)]
    export.export_saved_model(dense_network(tasks), tmp_path, name="one", tasks=tasks)
    backend = Backend(tmp_path, "one")
    batch = np.random.default_rng(2).integers(0, 255, (2, 9, 9, 3), np.uint8)
    with GrpcDouble(backend) as grpc_double, RestDouble(backend) as rest_double:
        answers = {protocol: Client("127.0.0.1", "one", grpc_port=grpc_double.port, rest_port=rest_double.port,
                                    protocol=protocol).predict(batch)
                   for protocol in PROTOCOLS}
    assert set(answers["rest"]) == set(answers["grpc"]) == {"quality_prob"}
    np.testing.assert_allclose(answers["rest"]["quality_prob"], answers["grpc"]["quality_prob"], atol=1e-6)


def test_client_options_are_checked():
    with pytest.raises(ValueError, match="protocol must be one of grpc, rest"):
        Client("localhost", "m", protocol="http")
    with pytest.raises(ValueError, match="timeout must be a positive number"):
        Client("localhost", "m", timeout=0)


def test_encoded_images_are_sent_unchanged_and_the_graph_turns_rotated_jpegs_upright(images):
    """The serving decoder applies EXIF orientation, so the client sends the bytes it was given."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(buffer, format="JPEG", exif=exif)
    sent, name = export.encode_for_request(buffer.getvalue())
    assert (sent, name) == (buffer.getvalue(), "<bytes>") and imageio.decode_image(sent).shape == (40, 20, 3)
    assert export.decode_image_bytes(tf.constant(sent)).shape == (40, 20, 3)
    plain = images["path"].read_bytes()
    assert export.encode_for_request(images["path"]) == (plain, str(images["path"]))
    assert export.encode_for_request(images["png"])[0] == images["png"]
