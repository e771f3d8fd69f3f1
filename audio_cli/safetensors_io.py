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


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Load every tensor of a safetensors file as a numpy array (little-endian)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{path}: cannot read weights ({exc.strerror or exc})") from None
    if len(blob) < 8:
        raise ModelError(f"{path}: not a safetensors file (too short)")
    (size,) = struct.unpack("<Q", blob[:8])
    if size > min(_MAX_HEADER, len(blob) - 8):
        raise ModelError(f"{path}: not a safetensors file (bad header size)")
    try:
        header = json.loads(blob[8 : 8 + size])
    except ValueError:
        raise ModelError(f"{path}: not a safetensors file (bad header)") from None
    data = memoryview(blob)[8 + size :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info.get("dtype"))
        if dtype is None:
            raise ModelError(f"{path}: tensor {name!r} has unsupported dtype {info.get('dtype')}")
        start, end = info["data_offsets"]
        shape = tuple(info["shape"])
        array = np.frombuffer(data[start:end], dtype=np.dtype(dtype).newbyteorder("<"))
        if array.size != int(np.prod(shape, dtype=np.int64)):
            raise ModelError(f"{path}: tensor {name!r} has the wrong byte count")
        tensors[name] = array.reshape(shape).astype(dtype, copy=True)
    return tensors


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
