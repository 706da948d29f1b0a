"""A client for affect_zoo models served by TF Serving, over gRPC (port 8500) or REST (port 8501).

``Client.predict`` sends images to the export's ``serving_default`` signature (or decoded arrays to
``predict_tensor``) and returns the signature's named outputs (``affect_zoo.export.output_names``);
``affect_zoo.export.decode_outputs`` turns them into the dict keyed by task that ``affect_zoo.predict`` returns.
For an exported mmemo model it also sends each post's ``text`` and ``tags`` (``predict(images, text=, tags=)``).

REST requests use TF Serving's columnar format (``{"signature_name": …, "inputs": {"images": [{"b64": …}, …]}}``):
its answer ``{"outputs": {name: batch}}`` is keyed by output name with the batch first, exactly like a gRPC
PredictResponse, so both protocols decode alike (the row format answers one object per image). Every failure is a
``ServingError`` carrying the gRPC status name (``INVALID_ARGUMENT``, ``DEADLINE_EXCEEDED``, ``UNAVAILABLE``, …).
"""
import base64
import json
import re
import urllib.error
import urllib.request

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from affect_zoo.export import (BYTES_SIGNATURE, INPUT_KEY, TENSOR_SIGNATURE, decode_image_bytes, encode_for_request,
                               image_size_from_header, imageio, known_format)

PROTOCOLS = ("grpc", "rest")
IMAGE_PRESENT = "image_present"
POST_INPUTS = ("text", "tags", IMAGE_PRESENT)  # an mmemo export's inputs beside the images
# TF Serving's HTTP status for each canonical error code; read backwards to name a REST failure like a gRPC one.
_HTTP_CODES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
               408: "DEADLINE_EXCEEDED", 409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED",
               500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


