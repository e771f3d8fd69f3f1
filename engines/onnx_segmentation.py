"""ONNX translations of the waveform and recurrent ops (pyannote's segmentation network,
engines/segmentation.py), used by engines/onnx_export.py: sequences are (B, C, T), frames
(B, T, C), as there.
"""

from __future__ import annotations

import numpy as np

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

# torch stacks an LSTM's gate blocks as input, forget, cell, output; ONNX's LSTM wants input,
# output, forget, cell: ONNX block j is torch block TORCH_GATES[j].
TORCH_GATES = (0, 3, 1, 2)


def _waveform(g, op: Waveform) -> str:
    """(B, N) samples -> (B, 1, N) sequence."""
    axis = g.constant("wave.axis1", np.array([1], dtype=np.int64))
    return g.node("Unsqueeze", [op.x, axis], op.out)


def _instance_norm(g, op: InstanceNorm) -> str:
    return g.node("InstanceNormalization", [op.x, g.weight(op.weight), g.weight(op.bias)],
                  op.out, epsilon=op.EPS)


def _abs(g, op: Abs) -> str:
    return g.node("Abs", [op.x], op.out)


def _max_pool(g, op: MaxPool1d) -> str:
    return g.node("MaxPool", [op.x], op.out, kernel_shape=[op.kernel], strides=[op.stride])


def _leaky_relu(g, op: LeakyRelu) -> str:
    return g.node("LeakyRelu", [op.x], op.out, alpha=op.slope)


def _gates(array: np.ndarray) -> np.ndarray:
    """torch's [4H, ...] gate blocks in ONNX's order."""
    blocks = np.split(np.asarray(array, dtype=np.float32), 4, axis=0)
    return np.concatenate([blocks[j] for j in TORCH_GATES], axis=0)


def _lstm_layer(g, op: LSTM, x: str, layer: int) -> str:
    """One layer, (T, B, I) -> (T, B, D*H), directions side by side (forward first)."""
    n, directions = f"{op.out}/l{layer}", op.directions()

    def stacked(part: str) -> np.ndarray:
        return np.stack([_gates(g.tensors[f"{op.prefix}.{part}_l{layer}{d}"])
                         for d in directions])

    w, r = stacked("weight_ih"), stacked("weight_hh")  # (D, 4H, I), (D, 4H, H)
    bias = np.concatenate([stacked("bias_ih"), stacked("bias_hh")], axis=1)  # (D, 8H)
    hidden = r.shape[2]
    y = g.node("LSTM", [x, g.constant(f"{n}.W", w), g.constant(f"{n}.R", r),
                        g.constant(f"{n}.B", bias)], f"{n}/y", hidden_size=hidden,
               direction="bidirectional" if op.bidirectional else "forward")
    y = g.node("Transpose", [y], f"{n}/tbdh", perm=[0, 2, 1, 3])  # (T, D, B, H) -> (T, B, D, H)
    shape = g.constant("lstm.shape_tb", np.array([0, 0, -1], dtype=np.int64))
    return g.node("Reshape", [y, shape], f"{n}/out")


def _lstm(g, op: LSTM) -> str:
    """(B, T, C) frames -> time-major, the layers, back to (B, T, D*H)."""
    x = g.node("Transpose", [op.x], f"{op.out}/time_major", perm=[1, 0, 2])
    for layer in range(op.layers):
        x = _lstm_layer(g, op, x, layer)
    return g.node("Transpose", [x], op.out, perm=[1, 0, 2])


def _linear(g, op: Linear) -> str:
    """Frames (B, T, I) @ weight.T + bias."""
    weight = g.constant(f"{op.weight}/T",
                        np.asarray(g.tensors[op.weight], dtype=np.float32).T.copy())
    product = g.node("MatMul", [op.x, weight], f"{op.out}/matmul")
    return g.node("Add", [product, g.weight(op.bias)], op.out)


def _log_softmax(g, op: LogSoftmax) -> str:
    return g.node("LogSoftmax", [op.x], op.out, axis=-1)


SEGMENTATION_TRANSLATORS = {
    Waveform: _waveform,
    InstanceNorm: _instance_norm,
    Abs: _abs,
    MaxPool1d: _max_pool,
    LeakyRelu: _leaky_relu,
    LSTM: _lstm,
    Linear: _linear,
    LogSoftmax: _log_softmax,
}
