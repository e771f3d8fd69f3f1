"""MLX engine: the shared graph run with MLX (native on Apple Silicon, CPU elsewhere)."""

from __future__ import annotations

import numpy as np

from engines.errors import EngineError
from engines.graph import (
    FRAMES,
    INPUT,
    Add,
    Conv2d,
    Graph,
    Mask,
    Relu,
    TimeMean,
    ToFrames,
    ToImage,
    op_inputs,
)
from engines.head import TrunkEngine
from engines.model import Weights

try:
    import mlx.core as mx
except ImportError as exc:  # pragma: no cover - depends on the platform
    raise EngineError(
        f"the MLX engine needs the 'mlx' package ({exc}); install it with: pip install 'mlx[cpu]'"
    ) from None

from engines.mlx_segmentation import SEGMENTATION_OPS  # noqa: E402 - needs mlx imported
from engines.mlx_sequence import SEQUENCE_OPS  # noqa: E402 - needs mlx imported


def _drops_after(ops: list) -> list[list[str]]:
    """For each op, the values no later op reads, so they can be released early."""
    last: dict[str, int] = {}
    for index, op in enumerate(ops):
        for name in op_inputs(op):
            last[name] = index
    drops: list[list[str]] = [[] for _ in ops]
    for name, index in last.items():
        drops[index].append(name)
    return drops


# One function per image op: (engine, op, values, valid lengths or None) -> output.


def _to_image(engine: MLXEngine, op: ToImage, values, lengths) -> mx.array:
    return mx.transpose(values[op.x], (0, 2, 1))[..., None]


def _conv2d(engine: MLXEngine, op: Conv2d, values, lengths) -> mx.array:
    w = engine.weights
    return mx.conv2d(values[op.x], w[op.weight], stride=op.stride, padding=op.padding) + w[op.bias]


def _relu(engine: MLXEngine, op: Relu, values, lengths) -> mx.array:
    return mx.maximum(values[op.x], 0.0)


def _add(engine: MLXEngine, op: Add, values, lengths) -> mx.array:
    return values[op.a] + values[op.b]


def _mask(engine: MLXEngine, op: Mask, values, lengths) -> mx.array:
    x = values[op.x]
    if lengths is None:
        return x
    stride = engine.strides[op.x]
    valid = (lengths + stride - 1) // stride
    keep = mx.arange(x.shape[2])[None, :] < valid[:, None]  # (B, T_s)
    return x * keep[:, None, :, None].astype(x.dtype)


def _time_mean(engine: MLXEngine, op: TimeMean, values, lengths) -> mx.array:
    """(B, T, C) -> (B, 1, C), the mean over each clip's valid steps."""
    x = values[op.x]
    if lengths is None:
        return mx.mean(x, axis=1, keepdims=True)
    stride = engine.strides[op.x]
    valid = (lengths + stride - 1) // stride
    keep = (mx.arange(x.shape[1])[None, :] < valid[:, None]).astype(x.dtype)[:, :, None]
    return mx.sum(x * keep, axis=1, keepdims=True) / valid[:, None, None].astype(x.dtype)


def _to_frames(engine: MLXEngine, op: ToFrames, values, lengths) -> mx.array:
    """(B, F, T, C) -> (B, T, C*F), index c*F + f."""
    batch, freq, steps, channels = values[op.x].shape
    return mx.transpose(values[op.x], (0, 2, 3, 1)).reshape(batch, steps, channels * freq)


def _sequence_op(engine: MLXEngine, op, values, lengths) -> mx.array:
    return SEQUENCE_OPS[type(op)](op, values, engine.weights)


def _segmentation_op(engine: MLXEngine, op, values, lengths) -> mx.array:
    return SEGMENTATION_OPS[type(op)](op, values, engine.weights)


_APPLY = {
    ToImage: _to_image,
    Conv2d: _conv2d,
    Relu: _relu,
    Add: _add,
    Mask: _mask,
    ToFrames: _to_frames,
    **dict.fromkeys(SEQUENCE_OPS, _sequence_op),
    **dict.fromkeys(SEGMENTATION_OPS, _segmentation_op),
    TimeMean: _time_mean,  # (SEQUENCE_OPS's, but over the valid steps of a padded batch)
}
SUPPORTED_OPS: frozenset[type] = frozenset(_APPLY)  # graph op types this engine runs


class MLXEngine(TrunkEngine):
    """Interprets the graph's trunk with MLX ops in NHWC layout."""

    name = "mlx"

    def __init__(self, graph: Graph, weights: Weights | dict[str, np.ndarray]):
        if not isinstance(weights, Weights):
            weights = Weights(tensors=weights)
        super().__init__(graph, weights)
        self.ops = graph.trunk_ops()
        missing = sorted({type(op).__name__ for op in self.ops if type(op) not in _APPLY})
        if missing:
            raise EngineError(f"MLX engine: unsupported op(s) {', '.join(missing)}")
        tensors = weights.tensors()
        names = [n for op in self.ops for n in (getattr(op, "weight", None),
                                                 getattr(op, "bias", None),
                                                 *(op.weight_names() if hasattr(op, "weight_names")
                                                   else ())) if n]
        self.weights = {k: mx.array(tensors[k], dtype=mx.float32) for k in names}
        mx.eval(self.weights)
        self._drops = _drops_after(self.ops)
        self.strides = graph.strides()

    def encode(self, features: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """(B, T, n_mels) features, or (B, N) samples for a waveform graph -> (B, T', D)."""
        values = {INPUT: mx.array(np.asarray(features, dtype=np.float32))}
        valid = None if lengths is None else mx.array(np.asarray(lengths, dtype=np.int32))
        for index, op in enumerate(self.ops):
            values[op.out] = _APPLY[type(op)](self, op, values, valid)
            for name in self._drops[index]:
                values.pop(name, None)
        return np.array(values[FRAMES], dtype=np.float32)
