"""The small interface every inference engine implements, and the base of trunk engines."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from audio_cli.errors import EngineError
from audio_cli.weights import Weights

from .graph import Graph
from .head import Head, stats_pool, valid_steps


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
        self.head = Head(graph, weights)

    def encode(self, features: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """(B, T, n_mels) features -> (B, T', D) float32 frames (padded steps are garbage)."""
        raise NotImplementedError

    def embed(self, features: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """(B, T, n_mels) features (+ valid lengths) -> (B, dim) unit vectors."""
        features = np.asarray(features, dtype=np.float32)
        if features.ndim != 3:
            raise EngineError(f"expected (batch, frames, mel bins) features, got {features.shape}")
        if lengths is not None:
            lengths = np.asarray(lengths, dtype=np.int64)
            if lengths.shape != features.shape[:1] or lengths.max(initial=0) > features.shape[1]:
                raise EngineError(f"lengths {lengths.tolist()} do not fit features "
                                  f"{features.shape}")
            if not self.graph.time_local and np.any(lengths != features.shape[1]):
                raise EngineError("this network mixes the whole time axis; padded batches "
                                  "would change its vectors (batch equal lengths only)")
        frames = self.encode(features, lengths)
        steps = None if lengths is None else valid_steps(lengths, self.stride)
        return self.head(stats_pool(frames, steps))
