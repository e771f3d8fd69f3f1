"""The shared graph's trunk translated op by op into an ONNX model (NCHW images, (B, C, T)
sequences); run by engines/onnx_engine.py, which caches the result.

Two variants: `plain` (Mask ops are identities) runs unpadded input, and `masked` (a
`lengths` input zeroes padded steps after every ReLU) runs batches of clips of different
lengths.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from engines.errors import EngineError
from engines.graph import (
    FRAMES,
    INPUT,
    LENGTHS,
    Add,
    Affine,
    Concat,
    ContextPool,
    Conv1d,
    Conv2d,
    FreqStridedConv2d,
    Graph,
    ImageToSequence,
    Mask,
    Mul,
    Relu,
    SequenceToFrames,
    Sigmoid,
    TimeMean,
    ToFrames,
    ToImage,
    op_inputs,
)
from engines.model import ModelConfig
from engines.onnx_segmentation import SEGMENTATION_TRANSLATORS

OPSET = 17
# A change to this translation must bump engines.onnx_engine.GRAPH_VERSION (the cache key).


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

    def mask(self, like: str, stride: int, rank: int = 4) -> str:
        """(B, 1, 1, T_s) float mask of the valid steps at `stride` (built once per stride);
        rank 3: (B, 1, T_s), for a sequence."""
        if (stride, rank) not in self._masks:
            n = f"mask{stride}" if rank == 4 else f"mask{stride}_r{rank}"
            steps = self.constant(f"const.stride{stride}", np.array(stride, dtype=np.int64))
            one = self.constant("const.one_i64", np.array(1, dtype=np.int64))
            zero = self.constant("const.zero_i64", np.array(0, dtype=np.int64))
            rounded = self.node("Sub", [self.node("Add", [LENGTHS, steps], f"{n}/up"), one],
                                f"{n}/up1")
            valid = self.node("Div", [rounded, steps], f"{n}/valid")  # ceil(len / stride)
            size = self.node("Shape", [like], f"{n}/size", start=rank - 1, end=rank)
            size = self.node("Squeeze", [size], f"{n}/size0")
            steps_range = self.node("Range", [zero, size, one], f"{n}/range")
            axes = self.constant("const.axes_1", np.array([1], dtype=np.int64))
            keep = self.node("Less", [steps_range, self.node("Unsqueeze", [valid, axes],
                                                             f"{n}/valid_col")], f"{n}/keep")
            keep = self.node("Cast", [keep], f"{n}/keepf", to=self.helper.TensorProto.FLOAT)
            axes = self.constant(f"const.axes_1_{rank - 2}",
                                 np.arange(1, rank - 1, dtype=np.int64))
            self._masks[stride, rank] = self.node("Unsqueeze", [keep, axes], n)
        return self._masks[stride, rank]

    def weight(self, name: str, layout=None) -> str:
        """A float32 weight as an initializer, optionally transposed to ONNX's layout."""
        if name not in self.tensors:
            raise EngineError(f"ONNX engine: the weights have no tensor {name!r}")
        value = np.asarray(self.tensors[name], dtype=np.float32)
        return self.constant(name, value if layout is None else value.transpose(layout))


CHANNELS, TIME = 1, 2  # axes of a (B, C, T) sequence


def _inputs(g, x: str, weight: str, bias: str | None, layout: tuple[int, ...]) -> list[str]:
    inputs = [x, g.weight(weight, layout=layout)]
    return inputs + [g.weight(bias)] if bias is not None else inputs


def _freq_strided_conv2d(g, op: FreqStridedConv2d) -> str:
    """NCHW conv (H = frequency) striding H only; kernel [O, kH, kW, I] -> [O, I, kH, kW]."""
    p = op.padding
    return g.node("Conv", _inputs(g, op.x, op.weight, op.bias, (0, 3, 1, 2)), op.out,
                  strides=[op.freq_stride, 1], pads=[p, p, p, p])


def _image_to_sequence(g, op: ImageToSequence) -> str:
    """(B, C, F, T) -> (B, C*F, T): row-major merge gives channel index c*F + f."""
    n = op.out
    batch = g.node("Shape", [op.x], f"{n}/batch", start=0, end=1)
    frames = g.node("Shape", [op.x], f"{n}/frames", start=3, end=4)
    merged = g.constant("seq.minus_one", np.array([-1], dtype=np.int64))
    shape = g.node("Concat", [batch, merged, frames], f"{n}/shape", axis=0)
    return g.node("Reshape", [op.x, shape], n)