class ServingError(RuntimeError):
    """A request TF Serving did not answer with outputs.

    ``code``: the gRPC status name (REST statuses are mapped to the same names); ``message``: the server's (or the
    transport's) explanation; ``status``: the HTTP status of a REST failure; ``index`` / ``item``: the batch
    position and path (or ``<bytes>`` / ``<array>``) of the image that could not be decoded, when that was the cause.
    """

    def __init__(self, code, message, *, status=None, index=None, item=None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.index = index
        self.item = item


class Client:
    """Predictions from a model on TF Serving; ``predict(images)`` → dict output name → NumPy array.

    ``version`` (None = the server's choice, normally the latest) pins a model version. ``timeout`` (seconds)
    bounds each request. The gRPC channel is opened on first use; ``close()`` (or ``with Client(...)``) releases it.
    """

    def __init__(self, host, model_name, grpc_port=8500, rest_port=8501, protocol="grpc", timeout=10,
                 signature=BYTES_SIGNATURE, version=None):
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        if not timeout or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.host = host
        self.model_name = model_name
        self.grpc_port = int(grpc_port)
        self.rest_port = int(rest_port)
        self.protocol = protocol
        self.timeout = float(timeout)
        self.signature = signature
        self.version = None if version is None else int(version)
        self._channel = None
        self._stub = None
        self._single_outputs = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._channel is not None:
            self._channel.close()
            self._channel = self._stub = None

    @property
    def target(self):
        port = self.grpc_port if self.protocol == "grpc" else self.rest_port
        return f"{self.host}:{port}"

    def predict(self, images, text=None, tags=None):
        """Named outputs for a batch of images, sent in one request.

        With the bytes signature (default) images are paths, encoded bytes or RGB arrays (JPEG-encoded before
        sending); with ``predict_tensor`` they are float arrays (H, W, 3) at the model's input size, in [0, 255].
        One path, bytes object or (H, W, 3) array counts as a batch of one; a 4-D array as a batch. An empty batch
        is refused before anything is sent. An image the server cannot decode raises ``ServingError``
        (``INVALID_ARGUMENT``) naming its index and path: the client decodes the batch locally with the serving
        graph's own decoder to find it.

        text, tags: for an exported mmemo model, one entry per post (str or None; a list of str or None), sent as
        its ``text`` and ``tags`` inputs; an image may then be None (sent as b"", or as zeros marked absent in
        ``image_present`` for ``predict_tensor``) and ``images`` itself None for text/tags only.
        """
        posts = text is not None or tags is not None
        if images is None and posts:
            items = [None] * len([text] if isinstance(text, str) else list(text if text is not None else tags))
        else:
            items = _as_batch(images)
        if not items:
            raise ValueError("predict() got an empty batch: pass at least one image")
        extra = _post_inputs(len(items), text, tags) if posts else {}
        if self.signature == TENSOR_SIGNATURE:
            if posts:
                present = np.array([item is not None for item in items], np.float32)
                shape = next((np.shape(item) for item in items if item is not None), None)
                if shape is None:
                    raise ValueError(f"signature {TENSOR_SIGNATURE!r} needs at least one image to know the input "
                                     f"size; send text-only posts to {BYTES_SIGNATURE!r}")
                items = [np.zeros(shape, np.float32) if item is None else item for item in items]
                extra[IMAGE_PRESENT] = present
            return self.predict_raw({INPUT_KEY: _stack_arrays(items), **extra})
        encoded = [(b"", "<no image>") if posts and item is None else encode_for_request(item, i)
                   for i, item in enumerate(items)]
        try:
            return self.predict_raw({INPUT_KEY: np.array([data for data, _ in encoded], dtype=object), **extra})
        except ServingError as error:
            if error.code != "INVALID_ARGUMENT":
                raise
            _raise_for_undecodable(encoded, error)
            raise

    def predict_raw(self, inputs, signature=None):
        """Send ``inputs`` (dict input name → array) to ``signature`` (default: the client's) as they are.

        For the two signatures of an affect_zoo export the inputs are checked first, so a float batch sent to the
        bytes signature (or bytes to ``predict_tensor``) fails here with a message saying which input and dtype
        were expected; the server's own answer to anything else surfaces as ``ServingError``.
        """
        signature = signature or self.signature
        inputs = _checked_inputs(signature, {name: np.asarray(value) for name, value in inputs.items()})
        if self.protocol == "grpc":
            return self._grpc(signature, inputs)
        return self._rest(signature, inputs)

    def _grpc(self, signature, inputs):
        if self._stub is None:
            # Batches of photos or float tensors exceed gRPC's 4 MB default message size.
            self._channel = grpc.insecure_channel(self.target, options=[("grpc.max_send_message_length", -1),
                                                                        ("grpc.max_receive_message_length", -1)])
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = signature
        if self.version is not None:
            request.model_spec.version.value = self.version
        for name, value in inputs.items():
            request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise self._error(e.code().name, e.details() or "") from None
        return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}

    def _rest(self, signature, inputs):
        body = {"signature_name": signature, "inputs": {name: _to_json(value) for name, value in inputs.items()}}
        answer = self._http("POST", ":predict", body)
        outputs = answer.get("outputs") if isinstance(answer, dict) else None
        if outputs is None:
            raise ServingError("INTERNAL", f"{self._url(':predict')} answered without 'outputs': {str(answer)[:200]}")
        if not isinstance(outputs, dict):
            # TF Serving drops the name when a signature has a single output.
            outputs = {self._single_output(signature): outputs}
        return {name: _from_json(value) for name, value in outputs.items()}

    def _single_output(self, signature):
        if signature not in self._single_outputs:
            metadata = self._http("GET", "/metadata")
            try:
                names = list(metadata["metadata"]["signature_def"]["signature_def"][signature]["outputs"])
            except (KeyError, TypeError):
                raise ServingError("INTERNAL", f"model metadata has no signature {signature!r}") from None
            self._single_outputs[signature] = names[0]
        return self._single_outputs[signature]

    def _url(self, suffix):
        version = f"/versions/{self.version}" if self.version is not None else ""
        return f"http://{self.target}/v1/models/{self.model_name}{version}{suffix}"

    def _http(self, method, suffix, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self._url(suffix), data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as e:
            raw = e.read().decode("utf-8", "replace")
            try:
                message = json.loads(raw).get("error", raw)
            except (ValueError, AttributeError):
                message = raw
            raise self._error(_HTTP_CODES.get(e.code, f"HTTP_{e.code}"), message, status=e.code) from None
        except TimeoutError:
            raise self._error("DEADLINE_EXCEEDED", "") from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                raise self._error("DEADLINE_EXCEEDED", "") from None
            raise self._error("UNAVAILABLE", str(e.reason)) from None
        except OSError as e:
            raise self._error("UNAVAILABLE", str(e)) from None
        try:
            return json.loads(text)
        except ValueError:
            raise ServingError("INTERNAL", f"{self._url(suffix)} answered with non-JSON: {text[:200]!r}") from None

    def _error(self, code, message, status=None):
        where = f"model {self.model_name!r} at {self.target} ({self.protocol})"
        if code == "DEADLINE_EXCEEDED":
            message = f"no answer from {where} within {self.timeout:g} s" + (f": {message}" if message else "")
        elif code == "UNAVAILABLE":
            message = f"cannot reach {where}: {message}"
        else:
            message = f"{where}: {message}"
        return ServingError(code, message, status=status)


def _as_batch(images):
    if isinstance(images, (str, bytes, bytearray, memoryview)) or hasattr(images, "__fspath__"):
        return [images]
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    return list(images)


def _stack_arrays(items):
    if not all(isinstance(item, np.ndarray) or hasattr(item, "__array__") for item in items):
        kinds = sorted({type(item).__name__ for item in items})
        raise TypeError(f"signature {TENSOR_SIGNATURE!r} takes decoded RGB arrays at the model's input size; got "
                        f"{', '.join(kinds)} (send paths or bytes to {BYTES_SIGNATURE!r})")
    arrays = [np.asarray(item, dtype=np.float32) for item in items]
    shapes = sorted({a.shape for a in arrays})
    if len(shapes) != 1 or len(shapes[0]) != 3 or shapes[0][-1] != 3:
        raise ValueError(f"signature {TENSOR_SIGNATURE!r} takes (H, W, 3) arrays all of one size (the model's "
                         f"input size); got shapes {shapes}")
    return np.stack(arrays)


def _checked_inputs(signature, inputs):
    """Inputs checked against the two affect_zoo signatures (floats for ``predict_tensor`` as float32); other
    signature names go to the server as they are."""
    if signature not in (BYTES_SIGNATURE, TENSOR_SIGNATURE):
        return inputs
    posts = set(inputs) - {INPUT_KEY}
    if INPUT_KEY not in inputs or posts and not posts <= set(POST_INPUTS):
        raise ValueError(f"signature {signature!r} takes one input named {INPUT_KEY!r} (an mmemo export also "
                         f"{', '.join(POST_INPUTS)}); got {sorted(inputs)}")
    value = inputs[INPUT_KEY]
    if signature == BYTES_SIGNATURE:
        is_bytes = value.dtype.kind == "S" or value.dtype == object and all(
            isinstance(v, bytes) for v in value.reshape(-1))
        if not is_bytes or value.ndim != 1:
            raise TypeError(f"signature {BYTES_SIGNATURE!r} input {INPUT_KEY!r} takes a 1-D batch of encoded image "
                            f"bytes (tf.string [None]); got a {value.dtype} array of shape {value.shape} (decoded "
                            f"float images go to signature {TENSOR_SIGNATURE!r})")
    elif value.dtype.kind not in "fiu" or value.ndim != 4 or value.shape[-1] != 3:
        raise TypeError(f"signature {TENSOR_SIGNATURE!r} input {INPUT_KEY!r} takes float32 images [batch, H, W, 3] "
                        f"in [0, 255]; got a {value.dtype} array of shape {value.shape} (encoded bytes go to "
                        f"signature {BYTES_SIGNATURE!r})")
    if value.shape[0] == 0:
        raise ValueError(f"signature {signature!r}: input {INPUT_KEY!r} is an empty batch")
    if signature == TENSOR_SIGNATURE:
        return {**inputs, INPUT_KEY: value.astype(np.float32, copy=False)}
    return inputs


def _post_inputs(count, text, tags):
    """An mmemo export's ``text`` [count] and ``tags`` [count, T] (rows padded with b"") as UTF-8 bytes."""
    def per_post(values, name):
        values = [None] * count if values is None else ([values] if isinstance(values, str) else list(values))
        if len(values) != count:
            raise ValueError(f"{name} has {len(values)} entries for {count} posts; give one per post (None where a "
                             f"post has no {name})")
        return values

    texts = [(t or "").encode("utf-8") for t in per_post(text, "text")]
    rows = [[g] if isinstance(g, str) else list(g or []) for g in per_post(tags, "tags")]
    width = max([1, *map(len, rows)])
    padded = np.full((count, width), b"", dtype=object)
    for i, row in enumerate(rows):
        padded[i, :len(row)] = [str(g).encode("utf-8") for g in row]
    return {"text": np.array(texts, dtype=object), "tags": padded}


def _raise_for_undecodable(encoded, error):
    """Raise a ServingError naming the item the server named (``images[i]``), else the first one the serving graph's
    decoder rejects here. An item over ``imageio.MAX_PIXELS`` is named without being decoded."""
    named = re.search(r"images\[(\d+)\]", error.message)
    if named and int(named.group(1)) < len(encoded):
        index = int(named.group(1))
        raise ServingError("INVALID_ARGUMENT", f"images[{index}] ({encoded[index][1]}) was refused: {error.message}",
                           status=error.status, index=index, item=encoded[index][1]) from error
    for index, (data, name) in enumerate(encoded):
        if not data:
            continue  # an mmemo post without an image
        tensor = tf.constant(data)
        if not bool(known_format(tensor)):
            reason = "not a JPEG, PNG, GIF, BMP or WebP file"
        else:
            try:
                height, width = image_size_from_header(tensor).numpy()
                if height * width <= imageio.MAX_PIXELS:
                    decode_image_bytes(tensor)
                    continue
                reason = f"{width}x{height} pixels, more than {imageio.MAX_PIXELS}"
            except tf.errors.InvalidArgumentError as e:
                reason = e.message.strip().splitlines()[0]
        raise ServingError("INVALID_ARGUMENT", f"images[{index}] ({name}) cannot be decoded: {reason} (server: "
                           f"{error.message})", status=error.status, index=index, item=name) from error


def _to_json(value):
    """An input array as TF Serving's JSON: bytes as {"b64": …} objects, numbers as (nested) lists."""
    if value.dtype == object or value.dtype.kind == "S":
        return _b64(value.tolist())
    return value.tolist()


def _b64(nested):
    if isinstance(nested, list):
        return [_b64(v) for v in nested]
    return {"b64": base64.b64encode(bytes(nested)).decode("ascii")}


def _from_json(value):
    array = np.asarray(value)
    return array.astype(np.float32) if array.dtype == np.float64 else array
