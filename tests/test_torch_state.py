"""Reading torch.save state dicts without PyTorch and without running pickle code.

The files are crafted here the way torch.save writes them (legacy and zip layouts), with stand-in ``torch``
modules so that pickle names the same globals a real file names.
"""
import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np
import pytest

from affect_zoo.backbones import torch_state


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


class _Tensor:
    def __init__(self, storage, offset, shape, stride):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        return rebuild, (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict())


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def fake_torch(monkeypatch):
    """Stand-in torch / torch._utils modules holding the globals a state dict pickle refers to."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("a reader must never call the pickled function")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    for name in ("FloatStorage", "LongStorage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _pickle(obj, storage_class):
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=2)

    def persistent_id(item):
        if isinstance(item, _Storage):
            return ("storage", storage_class(item.array), item.key, "cpu", item.array.size)
        return None

    pickler.persistent_id = persistent_id
    pickler.dump(obj)
    return buffer.getvalue()


def _storage_class(torch):
    return lambda array: torch.LongStorage if array.dtype == np.int64 else torch.FloatStorage


def _state(arrays):
    """A state dict of _Tensor over one storage per array; the second array is a transposed (strided) view."""
    state, storages = collections.OrderedDict(), []
    for i, (name, array) in enumerate(arrays.items()):
        storage = _Storage(str(100 + i), np.ascontiguousarray(array).reshape(-1))
        storages.append(storage)
        stride = tuple(s // array.itemsize for s in np.ascontiguousarray(array).strides)
        state[name] = _Tensor(storage, 0, tuple(array.shape), stride)
    return state, storages


def write_legacy(path, state, storages, torch):
    with open(path, "wb") as f:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True}):
            pickle.dump(header, f, protocol=2)
        f.write(_pickle(state, _storage_class(torch)))
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", s.array.size))
            f.write(s.array.astype(s.array.dtype.newbyteorder("<")).tobytes())


def write_zip(path, state, storages, torch):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _pickle(state, _storage_class(torch)))
        for s in storages:
            archive.writestr(f"archive/data/{s.key}", s.array.tobytes())


ARRAYS = {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) / 7,
          "bn.running_var": np.linspace(0.5, 2, 5, dtype=np.float32),
          "bn.num_batches_tracked": np.array(17, dtype=np.int64)}


@pytest.mark.parametrize("writer", [write_legacy, write_zip])
def test_reads_both_layouts(tmp_path, fake_torch, writer):
    state, storages = _state(ARRAYS)
    path = tmp_path / "model.pth"
    writer(path, state, storages, fake_torch)
    loaded = torch_state.load_state_dict(path)
    assert list(loaded) == list(ARRAYS)
    for name, expected in ARRAYS.items():
        assert loaded[name].dtype == expected.dtype
        np.testing.assert_array_equal(loaded[name], expected)


def test_strided_and_offset_views(tmp_path, fake_torch):
    """A tensor that is a transposed view at an offset into a shared storage is rebuilt from its strides."""
    base = np.arange(30, dtype=np.float32)
    storage = _Storage("7", base)
    state = collections.OrderedDict(w=_Tensor(storage, 6, (3, 4), (1, 3)))  # columns of a 4x3 block at offset 6
    path = tmp_path / "view.pth"
    write_legacy(path, state, [storage], fake_torch)
    expected = base[6:18].reshape(4, 3).T
    np.testing.assert_array_equal(torch_state.load_state_dict(path)["w"], expected)


@pytest.mark.parametrize("writer", [write_legacy, write_zip])
def test_a_foreign_global_is_refused_and_never_called(tmp_path, fake_torch, writer):
    marker = tmp_path / "pwned"
    state, storages = _state({"w": np.ones(3, np.float32)})
    state["payload"] = _Evil(marker)
    path = tmp_path / "evil.pth"
    writer(path, state, storages, fake_torch)
    with pytest.raises(torch_state.UnsafePickleError) as error:
        torch_state.load_state_dict(path)
    assert "system" in str(error.value) and str(path) in str(error.value)
    assert not marker.exists()


def test_a_foreign_global_in_the_header_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil_header.pth"
    path.write_bytes(pickle.dumps(_Evil(marker), protocol=2))
    with pytest.raises(torch_state.UnsafePickleError):
        torch_state.load_state_dict(path)
    assert not marker.exists()


def test_truncated_and_foreign_files(tmp_path, fake_torch):
    state, storages = _state({"w": np.ones(64, np.float32)})
    path = tmp_path / "model.pth"
    write_legacy(path, state, storages, fake_torch)
    torn = tmp_path / "torn.pth"
    torn.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        torch_state.load_state_dict(torn)
    other = tmp_path / "numbers.pth"
    other.write_bytes(pickle.dumps(42, protocol=2))
    with pytest.raises(ValueError, match="not a PyTorch file"):
        torch_state.load_state_dict(other)
