"""ONNX Runtime engine: the shared graph translated op by op into an ONNX model (NCHW).

The ONNX model is built once per weights file and cached beside it, as
`<model dir>/onnx/<sha256[:16]>-<GRAPH_VERSION>-<variant>.onnx`; when that directory is not writable
the user cache (`$XDG_CACHE_HOME` or `~/.cache`, then `audio-speaker/onnx/`) is used. A cached
model is loaded without reading the weights tensors and without importing the `onnx` package
(only onnxruntime), which keeps start-up short. A cached file that onnxruntime cannot load
(truncated, corrupt) is rebuilt and replaced.

Two variants: `plain` (Mask ops are identities) runs unpadded input, and `masked` (a
`lengths` input zeroes padded steps after every ReLU) runs batches of clips of different
lengths. The masks cost 5-15 % of the run time, so they are built only when a ragged batch
first needs them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from audio_cli.config import ModelConfig
from audio_cli.errors import EngineError
from audio_cli.files import write_new
from audio_cli.weights import Weights

from .base import TrunkEngine
from .cache import cache_dirs
from .graph import FRAMES, INPUT, LENGTHS, Add, Conv2d, Graph, Mask, Relu, ToFrames, ToImage
from .onnx_sequence import SEQUENCE_TRANSLATORS

GRAPH_VERSION = 2  # bump whenever the translation below changes the ONNX file
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

    def __init__(self, helper, numpy_helper, tensors: dict[str, np.ndarray], graph: Graph,
                 masked: bool):
        self.masked = masked
        self.helper = helper
        self.numpy_helper = numpy_helper
        self.tensors = tensors
        self.strides = graph.strides()
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._initialized: set[str] = set()
        self._masks: dict[int, str] = {}

    def node(self, op_type: str, inputs: list[str], out: str, **attributes) -> str:
        self.nodes.append(self.helper.make_node(op_type, inputs, [out], name=out, **attributes))
        return out

    def constant(self, name: str, value: np.ndarray) -> str:
        if name not in self._initialized:
            array = np.ascontiguousarray(value)
            self.initializers.append(self.numpy_helper.from_array(array, name))
            self._initialized.add(name)
        return name

    def mask(self, like: str, stride: int) -> str:
        """(B, 1, 1, T_s) float mask of the valid steps at `stride` (built once per stride)."""
        if stride not in self._masks:
            n = f"mask{stride}"
            steps = self.constant(f"const.stride{stride}", np.array(stride, dtype=np.int64))
            one = self.constant("const.one_i64", np.array(1, dtype=np.int64))
            zero = self.constant("const.zero_i64", np.array(0, dtype=np.int64))
            rounded = self.node("Sub", [self.node("Add", [LENGTHS, steps], f"{n}/up"), one],
                                f"{n}/up1")
            valid = self.node("Div", [rounded, steps], f"{n}/valid")  # ceil(len / stride)
            size = self.node("Shape", [like], f"{n}/size", start=3, end=4)
            size = self.node("Squeeze", [size], f"{n}/size0")
            steps_range = self.node("Range", [zero, size, one], f"{n}/range")
            axes = self.constant("const.axes_1", np.array([1], dtype=np.int64))
            keep = self.node("Less", [steps_range, self.node("Unsqueeze", [valid, axes],
                                                             f"{n}/valid_col")], f"{n}/keep")
            keep = self.node("Cast", [keep], f"{n}/keepf", to=self.helper.TensorProto.FLOAT)
            axes12 = self.constant("const.axes_1_2", np.array([1, 2], dtype=np.int64))
            self._masks[stride] = self.node("Unsqueeze", [keep, axes12], n)
        return self._masks[stride]

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


def _mask(g: _OnnxGraph, op: Mask) -> str:
    if not g.masked:
        return g.node("Identity", [op.x], op.out)
    return g.node("Mul", [op.x, g.mask(op.x, g.strides[op.x])], op.out)


def _to_frames(g: _OnnxGraph, op: ToFrames) -> str:
    """(B, C, F, T') -> (B, T', C*F), feature index c*F + f."""
    moved = g.node("Transpose", [op.x], f"{op.out}/btcf", perm=[0, 3, 1, 2])
    shape = g.constant("const.frames_shape", np.array([0, 0, -1], dtype=np.int64))
    return g.node("Reshape", [moved, shape], op.out)


_TRANSLATORS = {
    ToImage: _to_image,
    Conv2d: _conv2d,
    Relu: _relu,
    Add: _add,
    Mask: _mask,
    ToFrames: _to_frames,
    **SEQUENCE_TRANSLATORS,
}


def graph_to_onnx(graph: Graph, tensors: dict[str, np.ndarray], config: ModelConfig,
                  masked: bool = False):
    """The graph's trunk as an `onnx.ModelProto` (features [, lengths] -> frames)."""
    global builds
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:
        raise EngineError(
            f"building the ONNX model needs the 'onnx' package ({exc}); "
            "install it with: pip install onnx"
        ) from None
    g = _OnnxGraph(helper, numpy_helper, tensors, graph, masked)
    for op in graph.trunk_ops():
        translate = _TRANSLATORS.get(type(op))
        if translate is None:
            raise EngineError(f"ONNX engine: unsupported op {type(op).__name__}")
        translate(g, op)
    features = helper.make_tensor_value_info(
        INPUT, onnx.TensorProto.FLOAT, ["batch", "frames", config.n_mels])
    lengths = helper.make_tensor_value_info(LENGTHS, onnx.TensorProto.INT64, ["batch"])
    frames = helper.make_tensor_value_info(FRAMES, onnx.TensorProto.FLOAT,
                                           ["batch", "steps", "dim"])
    inputs = [features, lengths] if g._masks else [features]
    body = helper.make_graph(g.nodes, config.model_id or "speaker_embedding", inputs,
                             [frames], initializer=g.initializers)
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="audio-speaker", producer_version=str(GRAPH_VERSION))
    onnx.checker.check_model(model)
    builds += 1
    return model


