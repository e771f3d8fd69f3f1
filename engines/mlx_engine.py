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

from engines.mlx_sequence import SEQUENCE_OPS, apply_sequence_op  # noqa: E402 - needs mlx imported


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


class MLXEngine(TrunkEngine):
    """Interprets the graph's trunk with MLX ops in NHWC layout."""

    name = "mlx"

    def __init__(self, graph: Graph, weights: Weights | dict[str, np.ndarray]):
        if not isinstance(weights, Weights):
            weights = Weights(tensors=weights)
        super().__init__(graph, weights)
        self.ops = graph.trunk_ops()
        tensors = weights.tensors()
        names = [n for op in self.ops for n in (getattr(op, "weight", None),
                                                 getattr(op, "bias", None)) if n]
        self.weights = {k: mx.array(tensors[k], dtype=mx.float32) for k in names}
        mx.eval(self.weights)
        self._drops = _drops_after(self.ops)
        self._strides = graph.strides()

    def _mask(self, x: mx.array, stride: int, lengths: mx.array | None) -> mx.array:
        if lengths is None:
            return x
        valid = (lengths + stride - 1) // stride
        keep = mx.arange(x.shape[2])[None, :] < valid[:, None]  # (B, T_s)
        return x * keep[:, None, :, None].astype(x.dtype)

    def _apply(self, op, values: dict[str, mx.array], lengths: mx.array | None) -> mx.array:
        w = self.weights
        if isinstance(op, ToImage):
            return mx.transpose(values[op.x], (0, 2, 1))[..., None]
        if isinstance(op, Conv2d):
            y = mx.conv2d(values[op.x], w[op.weight], stride=op.stride, padding=op.padding)
            return y + w[op.bias]
        if isinstance(op, Relu):
            return mx.maximum(values[op.x], 0.0)
        if isinstance(op, Add):
            return values[op.a] + values[op.b]
        if isinstance(op, Mask):
            return self._mask(values[op.x], self._strides[op.x], lengths)
        if isinstance(op, ToFrames):  # (B, F, T, C) -> (B, T, C*F), index c*F + f
            batch, freq, steps, channels = values[op.x].shape
            moved = mx.transpose(values[op.x], (0, 2, 3, 1))
            return moved.reshape(batch, steps, channels * freq)
        if isinstance(op, SEQUENCE_OPS):
            return apply_sequence_op(op, values, w)
        raise EngineError(f"MLX engine: unsupported op {type(op).__name__}")

    def encode(self, features: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """(B, T, n_mels) features -> (B, T', D) frames."""
        values = {INPUT: mx.array(np.asarray(features, dtype=np.float32))}
        valid = None if lengths is None else mx.array(np.asarray(lengths, dtype=np.int32))
        for index, op in enumerate(self.ops):
            values[op.out] = self._apply(op, values, valid)
            for name in self._drops[index]:
                values.pop(name, None)
        return np.array(values[FRAMES], dtype=np.float32)
