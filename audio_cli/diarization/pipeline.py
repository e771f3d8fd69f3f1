"""Who spoke when in one recording: `Diarizer(options).diarize(audio)` -> speaker turns.

With the segmentation model (pyannote segmentation-3.0; the shape of pyannote.audio 3.1's
published pipeline):
1. 10 s chunks every `step` seconds (the last one padded with zeros); the model gives, for
   each chunk, up to 3 local speakers' activity per frame (~17 ms) and so the number of
   speakers per frame, overlap included.
2. One embedding per (chunk, local speaker), from the samples where that speaker alone is
   active, or, with less than CLEAN_SECONDS of those, from all its active samples; local
   speakers with less than MIN_EMBED_SECONDS get none.
3. The embeddings with at least TRAIN_SECONDS of clean speech are clustered
   (clustering.py); every embedded local speaker is then given the closest cluster
   centroid, the local speakers of one chunk distinct clusters (they are different people).
4. Each global speaker's activity is the mean over the chunks covering a frame
   (overlap-add); the number of speakers per frame is the rounded mean of the chunks'
   counts, and that many best-scoring speakers are active in the frame, so overlapping
   speech gives two turns at once.

Without it (`segmentation="none"`) see vad_only.py: Silero VAD, sliding windows, no overlap.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from audio_cli.diarization import activity
from audio_cli.diarization.clustering import (
    AHC_THRESHOLD_LONG,
    SpeakerCount,
    centroids,
    cluster,
    normalise,
)
from audio_cli.diarization.turns import Turn
from audio_cli.frontend.audio import Audio
from audio_cli.frontend.fbank import fbank
from audio_cli.models.registry import DEFAULT_MODEL
from audio_cli.pipeline.batching import one_blas_thread

NO_SEGMENTATION = "none"
# Chunk step: pyannote 3.1 steps 1 s (10 % of the 10 s window). Each step costs one
# segmentation chunk and ~2 embeddings; measured on the AMI excerpts and the simulated
# conversations (docs/diarize.md) a 2 s step loses little accuracy for about half the time.
STEP = 2.0
CHUNKS_PER_BATCH = 16  # segmentation chunks run together
EMBED_BATCH = 32  # embeddings run together
MIN_EMBED_SECONDS = 0.5  # a local speaker with less active speech gets no embedding
CLEAN_SECONDS = 1.0  # embed only the speaker's clean (non-overlapped) speech if this long
TRAIN_SECONDS = 2.0  # embeddings from this much clean speech are clustered; others assigned


@dataclass(frozen=True)
class DiarizeOptions:
    """How to diarize: the embedding model and engine, the segmentation model (None: the
    default; "none": the VAD-only path), the number of speakers, the clustering."""

    model: str = DEFAULT_MODEL
    engine: str = "auto"
    threads: int | None = None
    segmentation: str | None = None
    count: SpeakerCount = field(default_factory=SpeakerCount)
    exclusive: bool = False
    clustering: str = "ahc"
    threshold: float | None = None  # AHC's: AHC_THRESHOLD_LONG, or AHC_THRESHOLD for VAD
    step: float = STEP


@dataclass
class Embedded:
    """The embeddings of one recording's (chunk, local speaker) pairs."""

    vectors: np.ndarray  # (N, dim)
    chunk: np.ndarray  # (N,) chunk index
    local: np.ndarray  # (N,) local speaker index
    clean: np.ndarray  # (N,) seconds of clean speech each came from


