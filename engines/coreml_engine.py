"""Core ML engine: the model exported as an ML Program, run by Core ML on macOS.

On first use the model is exported (engines.coreml_export) to
`<model dir>/coreml/<sha256 of the weights, 16 hex>-<precision>.mlpackage`, or, when the model
directory is not writable or the weights are in memory, to the same name under
`$XDG_CACHE_HOME/audio-speaker/coreml/` (default `~/.cache/...`). The export goes to a scratch
directory first and is renamed into place, so a package at the final path is always whole.
Later engines reuse it.

Each clip is one prediction at its own length (the package's T is flexible): no padding, no
cutting, and a batch gives each clip exactly the embedding it gets alone.

Core ML runs only on Apple systems. Elsewhere the engine runs the same package with the
reference MIL interpreter (engines.mil_interpreter) and says so on stderr; that keeps the
exported program tested on Linux CI. Failures are EngineErrors: never a zero vector, never
a silent switch to another engine.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from audio_cli.config import ModelConfig
from audio_cli.errors import EngineError, InputAudioError
from audio_cli.weights import Weights

from .cache import cache_dirs
from .coreml_export import (
    EMBEDDING_OUTPUT,
    MAX_FRAMES,
    MEL_INPUT,
    META_MAX_FRAMES,
    META_WEIGHTS_SHA256,
    PACKAGE_SUFFIX,
    check_precision,
    export_coreml,
)
from .mil_interpreter import MILInterpreter, import_coremltools
from .resnet import min_frames

CACHE_KIND = "coreml"  # beside the weights, or in the user cache
INTERPRETER_NOTE = (
    "coreml: Core ML cannot run on this system; running the package with the reference MIL "
    "interpreter (numpy), not Core ML"
)


def core_ml_available() -> bool:
    """True where Core ML itself can run predictions (macOS)."""
    return sys.platform == "darwin"


def package_name(weights: Weights, precision: str) -> str:
    """File name of the cached package for these weights and precision."""
    return f"{weights.digest()[:16]}-{precision}{PACKAGE_SUFFIX}"


def _export_into(directory: Path, name: str, config: ModelConfig, weights: Weights,
                 precision: str, log: TextIO | None) -> Path | None:
    """Export to `directory/name` via a scratch dir; None if the directory is not writable."""
    target = directory / name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".export-", dir=directory))
    except OSError:
        return None
    if log is not None:
        print(f"coreml: exporting the model to {target} (first use)", file=log)
    try:
        staged = export_coreml(config, weights, scratch / name, precision)
        try:
            os.rename(staged, target)
        except OSError:
            if target.is_dir():  # another process finished the same export first
                return target
            return None
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def find_or_export_package(config: ModelConfig, weights: Weights, precision: str = "float32",
                           cache_dir: Path | None = None, log: TextIO | None = None) -> Path:
    """The cached `.mlpackage` for these weights and precision, exported if missing."""
    check_precision(precision)
    name = package_name(weights, precision)
    dirs = cache_dirs(weights, CACHE_KIND, cache_dir)
    for directory in dirs:
        if (directory / name).is_dir():
            return directory / name
    for directory in dirs:
        path = _export_into(directory, name, config, weights, precision, log)
        if path is not None:
            return path
    raise EngineError(
        "cannot write the Core ML package to "
        + " or ".join(str(d) for d in dirs)
        + "; make one of them writable or pass a cache directory"
    )


class CoreMLEngine:
    """The exported ML Program: Core ML `predict` on macOS, the MIL interpreter elsewhere."""

    name = "coreml"

    def __init__(self, config: ModelConfig, weights: Weights, cache_dir: Path | None = None,
                 precision: str = "float32", log: TextIO | None = None):
        log = sys.stderr if log is None else log
        self.config = config
        self.precision = check_precision(precision)
        self.package = find_or_export_package(config, weights, precision, cache_dir, log)
        self.min_frames = min_frames(config)
        if core_ml_available():  # pragma: no cover - macOS only
            self.backend = "coreml"
            self._model = self._load_core_ml()
            metadata = dict(self._model.user_defined_metadata)
        else:
            self.backend = "mil-interpreter"
            print(f"{INTERPRETER_NOTE}: {self.package}", file=log)
            try:
                self._model = MILInterpreter(self.package)
            except EngineError as exc:
                raise EngineError(f"{exc} (delete {self.package} to export it again)") from None
            metadata = self._model.user_defined_metadata
        if metadata.get(META_WEIGHTS_SHA256) != weights.digest():
            raise EngineError(
                f"{self.package} was exported from other weights than the model's; "
                "delete it to export it again"
            )
        self.max_frames = int(metadata.get(META_MAX_FRAMES, MAX_FRAMES))

    def _load_core_ml(self):  # pragma: no cover - macOS only
        ct = import_coremltools()
        try:
            return ct.models.MLModel(str(self.package), compute_units=ct.ComputeUnit.ALL)
        except Exception as exc:
            raise EngineError(
                f"Core ML cannot load {self.package} ({exc}); delete it to export it again"
            ) from None

    def _embed_one(self, clip: np.ndarray) -> np.ndarray:
        if clip.ndim != 2 or clip.shape[1] != self.config.n_mels:
            raise EngineError(f"expected (frames, {self.config.n_mels}) features, "
                              f"got shape {clip.shape}")
        frames = clip.shape[0]
        if frames < self.min_frames:
            raise InputAudioError(
                f"{frames} feature frames is too short for the network (at least "
                f"{self.min_frames} needed)"
            )
        if frames > self.max_frames:
            raise EngineError(
                f"{frames} frames is longer than the Core ML package accepts ({self.max_frames} "
                f"frames, {self.max_frames / 100:.0f} s); use --engine mlx for longer clips"
            )
        try:
            result = self._model.predict({MEL_INPUT: clip[None]})
        except EngineError:
            raise
        except Exception as exc:  # pragma: no cover - Core ML errors (macOS only)
            raise EngineError(f"Core ML prediction failed on {frames} frames ({exc})") from None
        if EMBEDDING_OUTPUT not in result:
            raise EngineError(f"the Core ML package gave no {EMBEDDING_OUTPUT!r} output")
        out = np.asarray(result[EMBEDDING_OUTPUT], dtype=np.float32).reshape(-1)
        if out.size != self.config.embedding_dim:
            raise EngineError(f"the Core ML package gave {out.size} values, expected "
                              f"{self.config.embedding_dim}")
        if not np.all(np.isfinite(out)):
            raise EngineError(f"the {self.backend} run gave a non-finite embedding")
        if not np.any(out):
            raise EngineError(f"the {self.backend} run gave a zero embedding")
        return out

    def embed_many(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """A list of (T_i, n_mels) clips of any lengths -> (N, dim), one call per clip."""
        if len(clips) == 0:
            return np.zeros((0, self.config.embedding_dim), dtype=np.float32)
        return np.stack([self._embed_one(np.asarray(c, dtype=np.float32)) for c in clips])

    def embed(self, features: np.ndarray) -> np.ndarray:
        """(B, T, n_mels) features after CMN -> (B, dim) float32 unit vectors."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 3:
            raise EngineError(f"expected (batch, frames, mel bins) features, got {features.shape}")
        return self.embed_many(list(features))
