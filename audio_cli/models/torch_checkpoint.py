"""Read `torch.save` zip archives with numpy alone, without importing or running their code.

A `torch.save` file is a zip archive holding `<name>/data.pkl` (a pickle of the saved object)
and one raw little-endian file `<name>/data/<key>` per tensor storage. The pickle names the
functions and classes needed to rebuild the object; here every such name is resolved by a
fixed table of local, harmless stand-ins, so a checkpoint can never make this reader import
a module or call a function of its choosing. Tensors come back as numpy arrays; anything
else the pickle mentions (pyannote task specifications, Lightning objects, version strings)
comes back as an inert `StubObject` that only records its arguments.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import ModelError

# Keys under which checkpoints commonly nest their tensor dict, most specific first.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "state")

_DATA_PKL = re.compile(r"^([^/]+/)data\.pkl$")
_READ_ERRORS = (
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    struct.error,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
    RecursionError,
    NotImplementedError,
    MemoryError,
)


@dataclass(frozen=True, slots=True)
class StorageType:
    """Marker for a torch storage class: the numpy dtype its raw bytes hold."""

    name: str
    dtype: str  # numpy dtype name, or "bfloat16" (widened to float32 on read)


_STORAGE_DTYPES = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
    "UntypedStorage": "uint8",
}


class StubObject:
    """Inert stand-in for a class the checkpoint names but this reader will not import."""

    def __new__(cls, *args: Any, **kwargs: Any) -> StubObject:
        """Create an instance that remembers the arguments it was built with."""
        inst = object.__new__(cls)
        inst.__dict__["args"] = args
        inst.__dict__["kwargs"] = kwargs
        return inst

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Accept any arguments (enum lookups, dataclass fields, ...)."""
        if args or kwargs:
            self.__dict__["args"] = args
            self.__dict__["kwargs"] = kwargs

    def __setstate__(self, state: Any) -> None:
        """Keep whatever state the pickle restores, without interpreting it."""
        self.__dict__["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        """Keep the items of a stubbed dict subclass (e.g. Lightning's AttributeDict)."""
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:
        """Keep the elements of a stubbed list subclass."""
        self.__dict__.setdefault("elements", []).append(value)

    def extend(self, values: Any) -> None:
        """Keep the elements of a stubbed list subclass."""
        for value in values:
            self.append(value)

    def __call__(self, *args: Any, **kwargs: Any) -> StubObject:
        """Calling a stub instance yields another stub."""
        return StubObject(*args, **kwargs)

    def __repr__(self) -> str:
        """Show the stubbed class name and its arguments."""
        return f"<stub {type(self).__qualname__}{self.__dict__.get('args', ())}>"


def _stub_class(module: str, name: str) -> type:
    """Make a fresh stub class that carries the pickled class's name."""
    safe = re.sub(r"\W", "_", name) or "Unknown"
    return type(safe, (StubObject,), {"__module__": f"stub.{module}", "__qualname__": safe})


_SAFE_TYPES: dict[tuple[str, str], type] = {("collections", "OrderedDict"): collections.OrderedDict}
for _module in ("builtins", "__builtin__"):  # protocol-2 pickles from Python 2 say __builtin__
    _SAFE_TYPES.update({(_module, t.__name__): t for t in (set, frozenset, slice, complex)})
_MAX_ELEMENTS = 2**31  # refuse absurd tensor sizes rather than exhaust memory


class _CheckpointUnpickler(pickle.Unpickler):
    """Unpickler whose globals come only from a fixed table of harmless stand-ins."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, order: str) -> None:
        """Read `data` (the pickle), fetching storages from `<prefix>data/<key>` in `archive`."""
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._order = order
        self._storages: dict[str, np.ndarray] = {}
        self._stubs: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        """Resolve a pickled global to a local stand-in; never import anything."""
        if (module, name) in _SAFE_TYPES:
            return _SAFE_TYPES[(module, name)]
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return self._rebuild_tensor
        if module == "torch._utils" and name.startswith("_rebuild_parameter"):
            return self._rebuild_parameter
        if module == "torch._tensor" and name == "_rebuild_from_type_v2":
            return self._rebuild_from_type
        if module == "torch" and name in _STORAGE_DTYPES:
            return StorageType(name, _STORAGE_DTYPES[name])
        if module == "copyreg" and name in ("_reconstructor", "__newobj__", "__newobj_ex__"):
            return self._new_object
        if module == "_codecs" and name == "encode":
            return self._codecs_encode
        if (module, name) not in self._stubs:
            self._stubs[(module, name)] = _stub_class(module, name)
        return self._stubs[(module, name)]

    def persistent_load(self, pid: Any) -> np.ndarray:
        """Resolve `('storage', type, key, location, numel)` to the raw data of that storage."""
        if not isinstance(pid, tuple) or len(pid) < 3 or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r:.80}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r:.80}")
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            self._storages[key] = _decode_storage(raw, storage_type.dtype, self._order)
        return self._storages[key]

    def _rebuild_tensor(
        self, storage: Any, offset: int, size: Any, stride: Any, *_rest: Any
    ) -> np.ndarray:
        """Stand-in for `torch._utils._rebuild_tensor_v2`: a strided copy out of the storage."""
        return _strided_copy(storage, offset, tuple(size), tuple(stride))

    def _rebuild_parameter(self, data: Any, *_rest: Any) -> Any:
        """Stand-in for `torch._utils._rebuild_parameter`: a parameter is its tensor."""
        return data

    def _rebuild_from_type(self, func: Any, _new_type: Any, args: Any, _state: Any) -> Any:
        """Stand-in for `torch._tensor._rebuild_from_type_v2` (func is itself a stand-in)."""
        return func(*args)

    def _codecs_encode(self, text: str, encoding: str = "latin-1") -> bytes:
        """`_codecs.encode` as protocol-2 pickles of `bytes` use it (latin-1 only)."""
        if encoding.lower().replace("_", "-") not in ("latin-1", "latin1", "iso-8859-1"):
            raise pickle.UnpicklingError(f"refusing codec {encoding!r}")
        return text.encode("latin-1")

    def _new_object(self, cls: Any, *args: Any) -> Any:
        """Stand-in for copyreg's object constructors: stubs and safe types only."""
        if isinstance(cls, type) and issubclass(cls, StubObject):
            return cls.__new__(cls, *args)
        if cls in _SAFE_TYPES.values():
            return cls()
        return StubObject(cls, *args)


def _decode_storage(raw: bytes, dtype: str, order: str) -> np.ndarray:
    """Turn the raw bytes of one storage into a flat numpy array (native byte order)."""
    if dtype == "bfloat16":
        halves = np.frombuffer(raw, dtype=np.dtype("u2").newbyteorder(order))
        return (halves.astype(np.uint32) << 16).view(np.float32)
    kind = np.dtype(dtype).newbyteorder(order)
    if len(raw) % kind.itemsize:
        raise ValueError(f"storage of {len(raw)} bytes is not a whole number of {dtype}")
    return np.frombuffer(raw, dtype=kind).astype(np.dtype(dtype), copy=True)


def _strided_copy(storage: Any, offset: int, size: tuple, stride: tuple) -> np.ndarray:
    """Copy out the tensor of shape `size` at `storage[offset + sum(i_k * stride_k)]`."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise pickle.UnpicklingError("tensor does not refer to a storage")
    if len(size) != len(stride) or min((offset, *size, *stride), default=0) < 0:
        raise pickle.UnpicklingError(f"bad tensor geometry {size} / {stride} + {offset}")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    if np.prod(size, dtype=np.float64) > _MAX_ELEMENTS:
        raise pickle.UnpicklingError(f"tensor of shape {size} is too large")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if last >= storage.size:
        raise pickle.UnpicklingError(f"tensor {size} reaches past its storage of {storage.size}")
    itemsize = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * itemsize for s in stride), writeable=False
    )
    return np.array(view, copy=True)


def _find_pickle(archive: zipfile.ZipFile) -> str:
    """The archive-name prefix (`"name/"`) of the single `name/data.pkl` record."""
    prefixes = [m.group(1) for m in map(_DATA_PKL.match, archive.namelist()) if m]
    if len(prefixes) != 1:
        raise ValueError("no single <name>/data.pkl record (not a torch.save archive)")
    return prefixes[0]


def _byte_order(archive: zipfile.ZipFile, prefix: str) -> str:
    """`"<"` or `">"` from the archive's `byteorder` record (absent means little-endian)."""
    try:
        text = archive.read(f"{prefix}byteorder").decode("ascii").strip()
    except KeyError:
        return "<"
    if text not in ("little", "big"):
        raise ValueError(f"unknown byteorder {text!r}")
    return "<" if text == "little" else ">"


def load_torch_checkpoint(path: Path) -> Any:
    """Unpickle a `torch.save` zip archive: tensors become numpy arrays, other classes stubs."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            prefix = _find_pickle(archive)
            order = _byte_order(archive, prefix)
            data = archive.read(f"{prefix}data.pkl")
            return _CheckpointUnpickler(data, archive, prefix, order).load()
    except FileNotFoundError:
        raise ModelError(f"{path}: checkpoint not found") from None
    except IsADirectoryError:
        raise ModelError(f"{path}: is a directory, not a checkpoint file") from None
    except OSError as exc:
        raise ModelError(f"{path}: cannot read checkpoint ({exc.strerror or exc})") from None
    except zipfile.BadZipFile:
        raise ModelError(f"{path}: not a torch.save zip archive") from None
    except _READ_ERRORS as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{path}: corrupt or unsupported checkpoint ({reason})") from None


def _is_tensor_dict(obj: Any) -> bool:
    """True for a non-empty dict of name -> numpy array."""
    return (
        isinstance(obj, dict)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in obj.items())
    )


def find_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, np.ndarray]:
    """The dict of tensors inside a loaded checkpoint (the object itself, or a nested dict)."""
    queue, seen = [obj], set()
    while queue:
        node = queue.pop(0)
        if id(node) in seen:
            continue
        seen.add(id(node))
        if _is_tensor_dict(node):
            return dict(node)
        if isinstance(node, StubObject):  # e.g. a state_dict kept in a stubbed dict subclass
            queue.append(node.__dict__.get("items", {}))
        elif isinstance(node, dict):
            preferred = [node[k] for k in STATE_DICT_KEYS if k in node]
            queue.extend(
                preferred + [v for v in node.values() if isinstance(v, (dict, StubObject))]
            )
    raise ModelError(f"{source}: no dict of tensors found (expected a state_dict)")


def read_torch_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Read the tensors (name -> numpy array) of a `torch.save` checkpoint, torch-free."""
    return find_state_dict(load_torch_checkpoint(path), source=str(path))
