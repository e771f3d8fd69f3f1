"""Running the network over many inputs: decode and featurise in input order, embed in padded
batches, and run long clips in exact chunks (streamed from disk when they are files).

`embed_sources` yields one EmbeddingResult or InputFailure per input, in order. A recording
longer than the engine's chunk size is not decoded into memory: it streams twice through the
decoder (pass 1: CMN mean, peak, decoding errors; pass 2: features of each chunk's span).

Batches: clips sorted by length, grouped so that padding wastes little (every clip in a batch
is at least MIN_FILL of the longest) and a batch holds at most `budget` frames in all. The
engines mask the padding, so a clip's vector is the one it gets alone.

Long clips run in exact chunks (engines.stages): a time-local trunk (ResNet34) in overlapping
spans, a trunk that mixes the whole clip (CAM++) stage by stage, each stage in such spans.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from audio_cli.frontend.audio import AudioSource, check_usable, open_audio
from audio_cli.frontend.checks import check_duration, check_peak, warn
from audio_cli.frontend.fbank import feature_spans, log_mel_stats, source_frames, streams
from audio_cli.pipeline.results import EmbeddingResult, InputFailure
from engines.errors import EngineError, InputAudioError

# ---------------------------------------------------------------- threads

_blas = None  # threadpoolctl's controller of the BLAS libraries loaded (made on first use)


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run numpy's BLAS on one thread inside the block (restored after it).

    The front-end and the head make only small matrix products, which extra BLAS threads do
    not speed up; but OpenBLAS's idle threads busy-wait after each product, on the very cores
    onnxruntime's threads need next. Measured with 40 files on 2 cores: end to end at 0.65-0.83
    of a bare onnxruntime session with BLAS's default threads, 0.89-1.0 with one.
    """
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController

        _blas = ThreadpoolController()
    with _blas.limit(limits=1, user_api="blas"):
        yield


# ---------------------------------------------------------------- plans

MIN_FILL = 0.8  # shortest clip / longest clip within one padded batch


