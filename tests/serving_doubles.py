"""Test doubles of TF Serving (no server binary exists here): a gRPC PredictionService and a REST endpoint, both on
127.0.0.1 with a free port, answering from an export loaded with ``tf.saved_model.load``.

They follow TF Serving's observable behaviour the client relies on: the warmup file is replayed at load (a failing
record fails the load), requests name a model (and optionally a version and signature), input dtypes are checked
against the signature (INVALID_ARGUMENT), TF errors keep their canonical code, REST answers columnar requests with
``{"outputs": …}`` (unnamed when the signature has one output), row requests with ``{"predictions": …}``, errors
with ``{"error": …}`` and TF Serving's HTTP statuses. ``delay`` makes a server answer late (timeouts).
Also here: the small exports the serving tests share, made once per process.
"""
import base64
import concurrent.futures
import http.server
import json
import pathlib
import re
import threading

import grpc
import keras
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

from affect_zoo import export
from affect_zoo.models import multitask
from affect_zoo.tasks import Task
from affect_zoo.training import MultiTaskModel

STATUS_OF = {"INVALID_ARGUMENT": 400, "NOT_FOUND": 404, "FAILED_PRECONDITION": 400, "UNIMPLEMENTED": 501,
             "INTERNAL": 500, "UNAVAILABLE": 503, "RESOURCE_EXHAUSTED": 429, "DEADLINE_EXCEEDED": 408}
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}

# Every kind of task, on both branches of an AFI net with recalibration (so a custom-gradient op could appear).
TASKS = [Task("aesthetic", "regression", 1, branch=0), Task("quality", "binary", 1, branch=0),
         Task("style", "classification", 3, branch=0, labels=("a", "b", "c")),
         Task("emotion", "distribution", 7, branch=1, circle="emotion6"),
         Task("va", "regression", 2, branch=1, labels=("valence", "arousal"), target_range=(1, 9)),
         Task("tags", "multilabel", 4, branch=1)]
SIZE = (32, 32)
_CACHE = {}


class DoubleError(Exception):
    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def afi_export(tmp_path_factory):
    """(model, version_dir) of the AFI test model exported once per process (saving it is the slow part)."""
    if "afi" not in _CACHE:
        keras.utils.set_random_seed(0)
        network = multitask.build("afi", "mobilenetv2", TASKS, (*SIZE, 3), alpha=0.35, recalibrate=True)
        model = MultiTaskModel(network, tasks=TASKS, name="afi_tiny")
        _CACHE["afi"] = model, export.export_saved_model(model, tmp_path_factory.mktemp("exports"))
    return _CACHE["afi"]


def load(version_dir):
    """tf.saved_model.load, once per directory and process."""
    key = str(version_dir)
    if key not in _CACHE:
        _CACHE[key] = tf.saved_model.load(key)
    return _CACHE[key]


def dense_network(tasks, size=(8, 8), name="dense_tiny"):
    """A network that builds and saves in a second: pooling and one Dense head per task."""
    images = keras.Input((*size, 3), name="images")
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(images))
    return keras.Model(images, {t.name: t.head(features) for t in tasks}, name=name)


class Backend:
    """The latest version of ``base_dir/<name>`` loaded as TF Serving would: warmup replayed before serving."""

    def __init__(self, base_dir, name):
        self.name = name
        versions = export.exported_models(base_dir)[name]
        self.version = versions[-1]
        self.version_dir = pathlib.Path(base_dir) / name / str(self.version)
        self.loaded = load(self.version_dir)
        self.requests = 0
        self.warmed_up = 0
        for log in export.read_warmup_requests(self.version_dir):
            request = log.predict_log.request
            self.run(request.model_spec.name, None, request.model_spec.signature_name,
                     {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
            self.warmed_up += 1
        self.requests = 0

    def signature(self, name, version, signature):
        if name != self.name or version not in (None, self.version):
            wanted = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise DoubleError("NOT_FOUND", f"Servable not found for request: {wanted}")
        function = self.loaded.signatures.get(signature or export.BYTES_SIGNATURE)
        if function is None:
            raise DoubleError("FAILED_PRECONDITION", f"Serving signature key \"{signature}\" not found.")
        return function

    def specs(self, name, version, signature):
        return self.signature(name, version, signature).structured_input_signature[1]

    def run(self, name, version, signature, inputs):
        """dict input → ndarray in, dict output → ndarray out; DoubleError with a canonical code otherwise."""
        self.requests += 1
        function = self.signature(name, version, signature)
        specs = function.structured_input_signature[1]
        if set(inputs) != set(specs):
            raise DoubleError("INVALID_ARGUMENT", f"input keys {sorted(inputs)} do not match the signature's "
                                                  f"{sorted(specs)}")
        tensors = {}
        for key, spec in specs.items():
            value = np.asarray(inputs[key])
            dtype = tf.string if value.dtype == object or value.dtype.kind == "S" else tf.as_dtype(value.dtype)
            if dtype != spec.dtype:
                raise DoubleError("INVALID_ARGUMENT", f"Expects arg[0] to be {spec.dtype.name} but {dtype.name} is "
                                                      "provided")
            if not spec.shape.is_compatible_with(value.shape):
                raise DoubleError("INVALID_ARGUMENT", f"input {key!r}: shape {value.shape} is not compatible with "
                                                      f"{spec.shape}")
            tensors[key] = tf.constant(value, dtype=spec.dtype)
        try:
            outputs = function(**tensors)
        except tf.errors.OpError as e:
            raise DoubleError(_CODE_NAMES.get(e.error_code, "UNKNOWN"), e.message) from None
        return {key: value.numpy() for key, value in outputs.items()}

    def metadata(self, name, version):
        self.signature(name, version, None)
        graph = saved_model_pb2.SavedModel.FromString((self.version_dir / "saved_model.pb").read_bytes())
        signatures = get_model_metadata_pb2.SignatureDefMap()
        for key, value in graph.meta_graphs[0].signature_def.items():
            if not key.startswith("__"):
                signatures.signature_def[key].CopyFrom(value)
        return {"model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
                "metadata": {"signature_def": json_format.MessageToDict(signatures,
                                                                        preserving_proto_field_name=True)}}


class _Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, backend, wait):
        self.backend = backend
        self.wait = wait

    def Predict(self, request, context):  # noqa: N802 (the proto's method name)
        self.wait()
        spec = request.model_spec
        version = spec.version.value if spec.HasField("version") else None
        try:
            inputs = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
            outputs = self.backend.run(spec.name, version, spec.signature_name, inputs)
        except DoubleError as e:
            context.abort(getattr(grpc.StatusCode, e.code), e.message)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = self.backend.name
        response.model_spec.version.value = self.backend.version
        response.model_spec.signature_name = spec.signature_name or export.BYTES_SIGNATURE
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        return response


class _Double:
    """Start/stop and the interruptible delay shared by both doubles."""

    def __init__(self, delay):
        self.delay = delay
        self._stopping = threading.Event()

    def wait(self):
        if self.delay:
            self._stopping.wait(self.delay)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class GrpcDouble(_Double):
    """PredictionService on 127.0.0.1:<free port> (``.port``)."""

    def __init__(self, backend, delay=0.0):
        super().__init__(delay)
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Servicer(backend, self.wait),
                                                                            self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self):
        self._stopping.set()
        self.server.stop(grace=None).wait()