def _conv1d(g, op: Conv1d) -> str:
    """NCT conv; kernel [O, k, I] -> [O, I, k]."""
    return g.node("Conv", _inputs(g, op.x, op.weight, op.bias, (0, 2, 1)), op.out,
                  strides=[op.stride], pads=[op.padding, op.padding], dilations=[op.dilation])


def _column(g, name: str) -> str:
    """A per-channel vector [C] as a [C, 1] initializer that broadcasts over (B, C, T)."""
    return g.constant(f"{name}/column", np.asarray(g.tensors[name], np.float32)[:, None])


def _affine(g, op: Affine) -> str:
    scaled = g.node("Mul", [op.x, _column(g, op.weight)], f"{op.out}/scaled")
    return g.node("Add", [scaled, _column(g, op.bias)], op.out)


def _concat(g, op: Concat) -> str:
    return g.node("Concat", [op.a, op.b], op.out, axis=CHANNELS)


def _context_pool(g, op: ContextPool) -> str:
    """Utterance mean + each frame's segment mean, the segments expanded back to T frames."""
    return _expand_segments(g, _segment_context(g, op), op.segment, op.x, op.out)


def _segment_context(g, op: ContextPool, out: str | None = None) -> str:
    """(B, C, T) -> (B, C, S): the utterance mean + each segment's mean, one column a segment.

    AveragePool with ceil_mode covers a last, shorter segment; count_include_pad=0 averages
    it over the frames it holds.
    """
    n = out or f"{op.out}/segment_context"
    mean = g.node("ReduceMean", [op.x], f"{n}/mean", axes=[TIME], keepdims=1)
    seg = g.node("AveragePool", [op.x], f"{n}/segments", kernel_shape=[op.segment],
                 strides=[op.segment], ceil_mode=1, count_include_pad=0)  # (B, C, S)
    return g.node("Add", [mean, seg], n)


def _expand_segments(g, x: str, segment: int, like: str, out: str) -> str:
    """(B, C, S) -> (B, C, T): each column repeated over its segment's steps, T those of
    `like` (B, C', T)."""
    seg = g.node("Unsqueeze", [x, g.constant("seq.axis3", np.array([3], np.int64))],
                 f"{out}/segments4")
    repeats = g.constant(f"seq.repeat{segment}", np.array([1, 1, 1, segment], dtype=np.int64))
    seg = g.node("Tile", [seg, repeats], f"{out}/tiled")  # (B, C, S, s)
    seg = g.node("Reshape", [seg, g.constant("seq.shape_merge_last",
                                             np.array([0, 0, -1], np.int64))], f"{out}/expanded")
    frames = g.node("Shape", [like], f"{out}/frames", start=TIME, end=TIME + 1)
    zero = g.constant("seq.zero_1d", np.array([0], dtype=np.int64))
    time_axis = g.constant("seq.axis_time", np.array([TIME], dtype=np.int64))
    return g.node("Slice", [seg, zero, frames, time_axis], out)


class _SegmentValues:
    """Values constant over each ContextPool segment, kept at one column a segment.

    CAM++ feeds the context (utterance mean + segment mean) through two 1x1 convolutions and a
    sigmoid before masking: computed per step, they repeat one result over each 100-step
    segment. Here ContextPool gives (B, C, S), pointwise ops on such values stay (B, C, S), and
    a value is expanded to T steps only where an op needs it so (the mask's product). The
    same arithmetic on S columns instead of T, and the same vectors: 3D-Speaker's CAM++ took
    8 % less time on ONNX Runtime (60 clips of 0.8-8 s, 1 thread: median 2.89 -> 2.65 s).
    """

    def __init__(self, g: _OnnxGraph):
        self.g = g
        self.kept: dict[str, tuple[int, str]] = {}  # name -> (segment, a (B, C, T) value)

    def translate(self, op) -> bool:
        """Translate `op` if it reads or makes segment values; False to leave it as it is."""
        g = self.g
        if isinstance(op, ContextPool) and not g.masked:
            self.kept[op.out] = (op.segment, op.x)
            _segment_context(g, op, op.out)
            return True
        inputs = [name for name in op_inputs(op) if name in self.kept]
        if not inputs:
            return False
        if len(inputs) == len(op_inputs(op)) and self._pointwise(op):
            self.kept[op.out] = self.kept[inputs[0]]
            _TRANSLATORS[type(op)](g, op)
            return True
        expanded = {}
        for name in inputs:
            segment, like = self.kept[name]
            expanded[name] = _expand_segments(g, name, segment, like, f"{name}/steps")
        fields = {f: expanded[getattr(op, f)] for f in ("x", "a", "b")
                  if getattr(op, f, None) in expanded}
        _TRANSLATORS[type(op)](g, dataclasses.replace(op, **fields))
        return True

    def _pointwise(self, op) -> bool:
        """True for an op whose output step t depends on its input step t alone."""
        if isinstance(op, Relu | Sigmoid | Affine):
            return True
        return (isinstance(op, Conv1d) and self.g.tensors[op.weight].shape[1] == 1
                and op.stride == 1 and op.padding == 0)


