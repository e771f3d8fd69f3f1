"""int8 trunks: a float32 trunk model quantized with onnxruntime's static quantization.

Convolutions get int8 weights, one scale per output channel, and uint8 activations whose
ranges come from running the float32 model on calibration features (min/max). Everything
else (batch-norm affines, context pooling, concatenation, the pooling head in numpy) stays
float32. The QOperator form (QLinearConv) ran ~5 % faster here than QDQ pairs.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.errors import EngineError
from engines.graph import INPUT


@dataclass(frozen=True)
class Calibration:
    """Features to calibrate activation ranges with, and an identity for the cache key."""

    identity: str  # changes whenever the features would
    features: Callable[[], Iterable[np.ndarray]]  # (T, n_mels) clips after CMN
    default: bool = False  # the shipped set: yields to a set `audio quantize` recorded
    description: str = "the calibration set"  # what the features come from, for messages


def identity_of(files: list[Path]) -> str:
    """A short hash of calibration files' names and bytes."""
    sha = hashlib.sha256()
    for path in files:
        sha.update(path.name.encode())
        sha.update(path.read_bytes())
    return sha.hexdigest()[:12]


class _Reader:
    """onnxruntime's CalibrationDataReader interface over (T, F) clips."""

    def __init__(self, clips: Iterable[np.ndarray]):
        self._clips = iter(clips)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        clip = next(self._clips, None)
        if clip is None:
            return None
        self.count += 1
        return {INPUT: np.ascontiguousarray(clip, dtype=np.float32)[None]}


def quantize_trunk(float_model: Path, calibration: Calibration) -> bytes:
    """The int8 version of a float32 trunk model file, as serialized ONNX."""
    try:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise EngineError(f"int8 models need onnxruntime's quantization tools and the "
                          f"'onnx' package ({exc}); install them with: pip install onnx") from None
    with tempfile.TemporaryDirectory(prefix="audio-int8-") as tmp:
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        # graph optimisation and ONNX shape inference first, as onnxruntime advises; its
        # symbolic shape inference cannot follow the sequence reshapes, and is not needed
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        reader = _Reader(calibration.features())
        quantize_static(str(prepared), str(out), reader, quant_format=QuantFormat.QOperator,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                        calibrate_method=CalibrationMethod.MinMax)
        if not reader.count:
            raise EngineError("int8: the calibration set gave no features")
        return out.read_bytes()
