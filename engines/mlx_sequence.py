"""MLX versions of the sequence ops (CAM++): sequences live as (B, T, C) arrays, maps NHWC."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

from engines.errors import EngineError
from engines.graph import (
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

SEQUENCE_OPS = (FreqStridedConv2d, ImageToSequence, Conv1d, Affine, Concat, ContextPool, Sigmoid,
                Mul, SequenceToFrames)


def _with_bias(y: mx.array, w: dict[str, mx.array], bias: str | None) -> mx.array:
    return y + w[bias] if bias is not None else y


def _image_to_sequence(x: mx.array) -> mx.array:
    """(B, F, T, C) NHWC map -> (B, T, C*F), channel index c*F + f."""
    batch, freq, frames, channels = x.shape
    return mx.transpose(x, (0, 2, 3, 1)).reshape(batch, frames, channels * freq)


def _context_pool(x: mx.array, segment: int) -> mx.array:
    """(B, T, C) -> utterance mean + the mean of each frame's `segment`-frame segment."""
    batch, frames, channels = x.shape
    count = math.ceil(frames / segment)
    padded = mx.pad(x, [(0, 0), (0, count * segment - frames), (0, 0)])
    sums = mx.sum(padded.reshape(batch, count, segment, channels), axis=2)
    sizes = np.minimum(segment, frames - segment * np.arange(count)).astype(np.float32)
    means = sums / mx.array(sizes)[None, :, None]
    expanded = mx.repeat(means, segment, axis=1)[:, :frames]
    return expanded + mx.mean(x, axis=1, keepdims=True)


def apply_sequence_op(op, values: dict[str, mx.array], w: dict[str, mx.array]) -> mx.array:
    """The output of one sequence op, reading its inputs from `values`."""
    if isinstance(op, FreqStridedConv2d):
        y = mx.conv2d(values[op.x], w[op.weight], stride=(op.freq_stride, 1),
                      padding=op.padding)
        return _with_bias(y, w, op.bias)
    if isinstance(op, ImageToSequence):
        return _image_to_sequence(values[op.x])
    if isinstance(op, Conv1d):
        y = mx.conv1d(values[op.x], w[op.weight], stride=op.stride, padding=op.padding,
                      dilation=op.dilation)
        return _with_bias(y, w, op.bias)
    if isinstance(op, Affine):
        return values[op.x] * w[op.weight] + w[op.bias]
    if isinstance(op, Concat):
        return mx.concatenate([values[op.a], values[op.b]], axis=-1)
    if isinstance(op, ContextPool):
        return _context_pool(values[op.x], op.segment)
    if isinstance(op, Sigmoid):
        return mx.sigmoid(values[op.x])
    if isinstance(op, Mul):
        return values[op.a] * values[op.b]
    if isinstance(op, SequenceToFrames):  # the sequence layout is already (B, T, C)
        return values[op.x]
    raise EngineError(f"MLX engine: unsupported op {type(op).__name__}")