def _sigmoid(g, op: Sigmoid) -> str:
    return g.node("Sigmoid", [op.x], op.out)


def _mul(g, op: Mul) -> str:
    return g.node("Mul", [op.a, op.b], op.out)


def _time_mean(g, op: TimeMean) -> str:
    """(B, C, T) -> (B, C, 1); in a masked model, the mean over each clip's valid steps."""
    if not g.masked:
        return g.node("ReduceMean", [op.x], op.out, axes=[TIME], keepdims=1)
    keep = g.mask(op.x, g.strides[op.x], rank=3)  # (B, 1, T)
    total = g.node("ReduceSum", [g.node("Mul", [op.x, keep], f"{op.out}/kept"),
                                 g.constant("seq.axis_time", np.array([TIME], np.int64))],
                   f"{op.out}/sum", keepdims=1)
    count = g.node("ReduceSum", [keep, g.constant("seq.axis_time", np.array([TIME], np.int64))],
                   f"{op.out}/count", keepdims=1)
    return g.node("Div", [total, count], op.out)


def _sequence_to_frames(g, op: SequenceToFrames) -> str:
    """(B, C, T) -> (B, T, C)."""
    return g.node("Transpose", [op.x], op.out, perm=[0, 2, 1])


SEQUENCE_TRANSLATORS = {
    FreqStridedConv2d: _freq_strided_conv2d,
    ImageToSequence: _image_to_sequence,
    Conv1d: _conv1d,
    Affine: _affine,
    Concat: _concat,
    ContextPool: _context_pool,
    Sigmoid: _sigmoid,
    Mul: _mul,
    SequenceToFrames: _sequence_to_frames,
    TimeMean: _time_mean,
}


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
    **SEGMENTATION_TRANSLATORS,
}
SUPPORTED_OPS: frozenset[type] = frozenset(_TRANSLATORS)  # graph op types the trunk may use


def graph_to_onnx(graph: Graph, tensors: dict[str, np.ndarray], config: ModelConfig,
                  masked: bool = False, stage=None):
    """The graph's trunk as an `onnx.ModelProto` (features [, lengths] -> frames); or, given
    an engines.stages.Stage, just its ops (its inputs -> its outputs, sequences (B, C, T))."""
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as exc:
        raise EngineError(
            f"building the ONNX model needs the 'onnx' package ({exc}); "
            "install it with: pip install onnx"
        ) from None
    g = _OnnxGraph(helper, numpy_helper, tensors, graph, masked)
    samples = ["batch", "samples"] if graph.takes_waveform else None
    segments = _SegmentValues(g)
    for op in graph.trunk_ops() if stage is None else stage.ops:
        translate = _TRANSLATORS.get(type(op))
        if translate is None:
            raise EngineError(f"ONNX engine: unsupported op {type(op).__name__}")
        if not segments.translate(op):
            translate(g, op)

    def value(name: str):
        shape = {INPUT: samples or ["batch", "frames", config.n_mels], LENGTHS: ["batch"],
                 FRAMES: ["batch", "steps", "dim"]}.get(name, ["batch", f"{name}/C", "steps"])
        kind = onnx.TensorProto.INT64 if name == LENGTHS else onnx.TensorProto.FLOAT
        return helper.make_tensor_value_info(name, kind, shape)

    if stage is None:
        inputs = [value(INPUT), value(LENGTHS)] if g._masks else [value(INPUT)]
        outputs = [value(FRAMES)]
    else:
        inputs, outputs = [value(n) for n in stage.inputs], [value(n) for n in stage.outputs]
    body = helper.make_graph(g.nodes, config.model_id or "speaker_embedding", inputs,
                             outputs, initializer=g.initializers)
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="audio-speaker")
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------------------------------------
# Cache of serialized models.

