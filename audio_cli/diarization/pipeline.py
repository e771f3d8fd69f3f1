"""Who spoke when in one recording: `Diarizer(options).diarize(audio, uri)` -> a Diarization
(result.py): speaker turns and each speaker's mean vector.

With the segmentation model (pyannote segmentation-3.0; the shape of pyannote.audio 3.1's
published pipeline):
1. 10 s chunks every `step` seconds (the last one padded with zeros); the model gives, for
   each chunk, up to 3 local speakers' activity per frame (~17 ms) and so the number of
   speakers per frame, overlap included.
2. Each local speaker is cut into pieces where it pauses for SPLIT_PAUSE or more (the
   model often gives two people who take turns with a pause between them the same local
   speaker). One embedding per piece, from the samples where that speaker alone is active,
   or, with less than CLEAN_SECONDS of those, from all its active samples; pieces with
   less than MIN_EMBED_SECONDS get none.
3. The embeddings with at least TRAIN_SECONDS of clean speech are clustered
   (clustering.py); every embedded piece then takes the closest cluster centroid (pieces
   of one chunk speaking at the same time distinct ones: they are different people), and
   a piece without one the label of its nearest embedded neighbour in the chunk.
4. Each global speaker's activity is the mean over the chunks covering a frame
   (overlap-add); the number of speakers per frame is the rounded mean of the chunks'
   counts, and that many best-scoring speakers are active in the frame, so overlapping
   speech gives two turns at once.

Without it (`segmentation="none"`) see vad_only.py: Silero VAD, sliding windows, no overlap.
"""

from __future__ import annotations

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
from audio_cli.diarization.result import Diarization, label_means, labelled
from audio_cli.frontend.audio import Audio
from audio_cli.frontend.fbank import fbank
from audio_cli.pipeline.batching import one_blas_thread
from audio_cli.pipeline.options import default_model

NO_SEGMENTATION = "none"
# Chunk step: pyannote 3.1 steps 1 s (10 % of the 10 s window). Each step costs one
# segmentation chunk and ~2 embeddings; measured on the AMI excerpts and the simulated
# conversations (docs/diarize.md) a 2 s step loses little accuracy for about half the time.
STEP = 2.0
CHUNKS_PER_BATCH = 16  # chunks copied out (the last zero-padded) per call of the segmenter,
#                       which runs them segmentation.BATCH at a time
EMBED_BATCH = 32  # embeddings run together
MIN_EMBED_SECONDS = 0.5  # a local speaker with less active speech gets no embedding
CLEAN_SECONDS = 1.0  # embed only the speaker's clean (non-overlapped) speech if this long
TRAIN_SECONDS = 2.0  # embeddings from this much clean speech are clustered; others assigned
# A local speaker's activity in a chunk is cut where it pauses this long: the model gives
# two people who take turns with a pause between them the same local speaker (measured on
# two LibriSpeech readers; pyannote.audio embeds the whole local speaker).
SPLIT_PAUSE = 0.5


@dataclass(frozen=True)
class DiarizeOptions:
    """How to diarize: the embedding model and engine, the segmentation model (None: the
    default; "none": the VAD-only path), the number of speakers, the clustering."""

    model: str = field(default_factory=default_model)  # $AUDIO_MODEL, else the built-in
    engine: str = "auto"
    threads: int | None = None
    segmentation: str | None = None
    count: SpeakerCount = field(default_factory=SpeakerCount)
    exclusive: bool = False
    clustering: str = "auto"
    threshold: float | None = None  # AHC's: AHC_THRESHOLD_LONG, or AHC_THRESHOLD for VAD
    step: float = STEP


