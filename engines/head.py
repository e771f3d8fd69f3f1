"""The head every engine shares: pooled statistics over the trunk's frames, then the projection.

The trunk (run by an engine) gives (B, T', D) frames; here they become [mean ‖ unbiased std]
over the valid steps of each clip (StatsPool), then Linear, then L2Normalize, in float64.
`FrameStats` accumulates the same statistics over consecutive pieces of one long clip
(Chan et al.'s pairwise update), so a chunked pass pools exactly like a single one.
`Engine` is the interface every engine implements; `TrunkEngine` is the base of those that
run only the trunk and leave pooling and projection to this head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engines.errors import EngineError
from engines.graph import AttentivePool, Graph, L2Normalize, Linear, Relu, StatsPool
from engines.model import Weights


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


def attentive_pool(frames: np.ndarray, w: list[np.ndarray]) -> np.ndarray:
    """(T', D) frames -> (2*D,) float64 AttentivePool statistics; `w` in AttentivePool.PARTS
    order."""
    x = np.asarray(frames, dtype=np.float64)
    tdnn, tdnn_bias, scale, shift, attention, attention_bias = w
    width = x.shape[1]
    mean = x.mean(axis=0)
    std = np.sqrt(np.maximum(np.square(x - mean).mean(axis=0), AttentivePool.EPS))
    # W1 [x ‖ mean ‖ std]: the two utterance-wide parts are one vector for every step
    constant = tdnn[:, width : 2 * width] @ mean + tdnn[:, 2 * width :] @ std + tdnn_bias
    hidden = np.maximum(x @ tdnn[:, :width].T + constant, 0.0) * scale + shift
    energy = np.tanh(hidden) @ attention.T + attention_bias  # (T', D)
    alpha = np.exp(energy - energy.max(axis=0))
    alpha /= alpha.sum(axis=0)
    mu = (alpha * x).sum(axis=0)
    sigma = np.sqrt(np.maximum((alpha * np.square(x - mu)).sum(axis=0), AttentivePool.EPS))
    return np.concatenate([mu, sigma])


HEAD_OPS: frozenset[type] = frozenset({StatsPool, AttentivePool, Linear, L2Normalize})
HEAD_ALSO: frozenset[type] = frozenset({Relu})  # trunk ops that the head evaluates as well
POOLING_OPS = (StatsPool, AttentivePool)  # a head's first op


def head_weight_names(graph: Graph) -> list[str]:
    """The tensors the head of a graph reads."""
    names = []
    for op in graph.head_ops():
        if isinstance(op, Linear):
            names += [op.weight, op.bias]
        elif isinstance(op, AttentivePool):
            names += op.weight_names()
    return names


class Head:
    """The graph's ops after FRAMES, evaluated in numpy with the model's weights."""

    def __init__(self, graph: Graph, weights: Weights):
        self.ops = graph.head_ops()
        kinds = [type(op) for op in self.ops]
        later = (HEAD_OPS | HEAD_ALSO) - set(POOLING_OPS)
        if not kinds or kinds[0] not in POOLING_OPS or not set(kinds[1:]) <= later:
            raise EngineError(f"unsupported head {[k.__name__ for k in kinds]}")
        self.weights = {name: np.asarray(value, dtype=np.float64)
                        for name, value in weights.some(head_weight_names(graph)).items()}

    def pool(self, frames: np.ndarray, steps: np.ndarray | None = None) -> np.ndarray:
        """(B, T', D) frames -> (B, 2*D) float64 pooled over each clip's valid steps."""
        first = self.ops[0]
        if isinstance(first, StatsPool):
            return stats_pool(frames, steps)
        w = [self.weights[name] for name in first.weight_names()]
        steps = np.full(frames.shape[0], frames.shape[1]) if steps is None else steps
        return np.stack([attentive_pool(f[:n], w) for f, n in zip(frames, steps, strict=True)])

    def __call__(self, pooled: np.ndarray) -> np.ndarray:
        """(B, 2*D) pooled statistics -> (B, dim) float32 (unit vectors for our graphs)."""
        x = np.asarray(pooled, dtype=np.float64)
        for op in self.ops[1:]:
            if isinstance(op, Linear):
                x = x @ self.weights[op.weight].T + self.weights[op.bias]
            elif isinstance(op, Relu):
                x = np.maximum(x, 0.0)
            else:
                norm = np.linalg.norm(x, axis=-1, keepdims=True)
                x = x / np.where(norm > 0, norm, np.nan)  # a zero vector becomes NaN: caught
        return x.astype(np.float32)


class Engine(Protocol):
    """Runs a speaker network on batches of features."""

    name: str

    def embed(self, features: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """(B, T, n_mels) float32 features after CMN -> (B, dim) float32 L2-normalised vectors.

        `lengths` (B,) gives each clip's valid frames when shorter clips are zero-padded to T.
        """
        ...


class TrunkEngine:
    """An engine that runs the graph's trunk (`encode`); pooling and projection are shared."""

    name = "trunk"

    def __init__(self, graph: Graph, weights: Weights):
        self.graph = graph
        self.stride = graph.time_stride
        # a graph without a head (a segmentation network) has frames as its output: no embed
        self.head = Head(graph, weights) if graph.head_ops() else None
        self.pool = self.head.pool if self.head else None  # frames -> pooled statistics

    def encode(self, features: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """(B, T, n_mels) features -> (B, T', D) float32 frames (padded steps are garbage)."""
        raise NotImplementedError

    def embed(self, features: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """(B, T, n_mels) features (+ valid lengths) -> (B, dim) unit vectors."""
        if self.head is None:
            raise EngineError("this network has no embedding head (its frames are its output)")
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 3:
            raise EngineError(f"expected (batch, frames, mel bins) features, got {features.shape}")
        if lengths is not None:
            lengths = np.asarray(lengths, dtype=np.int64)
            if lengths.shape != features.shape[:1] or lengths.max(initial=0) > features.shape[1]:
                raise EngineError(f"lengths {lengths.tolist()} do not fit features "
                                  f"{features.shape}")
            if not self.graph.time_local and not self.graph.pad_to and \
                    np.any(lengths != features.shape[1]):
                raise EngineError("this network mixes the whole time axis; padded batches "
                                  "would change its vectors (batch equal lengths only)")
        frames = self.encode(features, lengths)
        steps = None if lengths is None else valid_steps(lengths, self.stride)
        return self.head(self.pool(frames, steps))
