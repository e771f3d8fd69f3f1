"""A model's weights, read only when an engine needs them, with a content hash for caches."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .files import hash_file
from .safetensors_io import load_safetensors


class Weights:
    """Tensors from a safetensors file (or given in memory), loaded on first use."""

    def __init__(self, path: Path | None = None, tensors: dict[str, np.ndarray] | None = None):
        if (path is None) == (tensors is None):
            raise ValueError("give exactly one of path or tensors")
        self.path = Path(path) if path is not None else None
        self._tensors = tensors
        self._digest: str | None = None

    @property
    def directory(self) -> Path | None:
        """The model directory holding the file, if any."""
        return self.path.parent if self.path is not None else None

    def tensors(self) -> dict[str, np.ndarray]:
        """Name -> array, read from disk on the first call."""
        if self._tensors is None:
            self._tensors = load_safetensors(self.path)
        return self._tensors

    def some(self, names: list[str]) -> dict[str, np.ndarray]:
        """Just the named tensors, without reading the rest of the file."""
        if self._tensors is not None:
            return {name: self._tensors[name] for name in names}
        return load_safetensors(self.path, names)

    def digest(self) -> str:
        """SHA-256 (hex) of the weights file, or of the in-memory tensors."""
        if self._digest is None:
            sha = hashlib.sha256()
            if self.path is not None:
                hash_file(sha, self.path)
            else:
                for name in sorted(self._tensors):
                    sha.update(name.encode())
                    sha.update(np.ascontiguousarray(self._tensors[name]).tobytes())
            self._digest = sha.hexdigest()
        return self._digest