class RestDouble(_Double):
    """TF Serving's REST predict and metadata endpoints on 127.0.0.1:<free port> (``.port``), in a thread."""

    _ROUTE = re.compile(r"^/v1/models/([^/:]+)(?:/versions/(\d+))?(:predict|/metadata)$")

    def __init__(self, backend, delay=0.0):
        super().__init__(delay)
        double = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                self._answer("POST")

            def do_GET(self):  # noqa: N802
                self._answer("GET")

            def _answer(self, method):
                double.wait()
                try:
                    status, body = 200, double.handle(method, self.path, self._body())
                except DoubleError as e:
                    status, body = STATUS_OF.get(e.code, 500), {"error": e.message}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self):
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def log_message(self, *args):
                pass

        self.backend = backend
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self._stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def handle(self, method, path, raw):
        route = self._ROUTE.match(path)
        if route is None or (method == "GET") != (route.group(3) == "/metadata"):
            raise DoubleError("NOT_FOUND", f"Malformed request: {method} {path}")
        name, version = route.group(1), route.group(2) and int(route.group(2))
        if method == "GET":
            return self.backend.metadata(name, version)
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise DoubleError("INVALID_ARGUMENT", f"JSON Parse error: {e}") from None
        signature = body.get("signature_name", export.BYTES_SIGNATURE)
        specs = self.backend.specs(name, version, signature)
        if ("inputs" in body) == ("instances" in body):
            raise DoubleError("INVALID_ARGUMENT", "Missing 'inputs' or 'instances' key")
        if "inputs" in body:
            given = body["inputs"]
            columns = given if isinstance(given, dict) and set(given) <= set(specs) and given else None
            if columns is None:
                if len(specs) != 1:
                    raise DoubleError("INVALID_ARGUMENT", "unnamed 'inputs' need a signature with one input")
                columns = {next(iter(specs)): given}
        else:
            rows = body["instances"]
            if len(specs) == 1 and not (rows and isinstance(rows[0], dict) and set(rows[0]) <= set(specs)):
                columns = {next(iter(specs)): rows}
            else:
                columns = {key: [row[key] for row in rows] for key in specs}
        inputs = {key: _from_json(value, specs.get(key)) for key, value in columns.items()}
        outputs = self.backend.run(name, version, signature, inputs)
        if "inputs" in body:
            named = {key: value.tolist() for key, value in outputs.items()}
            return {"outputs": next(iter(named.values())) if len(named) == 1 else named}
        count = len(next(iter(outputs.values())))
        rows = [{key: value[i].tolist() for key, value in outputs.items()} for i in range(count)]
        return {"predictions": [next(iter(r.values())) for r in rows] if len(outputs) == 1 else rows}


def _from_json(value, spec):
    """JSON input → ndarray: {"b64": …} objects become bytes; numbers take the signature's dtype."""
    if spec is None:
        raise DoubleError("INVALID_ARGUMENT", "unknown input key")
    decoded = _unb64(value)
    if spec.dtype == tf.string:
        array = np.array(decoded, dtype=object)
        if array.size and not all(isinstance(v, bytes) for v in array.reshape(-1)):
            raise DoubleError("INVALID_ARGUMENT", "Expects arg[0] to be string but a number is provided")
        return array
    try:
        return np.asarray(decoded, dtype=spec.dtype.as_numpy_dtype)
    except (TypeError, ValueError):
        raise DoubleError("INVALID_ARGUMENT", f"Expects arg[0] to be {spec.dtype.name}") from None


def _unb64(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_unb64(v) for v in value]
    return value