# ---------------------------------------------------------------------------------------------
# Cache of serialized models.




def cache_file_name(weights: Weights, masked: bool = False) -> str:
    """The cached model's file name: weights hash, translation version, variant."""
    return f"{weights.digest()[:16]}-{GRAPH_VERSION}-{'masked' if masked else 'plain'}.onnx"


def _store(candidates: list[Path], name: str, data: bytes) -> Path | None:
    """Write the model into the first writable candidate directory; None if none is."""
    for directory in candidates:
        try:
            write_new(directory / name, data, replace=True, mode=CACHE_FILE_MODE)
        except OSError:
            continue
        return directory / name
    return None


# ---------------------------------------------------------------------------------------------
# The engine.


class ONNXEngine(TrunkEngine):
    """Runs the graph's trunk with ONNX Runtime (CPU, or CUDA / Core ML when available)."""

    name = "onnx"

    def __init__(self, config: ModelConfig, weights: Weights, threads: int | None = None,
                 cache_dir: Path | None = None, graph: Graph | None = None):
        from . import build_graph

        graph = build_graph(config) if graph is None else graph
        super().__init__(graph, weights)
        self._ort = _import_onnxruntime()
        self.config = config
        self._weights = weights
        self._options = self._session_options(threads)
        self._providers = self._pick_providers()
        self._candidates = cache_dirs(weights, CACHE_KIND, cache_dir)
        self.session, self.model_path = self._load(masked=False)
        self.providers: list[str] = self.session.get_providers()
        self._masked_session = None  # built on the first ragged batch
        # The CPU arena keeps every buffer it ever grew to, so batches and chunks of changing
        # shapes made it grow run after run (5 min in 60 s chunks: 631 MB peak). Shrinking it
        # after each run bounds that (476 MB; one hour: 473 MB) at no measurable cost, where
        # turning the arena off cost 2x on 100 files (malloc and page faults per op).
        self._run_options = self._ort.RunOptions()
        self._run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def _load(self, masked: bool):
        """(session, cached path or None) of a variant: from the cache, else built and cached."""
        name = cache_file_name(self._weights, masked)
        session, path = self._open_cached([d / name for d in self._candidates])
        if session is None:  # not cached yet, or every cached copy is corrupt: (re)build
            model = graph_to_onnx(self.graph, self._weights.tensors(), self.config, masked)
            data = model.SerializeToString()
            path = _store(self._candidates, name, data)
            session = self._open(str(path) if path is not None else data)
        return session, path

    def _session_options(self, threads: int | None):
        ort = self._ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = int(threads) if threads else 0  # 0: onnxruntime's choice
        options.inter_op_num_threads = 1
        # Stop the intra-op threads spinning once a run returns (they still spin between the
        # ops of a run): otherwise they busy-wait on the cores the numpy front-end and head
        # (and other processes) need next. See bench/RESULTS.md, section (c).
        options.add_session_config_entry("session.force_spinning_stop", "1")
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

    def encode(self, features: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """(B, T, n_mels) features -> (B, T', D) frames."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        feeds, session = {INPUT: x}, self.session
        if lengths is not None and np.any(np.asarray(lengths) < x.shape[1]):
            if self._masked_session is None:
                self._masked_session, _ = self._load(masked=True)
            feeds[LENGTHS], session = np.asarray(lengths, dtype=np.int64), self._masked_session
        try:
            (frames,) = session.run([FRAMES], feeds, self._run_options)
        except Exception as exc:  # onnxruntime's errors share no base class
            raise EngineError(f"ONNX engine failed: {exc}") from None
        return frames
