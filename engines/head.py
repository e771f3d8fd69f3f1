"""The head every engine shares: pooled statistics over the trunk's frames, then the projection.

The trunk (run by an engine) gives (B, T', D) frames; here they become [mean ‖ unbiased std]
over the valid steps of each clip (StatsPool), then Linear, then L2Normalize, in float64.
`FrameStats` accumulates the same statistics over consecutive pieces of one long clip
(Chan et al.'s pairwise update), so a chunked pass pools exactly like a single one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio_cli.errors import EngineError
from audio_cli.weights import Weights

from .graph import Graph, L2Normalize, Linear, StatsPool


def valid_steps(lengths: np.ndarray, stride: int) -> np.ndarray:
    """Valid time steps after downsampling by `stride`: ceil(length / stride)."""
    return -(-np.asarray(lengths, dtype=np.int64) // stride)


@dataclass
class FrameStats:
    """Count, mean and sum of squared deviations of frame vectors, mergeable piece by piece."""

    count: int
    mean: np.ndarray  # (D,) float64
    m2: np.ndarray  # (D,) float64

    @classmethod
    def of(cls, frames: np.ndarray) -> FrameStats:
        """Statistics of (T', D) frames."""
        x = np.asarray(frames, dtype=np.float64)
        mean = x.mean(axis=0)
        return cls(x.shape[0], mean, np.square(x - mean).sum(axis=0))

    def merge(self, other: FrameStats) -> FrameStats:
        """Statistics of both sets of frames together."""
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        m2 = self.m2 + other.m2 + np.square(delta) * (self.count * other.count / count)
        return FrameStats(count, mean, m2)

    def pooled(self) -> np.ndarray:
        """(2*D,) [mean ‖ unbiased std]; needs at least two frames."""
        if self.count < 2:
            raise EngineError(f"pooling needs at least 2 time steps, got {self.count}")
        return np.concatenate([self.mean, np.sqrt(self.m2 / (self.count - 1))])


def stats_pool(frames: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
    """(B, T', D) frames -> (B, 2*D) float64 pooled statistics over each clip's valid steps."""
    count = frames.shape[1]
    steps = np.full(frames.shape[0], count) if steps is None else np.asarray(steps)
    return np.stack([FrameStats.of(f[:n]).pooled() for f, n in zip(frames, steps, strict=True)])


def head_weight_names(graph: Graph) -> list[str]:
    """The tensors the head of a graph reads."""
    return [name for op in graph.head_ops() if isinstance(op, Linear)
            for name in (op.weight, op.bias)]


class Head:
    """The graph's ops after FRAMES, evaluated in numpy with the model's weights."""

    def __init__(self, graph: Graph, weights: Weights):
        self.ops = graph.head_ops()
        kinds = [type(op) for op in self.ops]
        if not kinds or kinds[0] is not StatsPool or not set(kinds[1:]) <= {Linear, L2Normalize}:
            raise EngineError(f"unsupported head {[k.__name__ for k in kinds]}")
        self.weights = {name: np.asarray(value, dtype=np.float64)
                        for name, value in weights.some(head_weight_names(graph)).items()}

    def __call__(self, pooled: np.ndarray) -> np.ndarray:
        """(B, 2*D) pooled statistics -> (B, dim) float32 (unit vectors for our graphs)."""
        x = np.asarray(pooled, dtype=np.float64)
        for op in self.ops[1:]:
            if isinstance(op, Linear):
                x = x @ self.weights[op.weight].T + self.weights[op.bias]
            else:
                norm = np.linalg.norm(x, axis=-1, keepdims=True)
                x = x / np.where(norm > 0, norm, np.nan)  # a zero vector becomes NaN: caught
        return x.astype(np.float32)
