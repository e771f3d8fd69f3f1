"""Core ML engine: the model exported as an ML Program, run by Core ML on macOS.

On first use the model is exported (engines.coreml_export) to
`<model dir>/coreml/<sha256 of the weights, 16 hex>-<precision>.mlpackage`, or, when the model
directory is not writable or the weights are in memory, to the same name under
`$XDG_CACHE_HOME/audio-speaker/coreml/` (default `~/.cache/...`). The export goes to a scratch
directory first and is renamed into place, so a package at the final path is always whole.
Later engines reuse it.

Each clip is one prediction at its own length (the package's T is flexible): no padding, no
cutting, and a batch gives each clip exactly the embedding it gets alone. The engine reads the
package's `frames` output and pools it with the shared head (engines.head), like every engine.

Core ML runs only on Apple systems. Elsewhere the engine runs the same package with the
reference MIL interpreter (engines.mil_interpreter) and says so on stderr; that keeps the
exported program tested on Linux CI. Failures are EngineErrors: never a zero vector, never
a silent switch to another engine.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

import numpy as np

from engines.coreml_export import (
    EXPORT_VERSION,
    MAX_FRAMES,
    META_MAX_FRAMES,
    META_WEIGHTS_SHA256,
    PACKAGE_SUFFIX,
    check_precision,
    export_coreml,
)
from engines.coreml_import import import_coremltools
from engines.coreml_program import FRAMES_OUTPUT, MEL_INPUT, VALID_INPUT
from engines.errors import EngineError, InputAudioError
from engines.files import cache_dirs, scratch_dir
from engines.graph import Graph
from engines.head import TrunkEngine
from engines.mil_interpreter import MILInterpreter
from engines.model import ModelConfig, Weights, build_graph

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
    return f"{weights.digest()[:16]}-{precision}-v{EXPORT_VERSION}{PACKAGE_SUFFIX}"


def _export_into(directory: Path, name: str, config: ModelConfig, weights: Weights, *,
                 precision: str, log: TextIO | None, graph: Graph | None) -> Path | None:
    """Export to `directory/name` via a scratch dir; None if the directory is not writable."""
    target = directory / name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with scratch_dir(directory, ".export-") as staging:
            if log is not None:
                print(f"coreml: exporting the model to {target} (first use)", file=log)
            os.rename(export_coreml(config, weights, staging / name, precision, graph), target)
    except OSError:  # not writable, or another process finished the same export first
        return target if target.is_dir() else None
    return target


def find_or_export_package(config: ModelConfig, weights: Weights, precision: str = "float32",
                           cache_dir: Path | None = None, log: TextIO | None = None,
                           graph: Graph | None = None) -> Path:
    """The cached `.mlpackage` for these weights and precision, exported if missing.

    `graph` (default: the config's network) is what gets exported; like the ONNX cache, the
    package name assumes one graph per weights file.
    """
    check_precision(precision)
    name = package_name(weights, precision)
    dirs = cache_dirs(weights.directory, CACHE_KIND, cache_dir)
    for directory in dirs:
        if (directory / name).is_dir():
            return directory / name
    for directory in dirs:
        path = _export_into(directory, name, config, weights, precision=precision, log=log,
                            graph=graph)
        if path is not None:
            return path
    raise EngineError(
        "cannot write the Core ML package to "
        + " or ".join(str(d) for d in dirs)
        + "; make one of them writable or pass a cache directory"
    )


class CoreMLEngine(TrunkEngine):
    """The exported ML Program: Core ML `predict` on macOS, the MIL interpreter elsewhere."""

    name = "coreml"

    def __init__(self, config: ModelConfig, weights: Weights, cache_dir: Path | None = None,
                 precision: str = "float32", log: TextIO | None = None,
                 graph: Graph | None = None):
        graph = build_graph(config) if graph is None else graph
        log = sys.stderr if log is None else log
        self.config = config
        check_precision(precision)
        if precision == "int8":
            self.name = "coreml-int8"  # as the onnx engine's int8 network is "onnx-int8"
        self.package = find_or_export_package(config, weights, precision, cache_dir, log, graph)
        super().__init__(graph, weights)
        self.min_frames = graph.min_frames()
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

    def _encode_one(self, clip: np.ndarray) -> np.ndarray:
        """(T, n_mels) features of one clip -> (T', D) frames, predicted at its own length."""
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
                f"frames); longer inputs are run in chunks by the library"
            )
        inputs = {MEL_INPUT: clip[None]}
        if self.graph.pad_to:  # zero-padded as the original ran it; frames come back cut
            width = -(-frames // self.graph.pad_to) * self.graph.pad_to
            inputs = {MEL_INPUT: np.pad(clip, [(0, width - frames), (0, 0)])[None],
                      VALID_INPUT: np.array([frames], dtype=np.int32)}
        try:
            result = self._model.predict(inputs)
        except EngineError:
            raise
        except Exception as exc:  # pragma: no cover - Core ML errors (macOS only)
            raise EngineError(f"Core ML prediction failed on {frames} frames ({exc})") from None
        if FRAMES_OUTPUT not in result:
            raise EngineError(f"the Core ML package gave no {FRAMES_OUTPUT!r} output")
        out = np.asarray(result[FRAMES_OUTPUT], dtype=np.float32)
        if out.ndim != 3 or out.shape[0] != 1:
            raise EngineError(f"the Core ML package gave frames of shape {out.shape}")
        if not np.all(np.isfinite(out)):
            raise EngineError(f"the {self.backend} run gave non-finite values")
        return out[0]

    def encode(self, features: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """(B, T, n_mels) -> (B, T', D): each clip run alone at its valid length, then stacked."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 3:
            raise EngineError(f"expected (batch, frames, mel bins) features, got {features.shape}")
        counts = [features.shape[1]] * len(features) if lengths is None else lengths
        encoded = [self._encode_one(clip[:n]) for clip, n in zip(features, counts, strict=True)]
        steps = max((e.shape[0] for e in encoded), default=0)
        width = encoded[0].shape[1] if encoded else 0
        out = np.zeros((len(encoded), steps, width), dtype=np.float32)
        for row, frames in zip(out, encoded, strict=True):
            row[: len(frames)] = frames
        return out
