"""Many inputs in one call: decode and featurise in input order, embed in padded batches.

A recording longer than the engine's chunk size is not decoded into memory: it streams
twice through the decoder (pass 1: CMN mean, peak, decoding errors; pass 2: features of each
chunk's span), so its memory is bounded by the chunk size whatever its length.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .audio_io import check_duration, check_peak, check_usable
from .audio_stream import AudioSource, open_audio
from .errors import EngineError, InputAudioError
from .feature_stream import feature_spans, log_mel_stats, source_frames

GROUP_FRAMES = 24000  # feature frames (4 min of audio) decoded before a group is embedded
GROUP_FILES = 64


@dataclass
class _Pending:
    """One input waiting in a group: its features (or finished vector), or why it failed."""

    source: str
    stream: AudioSource | None = None
    features: np.ndarray | None = None
    vector: np.ndarray | None = None  # already embedded: a streamed long recording
    seconds: float = 0.0  # decode + features (+ network, when streamed) time
    error: Exception | None = None

    @property
    def frames(self) -> int:
        return 0 if self.features is None else len(self.features)


def embed_streamed(speaker, stream: AudioSource, min_duration: float) -> np.ndarray:
    """Embed a long recording chunk by chunk in two streaming passes (bounded memory)."""
    frontend = speaker.config.frontend
    check_duration(stream.name, stream.duration, min_duration)
    stats = log_mel_stats(stream, frontend)
    check_peak(stream.name, stats.peak)
    plan = speaker.inference.plan(stats.frames)
    spans = feature_spans(stream, frontend, [(c.start, c.stop) for c in plan],
                          stats.mean if frontend.cmn else None)
    return speaker.inference.embed_spans(plan, spans)


def _prepare(speaker, source: str | os.PathLike, min_duration: float) -> _Pending:
    """Decode and featurise one input, or embed it at once if it must stream."""
    start = time.perf_counter()
    pending = _Pending(str(source))
    try:
        pending.stream = stream = open_audio(source, speaker.config.sample_rate)
        if speaker.inference.needs_chunks(source_frames(stream, speaker.config.frontend)):
            pending.vector = embed_streamed(speaker, stream, min_duration)
        else:
            audio = stream.read_audio()
            check_usable(audio, min_duration)
            pending.features = speaker.features(audio)
    except (InputAudioError, EngineError) as exc:
        pending.error = exc
    pending.seconds = time.perf_counter() - start
    return pending


def _flush(speaker, group: list[_Pending]) -> Iterator:
    """Embed a group's featurised inputs together; yield one result per input, in order."""
    from .speaker import EmbeddingResult, InputFailure

    todo = [p for p in group if p.error is None and p.vector is None]
    start = time.perf_counter()
    try:
        vectors = speaker.embed_features([p.features for p in todo]) if todo else []
    except (InputAudioError, EngineError):
        vectors = [None] * len(todo)  # find the input at fault: embed each alone below
    network = time.perf_counter() - start
    total = sum(p.frames for p in todo) or 1
    for p, vector in zip(todo, vectors, strict=True):
        p.vector = vector
        p.seconds += network * p.frames / total
    for p in group:
        if p.error is None and p.vector is None:
            try:
                p.vector = speaker.embed_features(p.features)
            except (InputAudioError, EngineError) as exc:
                p.error = exc
        if p.error is not None:
            yield InputFailure(p.source, p.error)
        else:
            s = p.stream
            yield EmbeddingResult(p.vector, s.name, s.duration, s.source_rate, speaker.model_id,
                                  speaker.engine_name, p.seconds)


def embed_sources(speaker, sources: Iterable[str | os.PathLike],
                  min_duration: float) -> Iterator:
    """Yield an EmbeddingResult or InputFailure per source, in order, group by group."""
    group: list[_Pending] = []
    frames = 0
    for source in sources:
        group.append(_prepare(speaker, source, min_duration))
        frames += group[-1].frames
        if frames >= GROUP_FRAMES or len(group) >= GROUP_FILES:
            yield from _flush(speaker, group)
            group, frames = [], 0
    yield from _flush(speaker, group)
