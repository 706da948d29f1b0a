"""SavedModels for TF Serving: ``base_dir/<name>/<version>/`` with two signatures, warmup requests and a model
config listing every export.

Layout (TF Serving's): ``saved_model.pb``, ``variables/``, ``assets.extra/tf_serving_warmup_requests`` (replayed by
the server before it reports the version ready) and ``assets.extra/affect_zoo.json`` (tasks, input size and output
names, for clients and model cards; the server ignores it). A version is written to a hidden sibling directory and
renamed into place, so a server watching ``base_dir/<name>`` never loads a half-written version.

Signatures:
- ``serving_default``: ``images``, a batch of encoded images (tf.string, shape [None]: JPEG, PNG, BMP, GIF or
  still WebP, grey or with alpha, up to ``max_pixels`` pixels, read from the header before decoding), decoded
  (a JPEG's EXIF orientation applied) and resized inside the graph exactly as the training pipeline does;
- ``predict_tensor``: ``images``, float32 [None, H, W, 3] RGB in [0, 255] at the entry's input size.
Both return the named outputs of ``output_names``; ``decode_outputs`` turns them back into the dict keyed by task
that ``affect_zoo.predict`` and the Keras model return. The signatures are the model family's
(``Family.serving_functions``): an ``mmemo`` model's also take ``text`` and ``tags`` (``affect_zoo.families.mmemo``),
and ``affect_zoo.json`` lists every signature's inputs.

Built with a ``tf.Module`` and ``tf.saved_model.save`` rather than ``keras.export.ExportArchive``: the module tracks
exactly the ``tf.Variable`` objects the two signature graphs capture (the trainer's optimizer, balancer and metrics
stay out, and each variable is written once: ExportArchive, tried on the test model, also wrote every
``keras.Variable`` wrapper, 20 MB of variables instead of 9.6 MB), the bytes signature calls the tensor one so the
network's graph is stored once, and the traced graphs are checked for custom-gradient ops before anything is
written. Tracking the captured variables rather than the wrappers is what lets TF Serving load the export (see
``_serving_module``).
"""
import errno
import json
import os
import pathlib
import re
import shutil
import tempfile

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from affect_zoo import imageio
# The input graph is the image room's; known_format and decode_image_bytes stay importable from here (serving).
from affect_zoo.imageio.graph import decode_and_resize, decode_image_bytes, image_size_from_header, known_format  # noqa: F401,E501
from affect_zoo.families.base import (BYTES_SIGNATURE, IMAGES, TENSOR_SIGNATURE,  # noqa: F401 (serving's names)
                                     family_of_model, get_family)
from affect_zoo.tasks import GraphOps, as_tasks
from affect_zoo.tasks import output_names as tasks_output_names

INPUT_KEY = IMAGES
WARMUP_FILE = "tf_serving_warmup_requests"
INFO_FILE = "affect_zoo.json"
# Generated warmup images (height, width): small, odd and large, portrait and landscape, so the first real requests
# find the decode and resize kernels for several shapes already initialised.
WARMUP_SIZES = ((48, 64), (300, 240), (375, 500))
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def output_names(tasks):
    """Signature output name → what it holds, for every task (the order of the tasks, then of each task's outputs):
    ``affect_zoo.tasks.output_names``, the names ``predict`` returns too. Each task kind declares its outputs
    (``TaskKind.outputs``); for the built-in kinds:
    - classification / distribution ``T``: ``T_probs`` float32 (batch, K) and ``T_label`` int64 (batch,), the
      argmax; a distribution with an emotion circle also ``T_polarity`` (±1), ``T_angle`` (radians, (-π, π]) and
      ``T_intensity`` ([0, 1]), each float32 (batch,) (see ``affect_zoo.emotion.emotion_vector``);
    - regression with labels: one float32 (batch,) output per label, named by the label (``valence``,
      ``arousal``); without labels ``T`` float32 (batch, size);
    - binary ``T``: ``T_prob`` float32 (batch,);  multilabel ``T``: ``T_probs`` float32 (batch, K).
    Characters other than letters, digits and ``_`` in a name become ``_``; two outputs with the same name are
    refused, since a signature's outputs are keyed by name.
    """
    return tasks_output_names(tasks)


def named_outputs(predictions, tasks):
    """The network's dict keyed by task → the signature's named outputs (graph tensors; used inside the export)."""
    return get_family("multitask").named_outputs(as_tasks(tasks), predictions, GraphOps)


