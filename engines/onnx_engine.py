"""ONNX Runtime engine: the shared graph translated op by op into an ONNX model (NCHW).

The ONNX model is built once per weights file and cached beside it, as
`<model dir>/onnx/<sha256[:16]>-<GRAPH_VERSION>.onnx`; when that directory is not writable
the user cache (`$XDG_CACHE_HOME` or `~/.cache`, then `audio-speaker/onnx/`) is used. A cached
model is loaded without reading the weights tensors and without importing the `onnx` package
(only onnxruntime), which keeps start-up short. A cached file that onnxruntime cannot load
(truncated, corrupt) is rebuilt and replaced.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from audio_cli.config import ModelConfig
from audio_cli.errors import EngineError
from audio_cli.weights import Weights

from .cache import cache_dirs
from .graph import (
    INPUT,
    OUTPUT,
    Add,
    Conv2d,
    Graph,
    L2Normalize,
    Linear,
    Relu,
    StatsPool,
    ToImage,
)
from .onnx_sequence import SEQUENCE_TRANSLATORS

GRAPH_VERSION = 1  # bump whenever the translation below changes the ONNX file
OPSET = 17
CACHE_KIND = "onnx"
ACCELERATED_PROVIDERS = ("CUDAExecutionProvider", "CoreMLExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"
CACHE_FILE_MODE = 0o644

builds = 0  # how many ONNX models this process has built (tests check the cache with it)


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineError(
            f"the ONNX engine needs the 'onnxruntime' package ({exc}); "
            "install it with: pip install onnxruntime"
        ) from None
    return onnxruntime


# ---------------------------------------------------------------------------------------------
# Translation: one short function per op of the shared graph.


class _OnnxGraph:
    """The nodes and initializers of the ONNX graph being written."""

    def __init__(self, helper, numpy_helper, tensors: dict[str, np.ndarray]):
        self.helper = helper
        self.numpy_helper = numpy_helper
        self.tensors = tensors
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._initialized: set[str] = set()

    def node(self, op_type: str, inputs: list[str], out: str, **attributes) -> str:
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, **attributes))
        return out

    def constant(self, name: str, value: np.ndarray) -> str:
        if name not in self._initialized:
            array = np.ascontiguousarray(value)
            self.initializers.append(self.numpy_helper.from_array(array, name))
            self._initialized.add(name)
        return name

    def weight(self, name: str, layout=None) -> str:
        """A float32 weight as an initializer, optionally transposed to ONNX's layout."""
        if name not in self.tensors:
            raise EngineError(f"ONNX engine: the weights have no tensor {name!r}")
        value = np.asarray(self.tensors[name], dtype=np.float32)
        return self.constant(name, value if layout is None else value.transpose(layout))


def _to_image(g: _OnnxGraph, op: ToImage) -> str:
    """(B, T, F) -> (B, 1, F, T): height = frequency, width = time."""
    axes = g.constant("const.axis1", np.array([1], dtype=np.int64))
    image = g.node("Unsqueeze", [op.x, axes], f"{op.out}/unsqueezed")
    return g.node("Transpose", [image], op.out, perm=[0, 1, 3, 2])


def _conv2d(g: _OnnxGraph, op: Conv2d) -> str:
    weight = g.weight(op.weight, layout=(0, 3, 1, 2))  # [O, kH, kW, I] -> [O, I, kH, kW]
    p = op.padding
    return g.node("Conv", [op.x, weight, g.weight(op.bias)], op.out,
                  strides=[op.stride, op.stride], pads=[p, p, p, p])


def _relu(g: _OnnxGraph, op: Relu) -> str:
    return g.node("Relu", [op.x], op.out)


def _add(g: _OnnxGraph, op: Add) -> str:
    return g.node("Add", [op.a, op.b], op.out)


def _stats_pool(g: _OnnxGraph, op: StatsPool) -> str:
    """(B, C, F, T) -> (B, 2*C*F) [mean ‖ unbiased std] over time, index c*F + f.

    Reducing the 4-D map over its last axis and then flattening (B, C, F) row-major gives the
    same c*F + f order as reshaping to (B, C*F, T) first, without a shape computed at run time.
    """
    n = op.out
    mean = g.node("ReduceMean", [op.x], f"{n}/mean4", axes=[3], keepdims=1)
    centred = g.node("Sub", [op.x, mean], f"{n}/centred")
    sum_sq = g.node("ReduceSumSquare", [centred], f"{n}/sum_sq", axes=[3], keepdims=0)
    frames = g.node("Shape", [op.x], f"{n}/frames_i64", start=3, end=4)  # [T], dynamic
    frames = g.node("Cast", [frames], f"{n}/frames", to=g.helper.TensorProto.FLOAT)
    one = g.constant("const.one", np.array([1.0], dtype=np.float32))
    var = g.node("Div", [sum_sq, g.node("Sub", [frames, one], f"{n}/dof")], f"{n}/var")
    std = g.node("Flatten", [g.node("Sqrt", [var], f"{n}/std3")], f"{n}/std", axis=1)
    mean = g.node("Flatten", [mean], f"{n}/mean", axis=1)  # (B, C, F, 1) -> (B, C*F)
    return g.node("Concat", [mean, std], n, axis=1)


