"""Read and write `.safetensors` files with numpy alone (the format is a JSON header + raw data)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from .errors import ModelError

_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


def _read_header(handle, path: Path, file_size: int) -> tuple[dict, int]:
    """(header dict, offset of the data section) of an open safetensors file."""
    prefix = handle.read(8)
    if len(prefix) < 8:
        raise ModelError(f"{path}: not a safetensors file (too short)")
    (size,) = struct.unpack("<Q", prefix)
    if size > min(_MAX_HEADER, file_size - 8):
        raise ModelError(f"{path}: not a safetensors file (bad header size)")
    try:
        header = json.loads(handle.read(size))
    except ValueError:
        raise ModelError(f"{path}: not a safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file (bad header)")
    return header, 8 + size


def _tensor(handle, path: Path, name: str, info: dict, data_start: int) -> np.ndarray:
    dtype = _DTYPES.get(info.get("dtype"))
    if dtype is None:
        raise ModelError(f"{path}: tensor {name!r} has unsupported dtype {info.get('dtype')}")
    start, end = info["data_offsets"]
    shape = tuple(info["shape"])
    handle.seek(data_start + start)
    raw = handle.read(end - start)
    if len(raw) != end - start or (end - start) != int(np.prod(shape, dtype=np.int64)) * \
            np.dtype(dtype).itemsize:
        raise ModelError(f"{path}: tensor {name!r} has the wrong byte count")
    array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    return array.reshape(shape).astype(dtype, copy=True)


def load_safetensors(path: Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Load the tensors of a safetensors file (all, or just `names`) as numpy arrays."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            header, data_start = _read_header(handle, path, path.stat().st_size)
            wanted = [n for n in header if n != "__metadata__"] if names is None else names
            missing = [n for n in wanted if n not in header]
            if missing:
                raise ModelError(f"{path}: no tensor {missing[0]!r} in the weights")
            return {n: _tensor(handle, path, n, header[n], data_start) for n in wanted}
    except OSError as exc:
        raise ModelError(f"{path}: cannot read weights ({exc.strerror or exc})") from None


def save_safetensors(
    path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Write tensors (in the given order) to a safetensors file."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        dtype = _NAMES.get(array.dtype)
        if dtype is None:
            raise ValueError(f"tensor {name!r}: unsupported dtype {array.dtype}")
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for raw in chunks:
            handle.write(raw)