def plan_batches(lengths: Sequence[int], budget: int, ragged: bool = True) -> list[list[int]]:
    """Indices of clips grouped into batches (each sorted by length, batches by length).

    With `ragged` False (a trunk that cannot be masked), only equal lengths share a batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for index in order:
        length = lengths[index]
        if batches:
            current = batches[-1]
            first = lengths[current[0]]
            fits = (len(current) + 1) * length <= budget
            similar = first >= MIN_FILL * length if ragged else first == length
            if fits and similar:
                current.append(index)
                continue
        batches.append([index])
    return batches


# ---------------------------------------------------------------- running an engine

DEFAULT_BATCH_FRAMES = 6000  # feature frames (60 s) in one padded batch
DEFAULT_CHUNK_FRAMES = 6000  # clips longer than this run in chunks of this many frames
# Chunks of a staged trunk, in each stage's input steps: one hour of CAM++ through the CLI
# peaked at 1.70 GB with chunks of 6000 (a 1024-channel chunk and its intermediates, and the
# 2-D front module's maps, are held in onnxruntime's arena after use), 1.34 GB with 2000.
STAGE_CHUNK_STEPS = 2000


def check_vectors(vectors: np.ndarray, engine_name: str) -> np.ndarray:
    """Refuse non-finite or zero vectors (an engine fault, never a result)."""
    if not np.isfinite(vectors).all() or not np.all(np.any(vectors, axis=-1)):
        raise EngineError(f"the {engine_name} engine returned a non-finite or zero vector")
    return vectors


class Inference:
    """An engine plus the plans that let it run batches of mixed lengths and long clips."""

    def __init__(self, engine, graph, batch_frames: int | None = None,
                 chunk_frames: int = DEFAULT_CHUNK_FRAMES):
        self.engine = engine
        self.graph = graph
        # Padded batches only where they pay (an accelerator); on a CPU each clip runs alone
        # (budget 0), which also bounds memory by the longest clip, not by the batch.
        if batch_frames is None:
            batch_frames = DEFAULT_BATCH_FRAMES if getattr(engine, "batches_pay", True) else 0
        self.batch_frames = batch_frames
        self.chunk_frames = chunk_frames
        # A time-local trunk run by the engine itself: padding can be masked out of a batch
        # and a long clip cut into chunks, both exactly.
        # (An attention-pooled head needs every frame at once: no chunks; NeMo's TitaNet.)
        trunk = hasattr(engine, "encode") and hasattr(engine, "head") and graph.pools_by_stats
        self.splits_exactly = trunk and graph.time_local
        # A trunk that mixes the whole clip (CAM++) runs a long clip stage by stage instead,
        # exactly and in bounded memory, where the engine runs stages (engines.stages).
        self.stages = None
        if trunk and not graph.time_local and hasattr(engine, "run_stage"):
            from engines.stages import can_stage, plan_stages  # (only where used: start-up)

            self.stages = plan_stages(graph) if can_stage(graph) else None
        self.stage_chunk = min(chunk_frames, STAGE_CHUNK_STEPS)

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
        """True for a clip this engine runs in chunks: longer than a chunk, and a time-local
        trunk or one that runs in stages."""
        return (self.splits_exactly or self.stages is not None) and frames > self.chunk_frames

    def plan(self, frames: int) -> list:
        """The chunks (engines.stages.Chunk) a clip of `frames` feature frames runs as (its
        first stage's, if staged)."""
        from engines.stages import plan_chunks

        if self.stages is not None:
            first = self.stages[0]
            return plan_chunks(frames, self.stage_chunk, first.stride, first.radius)
        return plan_chunks(frames, self.chunk_frames, self.graph.time_stride,
                           self.graph.receptive_radius())

    def _run_batch(self, clips: list[np.ndarray]) -> np.ndarray:
        lengths = np.array([len(c) for c in clips], dtype=np.int64)
        longest = int(lengths.max())
        pad_to = self.graph.pad_to  # run padded as the original ran it (NeMo's ECAPA)
        width = -(-longest // pad_to) * pad_to if pad_to else longest
        if width == longest and np.all(lengths == longest):
            return check_vectors(self.engine.embed(np.stack(clips)), self.engine.name)
        batch = np.zeros((len(clips), width, clips[0].shape[1]), dtype=np.float32)
        for row, clip in zip(batch, clips, strict=True):
            row[: len(clip)] = clip
        return check_vectors(self.engine.embed(batch, lengths), self.engine.name)

    def embed_long(self, features: np.ndarray) -> np.ndarray:
        """(T, F) features of one long clip -> (dim,), run chunk by chunk, pooled exactly."""
        plan = self.plan(len(features))
        spans = (features[c.start:c.stop] for c in plan)
        return self.embed_spans(plan, spans)

    def embed_spans(self, plan: list, spans: Iterable[np.ndarray]) -> np.ndarray:
        """Pool the kept steps of each chunk's features (given in plan order) -> (dim,)."""
        from engines.head import FrameStats

        spans = (np.asarray(span, dtype=np.float32) for span in spans)
        if self.stages is not None:
            from engines.stages import run_stages

            if getattr(self.engine, "precision", "float32") != "float32":
                warn(f"--precision {self.engine.precision}: clips over "
                     f"{self.chunk_frames / 100:.0f} s run stage by stage in float32 (their "
                     "vectors are float32's)")
            stats = run_stages(self.stages, self.engine.run_stage, plan, spans,
                               self.stage_chunk)
            return check_vectors(self.engine.head(stats.pooled()[None]), self.engine.name)[0]
        stride = self.graph.time_stride
        stats = None
        for chunk, span in zip(plan, spans, strict=True):
            frames = self.engine.encode(span[None])[0]
            piece = FrameStats.of(frames[chunk.local_steps(stride)])
            stats = piece if stats is None else stats.merge(piece)
        if stats is None:
            raise EngineError("no chunks to embed")
        vector = self.engine.head(stats.pooled()[None])
        return check_vectors(vector, self.engine.name)[0]


# ---------------------------------------------------------------- many inputs

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
    check_peak(stream.name, stats.peak, getattr(stream, "spread", None))
    plan = speaker.inference.plan(stats.frames)
    spans = feature_spans(stream, frontend, [(c.start, c.stop) for c in plan],
                          stats.mean if frontend.cmn else None)
    return speaker.inference.embed_spans(plan, spans)


def _prepare(speaker, source: str | os.PathLike, min_duration: float, vad: bool = False
             ) -> _Pending:
    """Decode and featurise one input, or embed it at once if it must stream. With `vad`,
    only the speech the detector finds is featurised (frontend.vad.SpeechSource)."""
    start = time.perf_counter()
    pending = _Pending(str(source))
    try:
        pending.stream = stream = open_audio(source, speaker.config.sample_rate,
                                             speaker.max_duration)
        if vad:
            from audio_cli.frontend.vad import detect_source

            check_duration(stream.name, stream.duration, min_duration)
            pending.stream = stream = detect_source(stream, min_duration)
        frontend = speaker.config.frontend
        if streams(frontend) and speaker.inference.needs_chunks(source_frames(stream, frontend)):
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
    """Embed a group's featurised inputs together; yield one result per input, in order.
    speaker.embed_features holds numpy's BLAS on one thread itself."""
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
            whole = getattr(s, "recording_duration", None)  # set on a SpeechSource
            yield EmbeddingResult(
                embedding=p.vector, file=s.name, duration=s.duration if whole is None else whole,
                sample_rate=s.source_rate, model=speaker.model_id, engine=speaker.engine_name,
                elapsed=p.seconds, speech=None if whole is None else s.duration)


def embed_sources(speaker, sources: Iterable[str | os.PathLike],
                  min_duration: float, vad: bool = False) -> Iterator:
    """Yield an EmbeddingResult or InputFailure per source, in order, group by group."""
    group: list[_Pending] = []
    frames = 0
    for source in sources:
        with one_blas_thread():
            group.append(_prepare(speaker, source, min_duration, vad))
        frames += group[-1].frames
        if frames >= GROUP_FRAMES or len(group) >= GROUP_FILES:
            yield from _flush(speaker, group)
            group, frames = [], 0
    yield from _flush(speaker, group)