def decode_outputs(outputs, tasks):
    """Signature outputs (dict name → array, e.g. ``Client.predict``'s answer) → dict task → NumPy array shaped as
    the Keras model's output, which is what ``affect_zoo.predict`` returns under each task's name. ``tasks``: Task
    objects or the ``tasks`` list of an export's ``assets.extra/affect_zoo.json`` (``read_export_info``)."""
    decoded = {}
    for t in as_tasks(tasks):
        names = [o.name for o in t.handler.decoded_outputs(t, t.outputs())]
        missing = [n for n in names if n not in outputs]
        if missing:
            raise KeyError(f"task {t.name!r}: outputs {missing} are missing; got {sorted(outputs)}")
        decoded[t.name] = t.handler.decode(t, [np.asarray(outputs[n], dtype=np.float32) for n in names])
    return decoded


def export_saved_model(model, base_dir, version=1, name=None, overwrite=False, warmup=True, tasks=None,
                       max_pixels=imageio.MAX_PIXELS):
    """Write ``model`` as ``base_dir/<name>/<version>/`` for TF Serving; returns that directory (a Path).

    Args:
        model: a ``MultiTaskModel`` (its ``.network`` is exported) or any Keras model with one image input and dict
            outputs keyed by task name (then pass ``tasks``).
        base_dir: the server's model base directory (``--model_base_path`` or the config's parent).
        version: a non-negative int; TF Serving serves the highest (or the versions the config names).
        name: the model's name in URLs and requests; defaults to ``model.name``.
        overwrite: replace an existing version directory; without it an existing one is refused, also when it
            appears while this export is being written (another export of the same version): one of two racing
            exports is kept, the other raises FileExistsError.
        warmup: True writes warmup requests built from generated JPEGs, False none, or a list of images (paths,
            bytes or RGB arrays) to send instead.
        tasks: the model's tasks when ``model`` has no ``.tasks``.
        max_pixels: the bytes signature refuses an image whose header declares more pixels (INVALID_ARGUMENT
            naming ``images[i]``) before decoding it: a small PNG can declare 15000×15000. The default is
            ``predict``'s limit, ``imageio.MAX_PIXELS``; None removes the limit. Recorded in ``affect_zoo.json``.
    The network is called with ``training=False``, so the graph holds no custom-gradient op (an AFI layer adds its
    recalibration only in training); the export is refused if one is found anyway.
    """
    network = getattr(model, "network", model)
    tasks = as_tasks(tasks if tasks is not None else _require_tasks(model))
    name = model.name if name is None else name
    if not isinstance(name, str) or not _NAME.match(name) or name in (".", ".."):
        raise ValueError(f"model name {name!r} must start with a letter or digit and use only letters, digits, "
                         "'_', '.' and '-' (it becomes a directory and part of request URLs)")
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise ValueError(f"version must be a non-negative int (TF Serving's version directories), got {version!r}")
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer))
                                   or max_pixels < 1):
        raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
    max_pixels = None if max_pixels is None else int(max_pixels)
    family = family_of_model(model)
    size = family.image_size(network)
    _check_outputs(network, tasks)
    outputs = family.output_names(tasks)  # refuses clashing names before the slow part
    model_dir = pathlib.Path(base_dir) / name
    target = model_dir / str(int(version))
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists: version {int(version)} of {name!r} is already exported; pass "
                              "overwrite=True (CLI: --overwrite) to replace it or choose another version")
    requests = _warmup_requests(name, size, warmup, max_pixels, family)
    module, signatures = _serving_module(model, family, tasks, size, max_pixels)
    for signature, function in signatures.items():
        ops = custom_gradient_ops(function.graph.as_graph_def())
        if ops:
            raise RuntimeError(f"signature {signature!r} holds custom-gradient ops {ops[:5]}: a layer of "
                               f"{network.name!r} adds one with training=False; it cannot be served")
    model_dir.mkdir(parents=True, exist_ok=True)
    # TF Serving only loads directories whose names are integers: a hidden temporary one is invisible to it.
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{int(version)}.partial-", dir=model_dir))
    try:
        tf.saved_model.save(module, str(staging), signatures=signatures)
        extra = staging / "assets.extra"
        extra.mkdir()
        if requests:
            with tf.io.TFRecordWriter(str(extra / WARMUP_FILE)) as writer:
                for log in requests:
                    writer.write(log.SerializeToString())
        info = {"name": name, "version": int(version), "input_size": list(size), "max_pixels": max_pixels,
                "tasks": [t.get_config() for t in tasks], "outputs": outputs,
                "signatures": family.signature_inputs(size)}
        (extra / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        _move_into_place(staging, target, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _require_tasks(model):
    if not hasattr(model, "tasks"):
        raise ValueError(f"model {model.name!r} has no .tasks: export a MultiTaskModel or pass tasks=[...]")
    return model.tasks


def _check_outputs(network, tasks):
    outputs = network.output if isinstance(network.output, dict) else {}
    missing = [t.name for t in tasks if t.name not in outputs]
    if missing:
        raise ValueError(f"model {network.name!r} has no output for task(s) {missing}: it must output a dict keyed "
                         f"by task name; its outputs: {sorted(outputs) or type(network.output).__name__}")


def _serving_module(model, family, tasks, size, max_pixels):
    """A tf.Module holding the variables (and lookup tables) the signatures capture, and the signature functions
    (the family's: ``Family.serving_functions``).

    The module tracks the ``tf.Variable`` objects the traced graphs capture, not the network's ``keras.Variable``
    wrappers: saved through the wrappers, a SavedModel loads in TF 2 Python but not in a TF 1 session, which is how
    TF Serving's C++ loader and ``saved_model_cli run`` read it ("Could not find variable …": the checkpoint restores
    a copy, not the variable the graph reads). The functions are not attributes of the module: a loaded SavedModel
    reaches them through ``.signatures``, and keeping them off the object graph stores each once.
    """
    signatures, trackables = family.serving_functions(model, tasks, size, max_pixels)
    captured = {}
    for function in signatures.values():
        captured.update((id(v), v) for v in function.variables)
    module = tf.Module(name="affect_zoo_serving")
    module.model_variables = list(captured.values())
    module.resources = list(trackables)
    return module, signatures


def custom_gradient_ops(graph_def):
    """Names of the nodes of a GraphDef (its function library included) marked as custom-gradient ops."""
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    return [n.name for n in nodes if b"CustomGradient" in n.attr["_gradient_op_type"].s]


def _move_into_place(staging, target, overwrite):
    """Rename the finished export to its version directory, so the directory TF Serving sees is always complete.

    Without ``overwrite`` the rename itself is the check: renaming a directory onto a non-empty one fails (POSIX),
    so when another export of the same version finished first, this one raises FileExistsError instead of
    replacing it. With ``overwrite`` an old version is moved aside first and removed afterwards."""
    if overwrite and target.exists():
        old = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.replaced-", dir=target.parent))
        target.rename(old / target.name)
        staging.rename(target)
        shutil.rmtree(old)
        return
    try:
        staging.rename(target)
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
        raise FileExistsError(f"{target} appeared while this export was being written (another export of version "
                              f"{target.name}?); it was kept and this export discarded") from None


def encode_for_request(item, index=0):
    """An image for the bytes signature: encoded bytes (paths read, arrays JPEG-encoded) and a display name.

    Arrays are (H, W, 3) RGB, (H, W, 4) RGBA or (H, W) grey, numbers in [0, 255], brought to RGB by the image
    room's rule (``imageio.to_rgb_array``: alpha composited on white) before encoding. Encoded images are sent as
    they are (the graph applies a JPEG's EXIF orientation); a path that is not a regular file is refused unopened.
    """
    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        try:
            return imageio.read_file(path), path
        except imageio.ImageDecodeError as e:
            raise ValueError(f"images[{index}] ({path}): {e.reason}") from e
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item), "<bytes>"
    if isinstance(item, np.ndarray) or hasattr(item, "__array__"):
        pixels = imageio.check_array(np.asarray(item), f"images[{index}]", max_pixels=None)
        return imageio.encode_jpeg(imageio.to_rgb_array(pixels)), "<array>"
    raise TypeError(f"images[{index}]: expected a path, encoded bytes or an RGB array, got {type(item).__name__}")


def _warmup_requests(name, size, warmup, max_pixels=imageio.MAX_PIXELS, family=None):
    """PredictionLog protos for ``assets.extra/tf_serving_warmup_requests``: one bytes request per image (each a
    different size) plus one ``predict_tensor`` request, so both signatures are traced before traffic arrives
    (the family's inputs: ``Family.warmup_inputs``)."""
    if warmup is False or warmup is None:
        return []
    if warmup is True:
        images = [imageio.encode_jpeg(_warmup_image(h, w)) for h, w in WARMUP_SIZES]
    else:
        if isinstance(warmup, (str, bytes, os.PathLike, np.ndarray)):
            warmup = [warmup]
        images = [encode_for_request(item, i)[0] for i, item in enumerate(warmup)]
        if not images:
            raise ValueError("warmup images: got an empty list; pass warmup=True for generated ones or False")
        for i, data in enumerate(images):
            try:
                height, width = image_size_from_header(tf.constant(data)).numpy()
                if max_pixels is not None and height * width > max_pixels:
                    raise ValueError(f"warmup images[{i}] cannot be decoded by the serving graph: {width}x{height} "
                                     f"pixels, more than max_pixels={max_pixels}")
                decode_image_bytes(tf.constant(data))
            except tf.errors.InvalidArgumentError as e:
                raise ValueError(f"warmup images[{i}] cannot be decoded by the serving graph: {e.message}") from e

    def log(signature, inputs):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.model_spec.signature_name = signature
        for key, value in inputs.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
        return prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))

    family = family or get_family("multitask")
    return [log(signature, inputs) for signature, inputs in family.warmup_inputs(images, size)]


