"""MLX versions of the sequence ops (CAM++): sequences live as (B, T, C) arrays, maps NHWC.

SEQUENCE_OPS maps each graph op type to its function (op, values, weights) -> output.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx
import numpy as np

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
    TimeMean,
)

Values = dict[str, mx.array]


def _with_bias(y: mx.array, w: Values, bias: str | None) -> mx.array:
    return y + w[bias] if bias is not None else y


def _freq_strided_conv2d(op: FreqStridedConv2d, values: Values, w: Values) -> mx.array:
    y = mx.conv2d(values[op.x], w[op.weight], stride=(op.freq_stride, 1), padding=op.padding)
    return _with_bias(y, w, op.bias)


def _image_to_sequence(op: ImageToSequence, values: Values, w: Values) -> mx.array:
    """(B, F, T, C) NHWC map -> (B, T, C*F), channel index c*F + f."""
    batch, freq, frames, channels = values[op.x].shape
    return mx.transpose(values[op.x], (0, 2, 3, 1)).reshape(batch, frames, channels * freq)


def _conv1d(op: Conv1d, values: Values, w: Values) -> mx.array:
    y = mx.conv1d(values[op.x], w[op.weight], stride=op.stride, padding=op.padding,
                  dilation=op.dilation)
    return _with_bias(y, w, op.bias)


def _affine(op: Affine, values: Values, w: Values) -> mx.array:
    return values[op.x] * w[op.weight] + w[op.bias]


def _concat(op: Concat, values: Values, w: Values) -> mx.array:
    return mx.concatenate([values[op.a], values[op.b]], axis=-1)


def _context_pool(op: ContextPool, values: Values, w: Values) -> mx.array:
    """(B, T, C) -> utterance mean + the mean of each frame's `segment`-frame segment."""
    x, segment = values[op.x], op.segment
    batch, frames, channels = x.shape
    count = math.ceil(frames / segment)
    padded = mx.pad(x, [(0, 0), (0, count * segment - frames), (0, 0)])
    sums = mx.sum(padded.reshape(batch, count, segment, channels), axis=2)
    sizes = np.minimum(segment, frames - segment * np.arange(count)).astype(np.float32)
    means = sums / mx.array(sizes)[None, :, None]
    expanded = mx.repeat(means, segment, axis=1)[:, :frames]
    return expanded + mx.mean(x, axis=1, keepdims=True)


def _sigmoid(op: Sigmoid, values: Values, w: Values) -> mx.array:
    return mx.sigmoid(values[op.x])


def _mul(op: Mul, values: Values, w: Values) -> mx.array:
    return values[op.a] * values[op.b]


def _time_mean(op: TimeMean, values: Values, w: Values) -> mx.array:
    """(B, T, C) -> (B, 1, C)."""
    return mx.mean(values[op.x], axis=1, keepdims=True)


def _sequence_to_frames(op: SequenceToFrames, values: Values, w: Values) -> mx.array:
    """The sequence layout is already (B, T, C)."""
    return values[op.x]


SEQUENCE_OPS: dict[type, Callable[..., mx.array]] = {
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

