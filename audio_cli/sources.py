"""Many inputs in one call: decode and featurise in input order, embed in padded batches."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .audio_io import Audio, check_usable, load_audio
from .errors import EngineError, InputAudioError

GROUP_FRAMES = 24000  # feature frames (4 min of audio) decoded before a group is embedded
GROUP_FILES = 64


@dataclass
class _Pending:
    """One input waiting in a group: its audio and features, or why it failed."""

    source: str
    audio: Audio | None = None
    features: np.ndarray | None = None
    seconds: float = 0.0  # decode + features time
    error: Exception | None = None


def _prepare(speaker, source: str | os.PathLike, min_duration: float) -> _Pending:
    start = time.perf_counter()
    try:
        audio = load_audio(source, speaker.config.sample_rate)
        check_usable(audio, min_duration)
        features = speaker.features(audio)
    except (InputAudioError, EngineError) as exc:
        return _Pending(str(source), error=exc)
    return _Pending(str(source), audio, features, time.perf_counter() - start)


def _flush(speaker, group: list[_Pending]) -> Iterator:
    """Embed a group's good inputs together; yield one result per input, in order."""
    from .speaker import EmbeddingResult, InputFailure

    good = [p for p in group if p.error is None]
    start = time.perf_counter()
    try:
        vectors = speaker.embed_features([p.features for p in good]) if good else []
    except (InputAudioError, EngineError):
        vectors = None  # find the input at fault: embed each alone
    network = time.perf_counter() - start
    total = sum(len(p.features) for p in good) or 1
    results = dict(zip(map(id, good), vectors, strict=True)) if vectors is not None else {}
    for p in group:
        if p.error is None and id(p) not in results:
            try:
                results[id(p)] = speaker.embed_features(p.features)
            except (InputAudioError, EngineError) as exc:
                p.error = exc
        if p.error is not None:
            yield InputFailure(p.source, p.error)
            continue
        share = network * len(p.features) / total
        yield EmbeddingResult(results[id(p)], p.audio.source, p.audio.duration,
                              p.audio.source_rate, speaker.model_id, speaker.engine_name,
                              p.seconds + share)


def embed_sources(speaker, sources: Iterable[str | os.PathLike],
               min_duration: float) -> Iterator:
    """Yield an EmbeddingResult or InputFailure per source, in order, group by group."""
    group: list[_Pending] = []
    frames = 0
    for source in sources:
        group.append(_prepare(speaker, source, min_duration))
        frames += 0 if group[-1].features is None else len(group[-1].features)
        if frames >= GROUP_FRAMES or len(group) >= GROUP_FILES:
            yield from _flush(speaker, group)
            group, frames = [], 0
    yield from _flush(speaker, group)
