"""Inference engines behind one interface; each imports its framework only when created."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

from engines.errors import ModelError, UsageError
from engines.graph import Graph
from engines.head import Engine
from engines.model import ModelConfig, Weights, build_graph, compiled_models

ENGINE_NAMES = ("auto", "onnx", "mlx", "coreml")


def is_apple_silicon() -> bool:
    """True on macOS on an arm64 processor."""
    return sys.platform == "darwin" and platform.machine() == "arm64"


def resolve_engine_name(name: str) -> str:
    """Map `auto` to the engine that suits this machine (MLX on Apple Silicon, else ONNX)."""
    if name not in ENGINE_NAMES:
        raise UsageError(f"unknown engine {name!r}; choose one of: {', '.join(ENGINE_NAMES)}")
    if name == "auto":
        return "mlx" if is_apple_silicon() else "onnx"
    return name


def create_engine(name: str, config: ModelConfig, weights: Weights, *,
                  threads: int | None = None, graph: Graph | None = None,
                  precision: str = "float32", calibration=None) -> Engine:
    """Build the named engine for a model's config and weights (and its graph, if built).

    A model directory holding only a compiled Core ML model (no weights file) runs with the
    coreml engine through the fixed-length window plan (engines/coreml_compiled.py), macOS only.
    """
    name = resolve_engine_name("onnx" if precision == "int8" and name == "auto" else name)
    if precision != "float32" and name not in ("onnx", "coreml"):
        raise UsageError(f"--precision {precision} runs with the onnx and coreml engines")
    if precision != "float32" and name == "onnx" and calibration is None:
        raise UsageError(f"--precision {precision} needs calibration")
    compiled = compiled_only_model(weights)
    if compiled is not None:
        return _compiled_engine(name, compiled)
    graph = build_graph(config) if graph is None else graph
    if name == "onnx":
        from engines.onnx_engine import ONNXEngine

        return ONNXEngine(config, weights, threads=threads, graph=graph, precision=precision,
                          calibration=calibration)
    if name == "mlx":
        from engines.mlx_engine import MLXEngine

        return MLXEngine(graph, weights)
    from engines.coreml_engine import CoreMLEngine

    # Core ML's int8 quantizes weights only (engines/coreml_export.py): no calibration
    return CoreMLEngine(config, weights, graph=graph, precision=precision)


def compiled_only_model(weights: Weights) -> Path | None:
    """The compiled Core ML model of a directory that has one but no weights file, else None."""
    if weights.path is None or weights.path.is_file() or weights.directory is None:
        return None
    found = compiled_models(weights.directory)
    return found[0] if found else None


def _compiled_engine(name: str, compiled: Path) -> Engine:
    """The window-plan runner of a compiled Core ML model; a clear error for other engines."""
    if name != "coreml":
        raise ModelError(
            f"{compiled.parent}: holds only a compiled Core ML model ({compiled.name}), which "
            f"runs with --engine coreml on macOS; the {name} engine needs model.safetensors "
            "(e.g. --model aufklarer/WeSpeaker-ResNet34-LM-MLX)"
        )
    from engines.coreml_compiled import CompiledModelRunner

    return CompiledModelRunner(compiled)


__all__ = ["ENGINE_NAMES", "Engine", "build_graph", "compiled_only_model", "create_engine",
           "is_apple_silicon", "resolve_engine_name"]