class Diarizer:
    """The embedding model (and the segmentation model) loaded once, for many recordings."""

    def __init__(self, options: DiarizeOptions, speaker=None):
        from audio_cli.pipeline.speaker import SpeakerEmbedder

        self.options = options
        self.speaker = speaker or SpeakerEmbedder.from_pretrained(
            options.model, engine=options.engine, threads=options.threads)
        self.segmenter = None
        if options.segmentation != NO_SEGMENTATION:
            from audio_cli.diarization.segmentation import open_segmenter

            seg_engine = "onnx" if options.engine in ("auto", "mlx", "coreml") else options.engine
            self.segmenter = open_segmenter(options.segmentation, engine=seg_engine,
                                            threads=options.threads)

    @property
    def sample_rate(self) -> int:
        return self.speaker.config.sample_rate

    def diarize(self, audio: Audio, uri: str) -> list[Turn]:
        """The turns of decoded audio (at `sample_rate`), labelled SPEAKER_00, ...;
        none without speech."""
        if self.segmenter is None:
            from audio_cli.diarization.vad_only import diarize_vad

            return diarize_vad(self, audio, uri)
        return self._diarize_segmented(audio, uri)

    # ------------------------------------------------------------ segmentation path

    def _diarize_segmented(self, audio: Audio, uri: str) -> list[Turn]:
        seg = self.segmenter
        samples = audio.samples
        size = seg.chunk_samples
        step = max(1, int(round(self.options.step * seg.sample_rate)))
        starts = list(range(0, max(len(samples) - size, 0) + step, step))
        if starts[-1] + size < len(samples):
            starts.append(starts[-1] + step)
        local = self._segment(samples, starts)  # (C, F, 3) 0/1
        grid = activity.FrameGrid(seg.frame_step, seg.frame_duration,
                                  float(seg.frame_start(0)))
        offsets = np.array([int(round(s / seg.sample_rate / grid.step)) for s in starts])
        total = int(np.ceil(audio.duration / grid.step))
        count = np.rint(activity.overlap_add(local.sum(axis=2, keepdims=True), offsets,
                                             total)[:, 0]).astype(np.int64)
        if not count.any():
            return []
        embedded = self._embed_local(samples, starts, local, grid)
        if len(embedded.vectors) == 0:  # speech too short to embed: one speaker
            labels = np.zeros((len(starts), local.shape[2]), dtype=np.int64)
            labels[local.sum(axis=1) == 0] = -1
        else:
            labels = self._assign(embedded, len(starts), local.shape[2])
        speakers = int(labels.max()) + 1
        per_chunk = np.zeros((len(starts), local.shape[1], speakers))
        for c, k in zip(*np.nonzero(labels >= 0), strict=True):
            g = labels[c, k]
            per_chunk[c, :, g] = np.maximum(per_chunk[c, :, g], local[c, :, k])
        score = activity.overlap_add(per_chunk, offsets, total)
        active = activity.top_speakers(score, count)
        if self.options.exclusive:
            active = activity.exclusive(active, score)
        return self._turns(active, grid, uri, audio.duration)

    def _segment(self, samples: np.ndarray, starts: list[int]) -> np.ndarray:
        seg = self.segmenter
        size = seg.chunk_samples
        out = []
        for first in range(0, len(starts), CHUNKS_PER_BATCH):
            batch = np.zeros((len(starts[first:first + CHUNKS_PER_BATCH]), size), np.float32)
            for row, s in enumerate(starts[first:first + CHUNKS_PER_BATCH]):
                piece = samples[s:s + size]
                batch[row, :len(piece)] = piece
            out.append(np.asarray(seg.speakers(seg.frames(batch)), dtype=np.float64))
        return np.concatenate(out)

    def _embed_local(self, samples: np.ndarray, starts: list[int], local: np.ndarray,
                     grid: activity.FrameGrid) -> Embedded:
        rate = self.segmenter.sample_rate
        frames = local.shape[1]
        # sample -> frame of the chunk whose centre is nearest
        index = np.clip(grid.nearest(np.arange(self.segmenter.chunk_samples) / rate), 0,
                        frames - 1)
        overlap = local.sum(axis=2) > 1  # (C, F)
        clips, meta = [], []
        for c, s in enumerate(starts):
            chunk = samples[s:s + self.segmenter.chunk_samples]
            idx = index[:len(chunk)]
            for k in range(local.shape[2]):
                active = local[c, :, k] > 0
                if active.sum() * grid.step < MIN_EMBED_SECONDS:
                    continue
                clean = active & ~overlap[c]
                clean_seconds = float(clean.sum() * grid.step)
                mask = (clean if clean_seconds >= CLEAN_SECONDS else active)[idx]
                piece = chunk[mask]
                if len(piece) < MIN_EMBED_SECONDS * rate:
                    continue
                with one_blas_thread():
                    features = fbank(piece, self.speaker.config.frontend)
                if len(features) < self.speaker.min_frames:
                    continue
                clips.append(features)
                meta.append((c, k, clean_seconds))
        return self._vectors(clips, meta)

    def _vectors(self, clips: list[np.ndarray], meta: list[tuple]) -> Embedded:
        vectors = [self.speaker.embed_features(clips[i:i + EMBED_BATCH])
                   for i in range(0, len(clips), EMBED_BATCH)]
        dim = self.speaker.model.dim
        columns = list(zip(*meta, strict=True)) if meta else [(), (), ()]
        return Embedded(np.concatenate(vectors) if vectors else np.zeros((0, dim)),
                        np.array(columns[0], dtype=np.int64),
                        np.array(columns[1], dtype=np.int64),
                        np.array(columns[2], dtype=np.float64))

    def _assign(self, embedded: Embedded, chunks: int, locals_: int) -> np.ndarray:
        """(chunks, local speakers) global label, -1 for none."""
        train = embedded.clean >= TRAIN_SECONDS
        if train.sum() < 2:
            train = np.ones(len(embedded.vectors), dtype=bool)
        threshold = self.options.threshold or AHC_THRESHOLD_LONG
        found = cluster(embedded.vectors[train], self.options.count, self.options.clustering,
                        threshold)
        centres = centroids(embedded.vectors[train], found)
        similarity = normalise(embedded.vectors) @ centres.T  # (N, K)
        labels = np.full((chunks, locals_), -1, dtype=np.int64)
        for c in np.unique(embedded.chunk):
            rows = np.flatnonzero(embedded.chunk == c)
            for row, g in zip(rows, distinct_best(similarity[rows]), strict=True):
                labels[c, embedded.local[row]] = g
        return labels

    def _turns(self, active: np.ndarray, grid: activity.FrameGrid, uri: str,
               duration: float) -> list[Turn]:
        used = [s for s in range(active.shape[1]) if active[:, s].any()]
        order = sorted(used, key=lambda s: int(np.argmax(active[:, s])))
        names = [f"SPEAKER_{i:02d}" for i in range(len(order))]
        return activity.to_turns(active[:, order], grid, uri, names, duration)


def distinct_best(similarity: np.ndarray) -> list[int]:
    """(n, K) similarities of n speakers of one chunk -> the cluster of each, all distinct
    when K >= n, with the largest total similarity (n <= 3: every choice is tried)."""
    n, k = similarity.shape
    if k < n:
        return similarity.argmax(axis=1).tolist()
    best = max(itertools.permutations(range(k), n),
               key=lambda p: sum(similarity[i, p[i]] for i in range(n)))
    return list(best)
