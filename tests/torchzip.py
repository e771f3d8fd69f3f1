"""Write `torch.save`-format zip archives without torch, for testing the torch-free reader.

The pickle is made with protocol 2 (as `torch.save` does). numpy arrays in the saved object
become tensors: a `REDUCE` of `torch._utils._rebuild_tensor_v2` whose first argument is a
persistent id `('storage', torch.<Type>Storage, key, 'cpu', numel)`, and whose storage bytes go
to `<archive>/data/<key>`. Python's pickler insists that a global it writes can be imported, so
the torch globals are written as local placeholders and renamed in the pickle bytes afterwards
(protocol 2 spells globals as text lines, and memo indices do not depend on byte offsets).
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class FloatStorage:
    """Placeholder for `torch.FloatStorage`."""


class DoubleStorage:
    """Placeholder for `torch.DoubleStorage`."""


class HalfStorage:
    """Placeholder for `torch.HalfStorage`."""


class LongStorage:
    """Placeholder for `torch.LongStorage`."""


class IntStorage:
    """Placeholder for `torch.IntStorage`."""


class ByteStorage:
    """Placeholder for `torch.ByteStorage`."""


class BoolStorage:
    """Placeholder for `torch.BoolStorage`."""


def _rebuild_tensor_v2(*args: Any) -> None:
    """Placeholder for `torch._utils._rebuild_tensor_v2` (renamed in the pickle bytes)."""
    raise RuntimeError("placeholder only")


_STORAGE_CLASSES = {
    np.dtype(np.float32): FloatStorage,
    np.dtype(np.float64): DoubleStorage,
    np.dtype(np.float16): HalfStorage,
    np.dtype(np.int64): LongStorage,
    np.dtype(np.int32): IntStorage,
    np.dtype(np.uint8): ByteStorage,
    np.dtype(np.bool_): BoolStorage,
}
_RENAMES = {
    f"{__name__}\n{c.__name__}\n": f"torch\n{c.__name__}\n" for c in _STORAGE_CLASSES.values()
}
_RENAMES[f"{__name__}\n_rebuild_tensor_v2\n"] = "torch._utils\n_rebuild_tensor_v2\n"


@dataclass(frozen=True, eq=False)
class TensorView:
    """A tensor given by its storage (a 1-D array), offset, size and stride in elements."""

    storage: np.ndarray
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


@dataclass(frozen=True, eq=False)
class _StorageRef:
    """One storage of the archive, pickled as a persistent id."""

    key: str
    array: np.ndarray


class _TorchPickler(pickle.Pickler):
    """Pickler that writes numpy arrays and TensorViews the way `torch.save` writes tensors."""

    def __init__(self, file: io.BytesIO) -> None:
        """Pickle into `file` with protocol 2; storages are collected in `self.storages`."""
        super().__init__(file, protocol=2)
        self.storages: dict[int, _StorageRef] = {}

    def _storage(self, array: np.ndarray) -> _StorageRef:
        """The storage record of a 1-D array (one per distinct array object)."""
        if id(array) not in self.storages:
            self.storages[id(array)] = _StorageRef(str(len(self.storages)), array)
        return self.storages[id(array)]

    def persistent_id(self, obj: Any) -> Any:
        """Storages become `('storage', class, key, 'cpu', numel)`."""
        if isinstance(obj, _StorageRef):
            return ("storage", _STORAGE_CLASSES[obj.array.dtype], obj.key, "cpu", obj.array.size)
        return None

    def reducer_override(self, obj: Any) -> Any:
        """Arrays and TensorViews become `_rebuild_tensor_v2(storage, offset, size, ...)`."""
        if isinstance(obj, np.ndarray):
            dense = np.array(obj, order="C")  # (ascontiguousarray would make 0-d arrays 1-d)
            strides = tuple(s // dense.itemsize for s in dense.strides)
            obj = TensorView(dense.reshape(-1), 0, tuple(dense.shape), strides)
        if isinstance(obj, TensorView):
            args = (self._storage(obj.storage), obj.offset, obj.size, obj.stride)
            return _rebuild_tensor_v2, (*args, False, collections.OrderedDict())
        return NotImplemented


def torch_pickle(obj: Any) -> tuple[bytes, dict[str, np.ndarray]]:
    """The `data.pkl` bytes for `obj` and its storages by key."""
    buffer = io.BytesIO()
    pickler = _TorchPickler(buffer)
    pickler.dump(obj)
    data = buffer.getvalue()
    for old, new in _RENAMES.items():
        data = data.replace(b"c" + old.encode(), b"c" + new.encode())
    return data, {ref.key: ref.array for ref in pickler.storages.values()}


def write_torch_zip(
    path: Path, obj: Any, archive: str = "archive", data_pkl: bytes | None = None
) -> Path:
    """Write `obj` as a `torch.save` zip archive (or `data_pkl` verbatim, with no storages)."""
    storages: dict[str, np.ndarray] = {}
    if data_pkl is None:
        data_pkl, storages = torch_pickle(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{archive}/data.pkl", data_pkl)
        zf.writestr(f"{archive}/byteorder", "little")
        for key, array in storages.items():
            raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
            zf.writestr(f"{archive}/data/{key}", raw)
        zf.writestr(f"{archive}/version", "3\n")
    return Path(path)