def _warmup_image(height, width):
    """A smooth colour gradient: deterministic, and compresses like a photo rather than noise."""
    y = np.linspace(0, 255, height)[:, None]
    x = np.linspace(0, 255, width)[None, :]
    return np.stack([np.broadcast_to(y, (height, width)), np.broadcast_to(x, (height, width)),
                     (y + x) / 2], axis=-1).astype(np.uint8)


def read_warmup_requests(version_dir):
    """The PredictionLog protos of an export's warmup file (empty when it has none)."""
    path = pathlib.Path(version_dir) / "assets.extra" / WARMUP_FILE
    if not path.exists():
        return []
    return [prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for record in tf.data.TFRecordDataset(str(path))]


def read_export_info(version_dir):
    """``assets.extra/affect_zoo.json`` of an export: name, version, input_size, tasks, outputs, signatures."""
    path = pathlib.Path(version_dir) / "assets.extra" / INFO_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {version_dir} is not an affect_zoo export")
    return json.loads(path.read_text())


def exported_models(out_dir):
    """{model name: sorted versions} of the exports under ``out_dir`` (``<name>/<int>/saved_model.pb``)."""
    found = {}
    out_dir = pathlib.Path(out_dir)
    if not out_dir.is_dir():
        raise FileNotFoundError(f"{out_dir} is not a directory")
    for model_dir in sorted(p for p in out_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        versions = sorted(int(v.name) for v in model_dir.iterdir()
                          if v.name.isdigit() and (v / "saved_model.pb").is_file())
        if versions:
            found[model_dir.name] = versions
    return found


POLICIES = ("all", "latest", "specific")


def write_model_config(out_dir, base_path=None, policy="all"):
    """Write ``out_dir/models.config`` (TF Serving's ``model_config_list`` text proto) for every export found in
    ``out_dir``; returns its path.

    ``base_path`` is the directory holding the exports *as the server sees it* (absolute: TF Serving resolves
    relative paths against its own working directory): ``out_dir`` itself by default, ``"/models"`` for the
    ``docker run -v OUT_DIR:/models`` deployment. ``policy``: ``"all"`` serves every version present, including
    ones exported later; ``"latest"`` only the highest; ``"specific"`` pins the versions present now.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    out_dir = pathlib.Path(out_dir)
    models = exported_models(out_dir)
    if not models:
        raise FileNotFoundError(f"no exported models under {out_dir} (expected {out_dir}/<name>/<version>/"
                                "saved_model.pb; run `affect-zoo export NAME OUT_DIR` first)")
    root = str(out_dir.resolve()) if base_path is None else str(base_path).rstrip("/")
    if not root.startswith("/"):
        raise ValueError(f"base_path must be absolute (TF Serving resolves relative paths against its own working "
                         f"directory), got {base_path!r}")
    config = model_server_config_pb2.ModelServerConfig()
    for model_name, versions in models.items():
        entry = config.model_config_list.config.add(name=model_name, base_path=f"{root}/{model_name}",
                                                   model_platform="tensorflow")
        chosen = entry.model_version_policy
        if policy == "all":
            chosen.all.SetInParent()
        elif policy == "latest":
            chosen.latest.num_versions = 1
        else:
            chosen.specific.versions.extend(versions)
    path = out_dir / "models.config"
    path.write_text(text_format.MessageToString(config))
    return path
