"""ONNX translations of the sequence ops (CAM++): sequences live as (B, C, T) tensors.

Each function takes the `_OnnxGraph` being written (see onnx_engine.py) and one op.
"""

from __future__ import annotations

import numpy as np

from .graph import (
    Affine,
    Concat,
    ContextPool,
    Conv1d,
    FreqStridedConv2d,
    ImageToSequence,
    Mul,
    SequenceStatsPool,
    Sigmoid,
)

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
    merged = g.constant("const.minus_one", np.array([-1], dtype=np.int64))
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
    """Utterance mean + each frame's segment mean, the segments expanded back to T frames.

    AveragePool with ceil_mode covers a last, shorter segment; count_include_pad=0 averages
    it over the frames it holds.
    """
    n, s = op.out, op.segment
    mean = g.node("ReduceMean", [op.x], f"{n}/mean", axes=[TIME], keepdims=1)
    seg = g.node("AveragePool", [op.x], f"{n}/segments", kernel_shape=[s], strides=[s],
                 ceil_mode=1, count_include_pad=0)  # (B, C, ceil(T/s))
    seg = g.node("Unsqueeze", [seg, g.constant("const.axis3", np.array([3], np.int64))],
                 f"{n}/segments4")
    repeats = g.constant(f"const.repeat{s}", np.array([1, 1, 1, s], dtype=np.int64))
    seg = g.node("Tile", [seg, repeats], f"{n}/tiled")  # (B, C, S, s)
    seg = g.node("Reshape", [seg, g.constant("const.shape_merge_last",
                                             np.array([0, 0, -1], np.int64))], f"{n}/expanded")
    frames = g.node("Shape", [op.x], f"{n}/frames", start=TIME, end=TIME + 1)
    zero = g.constant("const.zero_i64", np.array([0], dtype=np.int64))
    time_axis = g.constant("const.axis_time", np.array([TIME], dtype=np.int64))
    seg = g.node("Slice", [seg, zero, frames, time_axis], f"{n}/cut")
    return g.node("Add", [mean, seg], n)


def _sigmoid(g, op: Sigmoid) -> str:
    return g.node("Sigmoid", [op.x], op.out)


def _mul(g, op: Mul) -> str:
    return g.node("Mul", [op.a, op.b], op.out)


def _sequence_stats_pool(g, op: SequenceStatsPool) -> str:
    """(B, C, T) -> (B, 2C) [mean ‖ unbiased std] over time."""
    n = op.out
    mean = g.node("ReduceMean", [op.x], f"{n}/mean3", axes=[TIME], keepdims=1)
    centred = g.node("Sub", [op.x, mean], f"{n}/centred")
    sum_sq = g.node("ReduceSumSquare", [centred], f"{n}/sum_sq", axes=[TIME], keepdims=0)
    frames = g.node("Shape", [op.x], f"{n}/frames_i64", start=TIME, end=TIME + 1)
    frames = g.node("Cast", [frames], f"{n}/frames", to=g.helper.TensorProto.FLOAT)
    one = g.constant("const.one", np.array([1.0], dtype=np.float32))
    var = g.node("Div", [sum_sq, g.node("Sub", [frames, one], f"{n}/dof")], f"{n}/var")
    std = g.node("Sqrt", [var], f"{n}/std")
    mean = g.node("Flatten", [mean], f"{n}/mean", axis=1)
    return g.node("Concat", [mean, std], n, axis=1)


SEQUENCE_TRANSLATORS = {
    FreqStridedConv2d: _freq_strided_conv2d,
    ImageToSequence: _image_to_sequence,
    Conv1d: _conv1d,
    Affine: _affine,
    Concat: _concat,
    ContextPool: _context_pool,
    Sigmoid: _sigmoid,
    Mul: _mul,
    SequenceStatsPool: _sequence_stats_pool,
}