def _linear(g: _OnnxGraph, op: Linear) -> str:
    return g.node("Gemm", [op.x, g.weight(op.weight), g.weight(op.bias)], op.out, transB=1)


def _l2_normalize(g: _OnnxGraph, op: L2Normalize) -> str:
    norm = g.node("ReduceL2", [op.x], f"{op.out}/norm", axes=[-1], keepdims=1)
    return g.node("Div", [op.x, norm], op.out)


_TRANSLATORS = {
    ToImage: _to_image,
    Conv2d: _conv2d,
    Relu: _relu,
    Add: _add,
    StatsPool: _stats_pool,
    Linear: _linear,
    L2Normalize: _l2_normalize,
    **SEQUENCE_TRANSLATORS,
}


def graph_to_onnx(graph: Graph, tensors: dict[str, np.ndarray], config: ModelConfig):
    """The shared graph as an `onnx.ModelProto` with the weights as initializers."""
    global builds
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:
        raise EngineError(
            f"building the ONNX model needs the 'onnx' package ({exc}); "
            "install it with: pip install onnx"
        ) from None
    g = _OnnxGraph(helper, numpy_helper, tensors)
    for op in graph.ops:
        translate = _TRANSLATORS.get(type(op))
        if translate is None:
            raise EngineError(f"ONNX engine: unsupported op {type(op).__name__}")
        translate(g, op)
    features = helper.make_tensor_value_info(
        INPUT, onnx.TensorProto.FLOAT, ["batch", "frames", config.n_mels])
    embedding = helper.make_tensor_value_info(
        OUTPUT, onnx.TensorProto.FLOAT, ["batch", config.embedding_dim])
    body = helper.make_graph(g.nodes, config.model_id or "speaker_embedding", [features],
                             [embedding], initializer=g.initializers)
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="audio-speaker", producer_version=str(GRAPH_VERSION))
    onnx.checker.check_model(model)
    builds += 1
    return model


# ---------------------------------------------------------------------------------------------
# Cache of serialized models.




def cache_file_name(weights: Weights) -> str:
    return f"{weights.digest()[:16]}-{GRAPH_VERSION}.onnx"


def _write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same directory, then rename over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temporary, CACHE_FILE_MODE)  # mkstemp makes it private; others may share it
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _store(candidates: list[Path], name: str, data: bytes) -> Path | None:
    """Write the model into the first writable candidate directory; None if none is."""
    for directory in candidates:
        try:
            _write_atomically(directory / name, data)
        except OSError:
            continue
        return directory / name
    return None


# ---------------------------------------------------------------------------------------------
# The engine.


class ONNXEngine:
    """Runs the shared graph with ONNX Runtime (CPU, or CUDA / Core ML when available)."""

    name = "onnx"

    def __init__(self, config: ModelConfig, weights: Weights, threads: int | None = None,
                 cache_dir: Path | None = None):
        self._ort = _import_onnxruntime()
        self.config = config
        self._options = self._session_options(threads)
        self._providers = self._pick_providers()
        candidates = cache_dirs(weights, CACHE_KIND, cache_dir)
        name = cache_file_name(weights)
        self.session, path = self._open_cached([d / name for d in candidates])
        if self.session is None:  # not cached yet, or every cached copy is corrupt: (re)build
            from . import build_graph

            model = graph_to_onnx(build_graph(config), weights.tensors(), config)
            data = model.SerializeToString()
            path = _store(candidates, name, data)
            self.session = self._open(str(path) if path is not None else data)
        self.model_path: Path | None = path  # None when no cache directory was writable
        self.providers: list[str] = self.session.get_providers()
        self._output_names = [OUTPUT]

    def _session_options(self, threads: int | None):
        ort = self._ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = int(threads) if threads else 0  # 0: onnxruntime's choice
        options.inter_op_num_threads = 1
        return options

    def _pick_providers(self) -> list[str]:
        available = self._ort.get_available_providers()
        return [p for p in ACCELERATED_PROVIDERS if p in available] + [CPU_PROVIDER]

    def _open(self, model: str | bytes):
        try:
            return self._ort.InferenceSession(model, sess_options=self._options,
                                              providers=self._providers)
        except Exception as exc:  # onnxruntime's errors share no base class
            raise EngineError(f"ONNX engine: cannot create the session ({exc})") from None

    def _open_cached(self, paths: list[Path]):
        """(session, path) for the first cached model that loads, or (None, None)."""
        for path in paths:
            if path.is_file():
                try:
                    return self._open(str(path)), path
                except EngineError:  # truncated or corrupt: try the next, else rebuild
                    continue
        return None, None

    def embed(self, features: np.ndarray) -> np.ndarray:
        """(B, T, n_mels) features -> (B, dim) unit vectors."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        try:
            (embedding,) = self.session.run(self._output_names, {INPUT: x})
        except Exception as exc:  # onnxruntime's errors share no base class
            raise EngineError(f"ONNX engine failed: {exc}") from None
        return embedding
