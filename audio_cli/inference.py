"""Running an engine over many clips and over long ones: padded batches and exact chunks."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from .errors import EngineError
from .planning import Chunk, plan_batches, plan_chunks

DEFAULT_BATCH_FRAMES = 6000  # feature frames (60 s) in one padded batch
DEFAULT_CHUNK_FRAMES = 6000  # clips longer than this run in chunks of this many frames


def check_vectors(vectors: np.ndarray, engine_name: str) -> np.ndarray:
    """Refuse non-finite or zero vectors (an engine fault, never a result)."""
    if not np.isfinite(vectors).all() or not np.all(np.any(vectors, axis=-1)):
        raise EngineError(f"the {engine_name} engine returned a non-finite or zero vector")
    return vectors


class Inference:
    """An engine plus the plans that let it run batches of mixed lengths and long clips."""

    def __init__(self, engine, graph, batch_frames: int = DEFAULT_BATCH_FRAMES,
                 chunk_frames: int = DEFAULT_CHUNK_FRAMES):
        self.engine = engine
        self.graph = graph
        self.batch_frames = batch_frames
        self.chunk_frames = chunk_frames
        # A time-local trunk run by the engine itself: padding can be masked out of a batch
        # and a long clip cut into chunks, both exactly.
        trunk = hasattr(engine, "encode") and hasattr(engine, "head")
        self.splits_exactly = trunk and graph.time_local

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """(T_i, F) feature clips of any lengths -> (N, dim) unit vectors, in the given order."""
        out: list[np.ndarray | None] = [None] * len(clips)
        short = [i for i, c in enumerate(clips) if not self.needs_chunks(len(c))]
        for i in set(range(len(clips))) - set(short):
            out[i] = self.embed_long(clips[i])
        lengths = [len(clips[i]) for i in short]
        for batch in plan_batches(lengths, self.batch_frames, self.splits_exactly):
            members = [short[b] for b in batch]
            for index, vector in zip(members, self._run_batch([clips[i] for i in members]),
                                     strict=True):
                out[index] = vector
        return np.stack(out) if out else np.zeros((0, 0), dtype=np.float32)

    def needs_chunks(self, frames: int) -> bool:
        """True for a clip this engine runs in chunks (longer than a chunk, trunk time-local)."""
        return self.splits_exactly and frames > self.chunk_frames

    def plan(self, frames: int) -> list[Chunk]:
        """The chunks a clip of `frames` feature frames runs as."""
        return plan_chunks(frames, self.chunk_frames, self.graph.time_stride,
                           self.graph.receptive_radius())

    def _run_batch(self, clips: list[np.ndarray]) -> np.ndarray:
        lengths = np.array([len(c) for c in clips], dtype=np.int64)
        longest = int(lengths.max())
        if np.all(lengths == longest):
            return check_vectors(self.engine.embed(np.stack(clips)), self.engine.name)
        batch = np.zeros((len(clips), longest, clips[0].shape[1]), dtype=np.float32)
        for row, clip in zip(batch, clips, strict=True):
            row[: len(clip)] = clip
        return check_vectors(self.engine.embed(batch, lengths), self.engine.name)

    def embed_long(self, features: np.ndarray) -> np.ndarray:
        """(T, F) features of one long clip -> (dim,), run chunk by chunk, pooled exactly."""
        plan = self.plan(len(features))
        spans = (features[c.start:c.stop] for c in plan)
        return self.embed_spans(plan, spans)

    def embed_spans(self, plan: list[Chunk], spans: Iterable[np.ndarray]) -> np.ndarray:
        """Pool the kept steps of each chunk's features (given in plan order) -> (dim,)."""
        from engines.head import FrameStats

        stride = self.graph.time_stride
        stats = None
        for chunk, span in zip(plan, spans, strict=True):
            frames = self.engine.encode(np.asarray(span, dtype=np.float32)[None])[0]
            piece = FrameStats.of(frames[chunk.local_steps(stride)])
            stats = piece if stats is None else stats.merge(piece)
        if stats is None:
            raise EngineError("no chunks to embed")
        vector = self.engine.head(stats.pooled()[None])
        return check_vectors(vector, self.engine.name)[0]
