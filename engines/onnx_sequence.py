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
    SequenceToFrames,
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
    """Utterance mean + each frame's segment mean, the segments expanded back to T frames.

    AveragePool with ceil_mode covers a last, shorter segment; count_include_pad=0 averages
    it over the frames it holds.
    """
    n, s = op.out, op.segment
    mean = g.node("ReduceMean", [op.x], f"{n}/mean", axes=[TIME], keepdims=1)
    seg = g.node("AveragePool", [op.x], f"{n}/segments", kernel_shape=[s], strides=[s],
                 ceil_mode=1, count_include_pad=0)  # (B, C, ceil(T/s))
    seg = g.node("Unsqueeze", [seg, g.constant("seq.axis3", np.array([3], np.int64))],
                 f"{n}/segments4")
    repeats = g.constant(f"seq.repeat{s}", np.array([1, 1, 1, s], dtype=np.int64))
    seg = g.node("Tile", [seg, repeats], f"{n}/tiled")  # (B, C, S, s)
    seg = g.node("Reshape", [seg, g.constant("seq.shape_merge_last",
                                             np.array([0, 0, -1], np.int64))], f"{n}/expanded")
    frames = g.node("Shape", [op.x], f"{n}/frames", start=TIME, end=TIME + 1)
    zero = g.constant("seq.zero_1d", np.array([0], dtype=np.int64))
    time_axis = g.constant("seq.axis_time", np.array([TIME], dtype=np.int64))
    seg = g.node("Slice", [seg, zero, frames, time_axis], f"{n}/cut")
    return g.node("Add", [mean, seg], n)


def _sigmoid(g, op: Sigmoid) -> str:
    return g.node("Sigmoid", [op.x], op.out)


def _mul(g, op: Mul) -> str:
    return g.node("Mul", [op.a, op.b], op.out)


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
}
