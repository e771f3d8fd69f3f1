"""MLX engine: the shared graph run with MLX (native on Apple Silicon, CPU elsewhere)."""

from __future__ import annotations

import numpy as np

from audio_cli.errors import EngineError

from .graph import (
    INPUT,
    OUTPUT,
    Add,
    Conv2d,
    Graph,
    L2Normalize,
    Linear,
    Relu,
    StatsPool,
    ToImage,
)

try:
    import mlx.core as mx
except ImportError as exc:  # pragma: no cover - depends on the platform
    raise EngineError(
        f"the MLX engine needs the 'mlx' package ({exc}); install it with: pip install 'mlx[cpu]'"
    ) from None

from .mlx_sequence import SEQUENCE_OPS, apply_sequence_op  # noqa: E402 - needs mlx imported


def _drops_after(graph: Graph) -> list[list[str]]:
    """For each op, the values no later op reads, so they can be released early."""
    last: dict[str, int] = {}
    for index, op in enumerate(graph.ops):
        for attr in ("x", "a", "b"):
            name = getattr(op, attr, None)
            if isinstance(name, str):
                last[name] = index
    drops: list[list[str]] = [[] for _ in graph.ops]
    for name, index in last.items():
        drops[index].append(name)
    return drops


def _stats_pool(x: mx.array) -> mx.array:
    """(B, F, T, C) NHWC map -> (B, 2*C*F) [mean ‖ unbiased std] over time, index c*F + f."""
    batch, freq, frames, channels = x.shape
    flat = mx.transpose(x, (0, 2, 3, 1)).reshape(batch, frames, channels * freq)
    mean = mx.mean(flat, axis=1)
    var = mx.sum(mx.square(flat - mean[:, None, :]), axis=1) / (frames - 1)
    return mx.concatenate([mean, mx.sqrt(var)], axis=-1)


class MLXEngine:
    """Interprets the shared graph with MLX ops in NHWC layout."""

    name = "mlx"

    def __init__(self, graph: Graph, weights: dict[str, np.ndarray]):
        self.graph = graph
        self.weights = {k: mx.array(weights[k], dtype=mx.float32) for k in graph.weight_names()}
        mx.eval(self.weights)
        self._drops = _drops_after(graph)

    def _apply(self, op, values: dict[str, mx.array]) -> mx.array:
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
        if isinstance(op, StatsPool):
            return _stats_pool(values[op.x])
        if isinstance(op, Linear):
            return values[op.x] @ w[op.weight].T + w[op.bias]
        if isinstance(op, L2Normalize):
            x = values[op.x]
            return x / mx.linalg.norm(x, axis=-1, keepdims=True)
        if isinstance(op, SEQUENCE_OPS):
            return apply_sequence_op(op, values, w)
        raise EngineError(f"MLX engine: unsupported op {type(op).__name__}")

    def embed(self, features: np.ndarray) -> np.ndarray:
        """(B, T, n_mels) features -> (B, dim) unit vectors."""
        values = {INPUT: mx.array(np.asarray(features, dtype=np.float32))}
        for index, op in enumerate(self.graph.ops):
            values[op.out] = self._apply(op, values)
            for name in self._drops[index]:
                values.pop(name, None)
        return np.array(values[OUTPUT], dtype=np.float32)