@dataclass
class Pieces:
    """A recording's pieces: stretches of one local speaker of one chunk, split where that
    speaker pauses for SPLIT_PAUSE seconds or more; those long enough have a vector."""

    chunk: np.ndarray  # (N,) chunk index
    local: np.ndarray  # (N,) local speaker index
    first: np.ndarray  # (N,) first frame in the chunk
    end: np.ndarray  # (N,) frame after the last
    clean: np.ndarray  # (N,) seconds of clean speech the vector came from
    vectors: np.ndarray  # (M, dim) for the pieces with `embedded`
    embedded: np.ndarray  # (N,) bool

    def overlaps(self, i: int, j: int) -> bool:
        return self.first[i] < self.end[j] and self.first[j] < self.end[i]


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

            seg_engine = "onnx" if options.engine == "coreml" else options.engine
            self.segmenter = open_segmenter(options.segmentation, engine=seg_engine,
                                            threads=options.threads)

    @property
    def sample_rate(self) -> int:
        return self.speaker.config.sample_rate

    def diarize(self, audio: Audio, uri: str) -> Diarization:
        """The turns of decoded audio (at `sample_rate`), labelled SPEAKER_00, ..., and
        each speaker's mean vector; no turns without speech."""
        if self.segmenter is None:
            from audio_cli.diarization.vad_only import diarize_vad

            return diarize_vad(self, audio, uri)
        return self._diarize_segmented(audio, uri)

    # ------------------------------------------------------------ segmentation path

    def _diarize_segmented(self, audio: Audio, uri: str) -> Diarization:
        seg = self.segmenter
        samples = audio.samples
        size = seg.chunk_samples
        step = max(1, int(round(self.options.step * seg.sample_rate)))
        starts = list(range(0, max(len(samples) - size, 0) + step, step))
        if starts[-1] + size < len(samples):
            starts.append(starts[-1] + step)
        local, expected = self._segment(samples, starts)  # (C, F, 3) 0/1, (C, F)
        grid = activity.FrameGrid(seg.frame_step, seg.frame_duration,
                                  float(seg.frame_start(0)))
        offsets = np.array([int(round(s / seg.sample_rate / grid.step)) for s in starts])
        total = int(np.ceil(audio.duration / grid.step))
        count = activity.speaker_count(
            activity.overlap_add(expected[:, :, None], offsets, total)[:, 0])
        if not count.any():
            return Diarization([])
        pieces = self._pieces(samples, starts, local, grid)
        labels = self._assign(pieces)
        speakers = int(labels.max()) + 1 if len(labels) else 0
        per_chunk = np.zeros((len(starts), local.shape[1], max(speakers, 1)))
        for i in np.flatnonzero(labels >= 0):
            c, k, g = pieces.chunk[i], pieces.local[i], labels[i]
            f0, f1 = pieces.first[i], pieces.end[i]
            per_chunk[c, f0:f1, g] = np.maximum(per_chunk[c, f0:f1, g], local[c, f0:f1, k])
        score = activity.overlap_add(per_chunk, offsets, total)
        active = activity.top_speakers(score, count)
        if self.options.exclusive:
            active = activity.exclusive(active, score)
        embedded = pieces.embedded & (labels >= 0)
        means = label_means(pieces.vectors[embedded[pieces.embedded]], labels[embedded],
                            speakers)
        return labelled(active, grid, uri, audio.duration, means)

    def _segment(self, samples: np.ndarray, starts: list[int]) -> np.ndarray:
        seg = self.segmenter
        size = seg.chunk_samples
        local, expected = [], []
        for first in range(0, len(starts), CHUNKS_PER_BATCH):
            batch = np.zeros((len(starts[first:first + CHUNKS_PER_BATCH]), size), np.float32)
            for row, s in enumerate(starts[first:first + CHUNKS_PER_BATCH]):
                piece = samples[s:s + size]
                batch[row, :len(piece)] = piece
            log_probs = seg.frames(batch)
            local.append(np.asarray(seg.speakers(log_probs), dtype=np.float64))
            expected.append(seg.expected_speakers(log_probs))
        return np.concatenate(local), np.concatenate(expected)

    def _pieces(self, samples: np.ndarray, starts: list[int], local: np.ndarray,
                grid: activity.FrameGrid) -> Pieces:
        """Cut every local speaker into pieces and embed those with MIN_EMBED_SECONDS of
        speech: from their clean speech if it lasts CLEAN_SECONDS, else all of it."""
        rate = self.segmenter.sample_rate
        size = self.segmenter.chunk_samples
        # sample of a chunk -> the frame whose centre is nearest
        index = np.clip(grid.nearest(np.arange(size) / rate), 0, local.shape[1] - 1)
        overlap = local.sum(axis=2) > 1  # (C, F)
        pause = max(1, int(round(SPLIT_PAUSE / grid.step)))
        rows, clips = [], []
        for c, s in enumerate(starts):
            chunk = samples[s:s + size]
            idx = index[:len(chunk)]
            for k in range(local.shape[2]):
                for f0, f1 in activity.runs(local[c, :, k] > 0, pause):
                    active = np.zeros(local.shape[1], dtype=bool)
                    active[f0:f1] = local[c, f0:f1, k] > 0
                    clean = active & ~overlap[c]
                    clean_seconds = float(clean.sum() * grid.step)
                    mask = (clean if clean_seconds >= CLEAN_SECONDS else active)[idx]
                    features = None
                    if mask.sum() >= MIN_EMBED_SECONDS * rate:
                        with one_blas_thread():
                            features = fbank(chunk[mask], self.speaker.config.frontend)
                        if len(features) < self.speaker.min_frames:
                            features = None
                    rows.append((c, k, f0, f1, clean_seconds, features is not None))
                    if features is not None:
                        clips.append(features)
        vectors = [self.speaker.embed_features(clips[i:i + EMBED_BATCH])
                   for i in range(0, len(clips), EMBED_BATCH)]
        columns = list(zip(*rows, strict=True)) if rows else [()] * 6
        return Pieces(*(np.array(col, dtype=kind) for col, kind in
                        zip(columns[:5], (np.int64, np.int64, np.int64, np.int64, np.float64),
                            strict=True)),
                      np.concatenate(vectors) if vectors else
                      np.zeros((0, self.speaker.model.dim)),
                      np.array(columns[5], dtype=bool))

    def _assign(self, pieces: Pieces) -> np.ndarray:
        """(N,) global label of each piece, -1 for none.

        The embedded pieces with TRAIN_SECONDS of clean speech (all embedded ones if fewer
        than two have) are clustered; every embedded piece then takes the closest centroid
        not already taken by a piece of the same chunk active at the same time (they are
        different people), best-known pieces first. A piece without a vector (a word or
        two) takes the label of the piece nearest in time among the chunk's embedded
        pieces not speaking at the same time: short words mostly start or end a turn.
        """
        n = len(pieces.chunk)
        labels = np.full(n, -1, dtype=np.int64)
        embedded = np.flatnonzero(pieces.embedded)
        if len(embedded) == 0:  # speech too short to embed anywhere: one speaker
            labels[:] = 0
            return labels
        train = pieces.clean[embedded] >= TRAIN_SECONDS
        if train.sum() < 2:
            train[:] = True
        threshold = self.options.threshold or AHC_THRESHOLD_LONG
        found = cluster(pieces.vectors[train], self.options.count, self.options.clustering,
                        threshold)
        similarity = normalise(pieces.vectors) @ centroids(pieces.vectors[train], found).T
        vector_of = {int(piece): row for row, piece in enumerate(embedded)}
        for c in np.unique(pieces.chunk[embedded]):
            members = [int(i) for i in embedded if pieces.chunk[i] == c]
            members.sort(key=lambda i: -pieces.clean[i])
            for i in members:
                taken = {int(labels[j]) for j in members
                         if labels[j] >= 0 and pieces.local[j] != pieces.local[i]
                         and pieces.overlaps(i, j)}
                order = np.argsort(-similarity[vector_of[i]])
                free = [int(g) for g in order if int(g) not in taken]
                labels[i] = free[0] if free else int(order[0])
        for i in np.flatnonzero(~pieces.embedded):
            near = [int(j) for j in embedded if pieces.chunk[j] == pieces.chunk[i]
                    and not pieces.overlaps(i, j)]
            if near:
                j = min(near, key=lambda j: max(pieces.first[i] - pieces.end[j],
                                                pieces.first[j] - pieces.end[i]))
                labels[i] = labels[j]
        return labels
