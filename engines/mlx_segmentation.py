"""MLX versions of the waveform and recurrent ops (pyannote's segmentation network,
engines/segmentation.py): sequences and frames are both (B, T, C) arrays here.

SEGMENTATION_OPS maps each graph op type to its function (op, values, weights) -> output.
"""

from __future__ import annotations

from collections.abc import Callable

import mlx.core as mx

from engines.graph import (
    LSTM,
    Abs,
    InstanceNorm,
    LeakyRelu,
    Linear,
    LogSoftmax,
    MaxPool1d,
    Waveform,
)

Values = dict[str, mx.array]


def _waveform(op: Waveform, values: Values, w: Values) -> mx.array:
    """(B, N) samples -> (B, N, 1)."""
    return values[op.x][..., None]


def _instance_norm(op: InstanceNorm, values: Values, w: Values) -> mx.array:
    x = values[op.x]
    centred = x - mx.mean(x, axis=1, keepdims=True)
    variance = mx.mean(mx.square(centred), axis=1, keepdims=True)
    return centred * mx.rsqrt(variance + op.EPS) * w[op.weight] + w[op.bias]


def _abs(op: Abs, values: Values, w: Values) -> mx.array:
    return mx.abs(values[op.x])


def _max_pool(op: MaxPool1d, values: Values, w: Values) -> mx.array:
    x = values[op.x]
    steps = (x.shape[1] - op.kernel) // op.stride + 1
    span = op.stride * (steps - 1) + 1
    taps = [x[:, j:j + span:op.stride] for j in range(op.kernel)]
    out = taps[0]
    for tap in taps[1:]:
        out = mx.maximum(out, tap)
    return out


def _leaky_relu(op: LeakyRelu, values: Values, w: Values) -> mx.array:
    x = values[op.x]
    return mx.where(x > 0, x, x * op.slope)


def _direction(x: mx.array, w: Values, names: list[str], backward: bool) -> mx.array:
    """One direction of one LSTM layer over (B, T, I) -> (B, T, H); torch's gate order."""
    w_ih, w_hh, b_ih, b_hh = (w[n] for n in names)
    inputs = x @ w_ih.T + (b_ih + b_hh)  # (B, T, 4H)
    hidden = w_hh.shape[1]
    h = mx.zeros((x.shape[0], hidden), dtype=x.dtype)
    c = mx.zeros_like(h)
    steps = range(x.shape[1] - 1, -1, -1) if backward else range(x.shape[1])
    outputs = []
    for t in steps:
        gates = inputs[:, t] + h @ w_hh.T
        i, f, g, o = (gates[:, k * hidden:(k + 1) * hidden] for k in range(4))
        c = mx.sigmoid(f) * c + mx.sigmoid(i) * mx.tanh(g)
        h = mx.sigmoid(o) * mx.tanh(c)
        outputs.append(h)
    if backward:
        outputs.reverse()
    return mx.stack(outputs, axis=1)


def _lstm(op: LSTM, values: Values, w: Values) -> mx.array:
    x = values[op.x]
    names = op.weight_names()
    parts = len(op.PARTS)
    for layer in range(op.layers):
        outs = []
        for d, suffix in enumerate(op.directions()):
            start = (layer * len(op.directions()) + d) * parts
            outs.append(_direction(x, w, names[start:start + parts], backward=bool(suffix)))
        x = mx.concatenate(outs, axis=-1)
    return x


def _linear(op: Linear, values: Values, w: Values) -> mx.array:
    return values[op.x] @ w[op.weight].T + w[op.bias]


def _log_softmax(op: LogSoftmax, values: Values, w: Values) -> mx.array:
    x = values[op.x]
    return x - mx.logsumexp(x, axis=-1, keepdims=True)


SEGMENTATION_OPS: dict[type, Callable[..., mx.array]] = {
    Waveform: _waveform,
    InstanceNorm: _instance_norm,
    Abs: _abs,
    MaxPool1d: _max_pool,
    LeakyRelu: _leaky_relu,
    LSTM: _lstm,
    Linear: _linear,
    LogSoftmax: _log_softmax,
}
