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
   or, with less than CLEAN_SECONDS of those, from all its active samples (the middle
   MAX_EMBED_SECONDS of them); pieces with less than MIN_EMBED_SECONDS get none. A clip
   that repeats most of the samples of a clip from an earlier chunk takes its vector
   (clips.py). Chunks and clips run on all the CPUs at once (pipeline/parallel.py).
3. The embeddings with at least TRAIN_SECONDS of clean speech are clustered
   (clustering.py; at most bounded.MAX_CLUSTERED of them, evenly spread, the others
   taking their nearest centroid), the agreeing pieces of one local speaker in a chunk as
   one point (Pieces.agreeing_means); every embedded piece then takes the closest cluster
   centroid (pieces of one chunk speaking at the same time distinct ones: they are
   different people), and a piece without one the label of its nearest embedded neighbour
   in the chunk.
4. Each global speaker's activity is the mean over the chunks covering a frame
   (overlap-add); the number of speakers per frame is the rounded mean of the chunks'
   counts, and that many best-scoring speakers are active in the frame, so overlapping
   speech gives two turns at once.
Steps 1-2 run chunk batch by chunk batch as an AudioSource is decoded (chunks.py), step 4
a stretch of frames at a time: memory grows with the recording's length only by small
per-chunk arrays (uint8 activity, float32 counts and vectors).

Without it (`segmentation="none"`) see vad_only.py: Silero VAD, sliding windows, no overlap.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio_cli.diarization import activity
from audio_cli.diarization.bounded import cluster_bounded
from audio_cli.diarization.chunks import OverlapAdd, chunk_batches, chunk_starts
from audio_cli.diarization.clips import RecentClips, clip_runs
from audio_cli.diarization.clustering import (
    AHC_THRESHOLD_LONG,
    SpeakerCount,
    centroids,
    normalise,
)
from audio_cli.diarization.result import Diarization, label_means, labelled
from audio_cli.diarization.segmentation import BATCH as SEGMENT_BATCH
from audio_cli.frontend.audio import Audio, AudioSource, open_audio
from audio_cli.frontend.fbank import fbank
from audio_cli.pipeline.batching import one_blas_thread
from audio_cli.pipeline.options import default_model
from audio_cli.pipeline.parallel import Workers, engine_threads, worker_count

NO_SEGMENTATION = "none"
# Chunk step: pyannote 3.1 steps 1 s (10 % of the window). Each step costs one
# segmentation chunk and ~3 embeddings (most of the time); measured with
# bench/diarize.py (CAM++, 1 thread, CPU seconds per audio second), a 4 s step against 2 s:
# AMI excerpts DER full/fair 30.8/18.8 % against 30.7/18.6 %, simulated conversations
# 0.4/0.5 points higher per file on average, at about half the CPU time (docs/diarize.md).
STEP = 4.0
CHUNKS_PER_BATCH = 16  # chunks copied out (the last zero-padded) per call of the segmenter,
#                       which runs them segmentation.BATCH at a time
EMBED_BATCH = 32  # clips embedded in one call, by an engine that is not run from Workers
STREAM_BLOCK = 1 << 18  # samples decoded at a time (16 s at 16 kHz) from an AudioSource
FRAMES_PER_BLOCK = 1 << 16  # frames whose speakers are picked at once (bounds the sort)
MIN_EMBED_SECONDS = 0.5  # a local speaker with less active speech gets no embedding
# A piece's vector comes from at most this much of its speech (the middle): 7.5 % less audio
# embedded at a 4 s step. No cap/6/5/4.5/4/3 s gave DER full/fair 14.3/4.1, 14.3/4.2,
# 14.2/4.0, 14.3/4.1, 14.2/4.0, 14.5/4.4 % on the simulated conversations and 29.2/18.0,
# 29.2/18.0, 29.1/17.6, 29.1/17.6, 29.1/17.6, 32.0/20.8 % on the AMI excerpts; at 4 s one
# reader of tests/test_diarize.py's two-reader conversation was split in two.
MAX_EMBED_SECONDS = 5.0
CLEAN_SECONDS = 1.0  # embed only the speaker's clean (non-overlapped) speech if this long
TRAIN_SECONDS = 2.0  # embeddings from this much clean speech are clustered; others assigned
# A local speaker's activity in a chunk is cut where it pauses this long: the model gives
# two people who take turns with a pause between them the same local speaker (measured on
# two LibriSpeech readers; pyannote.audio embeds the whole local speaker).
SPLIT_PAUSE = 0.5
# ... but pieces of one local speaker whose vectors agree this well are clustered as one
# point (the mean of their vectors). Two LibriSpeech readers trading 2-3 s turns (8
# conversations of 16 turns, tests/test_diarize_clips.py's kind): the right number of
# speakers in 6/8 with it and clustering.LONE_FROM against 3/8 without, speaker confusion
# (0.25 s collar) 5.0 % against 9.5 %; the simulated conversations, the AMI excerpts and
# the hour unchanged (DER full/fair 14.2/4.0, 29.1/17.6, 14.6/4.5 %). A first version at
# 0.4 gave the same, at 0.2 14.8/4.6 % on the conversations and 27.9/16.5 % on AMI.
SAME_LOCAL_SPEAKER = 0.6
# A piece's label covers its local speaker's probability of talking (not the 0/1 decision)
# over the piece and WIDEN frames (~0.17 s) each side: the decision ends where the most
# likely class changes, the probability fades over a few frames at quiet onsets and endings.
# At a 4 s step, 0/10/20 frames gave DER (fair) 4.5/4.1/4.1 % on the simulated conversations
# and 18.2/18.0/18.1 % on the AMI excerpts (the 0/1 decision: 5.1 % and 17.6 %).
WIDEN = 10


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

    def agreeing_means(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For each embedded piece (the rows of `vectors`): the unit vector it is clustered
        and labelled by, the seconds of clean speech behind that vector, and whether the
        piece stands for it in the clustering. The pieces of one local speaker in one chunk
        whose vectors all agree (cosine at least SAME_LOCAL_SPEAKER) are one person talking
        in turns: one point, the mean of their vectors weighted by their clean seconds."""
        unit = normalise(self.vectors)
        rows = np.flatnonzero(self.embedded)
        vectors, seconds = unit.copy(), self.clean[rows].astype(np.float64)
        leader = np.ones(len(rows), dtype=bool)
        groups: dict[tuple[int, int], list[int]] = {}
        for row, piece in enumerate(rows):
            groups.setdefault((int(self.chunk[piece]), int(self.local[piece])), []).append(row)
        for members in groups.values():
            if len(members) < 2 or (unit[members] @ unit[members].T).min() < SAME_LOCAL_SPEAKER:
                continue
            weights = np.maximum(seconds[members], 0.1)
            mean = weights @ unit[members]
            vectors[members] = mean / np.linalg.norm(mean)
            seconds[members] = weights.sum()
            leader[members[1:]] = False
        return vectors, seconds, leader


class Diarizer:
    """The embedding model (and the segmentation model) loaded once, for many recordings."""

    def __init__(self, options: DiarizeOptions, speaker=None):
        from audio_cli.pipeline.speaker import SpeakerEmbedder

        self.options = options
        # called (steps done, steps) while diarizing: a progress bar; the steps are the
        # chunks (done when their pieces are embedded), then the clustering and the turns
        self.progress = None
        # chunks and clips run `threads` at a time, each engine run on one thread
        # (pipeline/parallel.py), where the engine allows it
        self.workers = Workers(worker_count(options.engine, options.threads))
        threads = engine_threads(options.engine, options.threads)
        self.speaker = speaker or SpeakerEmbedder.from_pretrained(
            options.model, engine=options.engine, threads=threads)
        self.segmenter = None
        if options.segmentation != NO_SEGMENTATION:
            from audio_cli.diarization.segmentation import open_segmenter

            seg_engine = "onnx" if options.engine == "coreml" else options.engine
            self.segmenter = open_segmenter(options.segmentation, engine=seg_engine,
                                            threads=threads)

    @property
    def sample_rate(self) -> int:
        return self.speaker.config.sample_rate

    def close(self) -> None:
        """Stop the worker threads (a Diarizer is also a context manager that does so)."""
        self.workers.close()

    def __enter__(self) -> Diarizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def diarize(self, audio: Audio | AudioSource | str | os.PathLike, uri: str | None = None
                ) -> Diarization:
        """The turns of a file (by its path), of decoded audio (at `sample_rate`), or of an
        opened AudioSource (frontend.audio.open_audio), labelled SPEAKER_00, ..., and each
        speaker's mean vector; no turns without speech. `uri` names the recording in the
        turns (default: the file's stem). With the segmentation model a source's samples
        are decoded, segmented and embedded block by block, never all at once, and
        `self.progress(steps done, steps)`, when set, is called as chunks are embedded and
        once more at the end."""
        if isinstance(audio, str | os.PathLike):
            audio = open_audio(audio, self.sample_rate)
        if uri is None:
            uri = Path(audio.source if isinstance(audio, Audio) else audio.name).stem
        # numpy's small products between the engine runs on one BLAS thread, set here once
        # for the workers (a limit entered and left by each worker could restore another's)
        with one_blas_thread():
            if self.segmenter is None:
                from audio_cli.diarization.vad_only import diarize_vad

                if not isinstance(audio, Audio):
                    audio = audio.read_audio()
                return diarize_vad(self, audio, uri)
            if isinstance(audio, Audio):
                return self._diarize_segmented([audio.samples], len(audio.samples), uri)
            if audio.sample_rate != self.segmenter.sample_rate:
                raise ValueError(f"{audio.name}: opened at {audio.sample_rate} Hz, the "
                                 f"segmentation model reads {self.segmenter.sample_rate} Hz")
            return self._diarize_segmented(audio.blocks(STREAM_BLOCK), audio.num_samples, uri)

    # ------------------------------------------------------------ segmentation path

    def _diarize_segmented(self, blocks, num_samples: int, uri: str) -> Diarization:
        seg = self.segmenter
        duration = num_samples / seg.sample_rate
        step = max(1, int(round(self.options.step * seg.sample_rate)))
        starts = chunk_starts(num_samples, seg.chunk_samples, step)
        grid = activity.FrameGrid(seg.frame_step, seg.frame_duration,
                                  float(seg.frame_start(0)))
        offsets = np.array([int(round(s / seg.sample_rate / grid.step)) for s in starts])
        total = int(np.ceil(duration / grid.step))
        steps = len(starts) + 1  # and the clustering
        report = self.progress or (lambda done, total: None)
        builder = PieceBuilder(self, grid, starts, lambda done: report(done, steps))
        local, expected = [], []
        for first, batch, lengths in chunk_batches(blocks, starts, seg.chunk_samples,
                                                   CHUNKS_PER_BATCH):
            activities, speaking, soft = self._segment(batch)
            local.append(soft)
            expected.append(speaking)
            builder.cut(first, batch, lengths, activities)
        local = np.concatenate(local)  # (C, F, 3) float16 probabilities
        counts = OverlapAdd(0, total, 1)
        for c, offset in enumerate(offsets):
            counts.add(offset, expected[c // CHUNKS_PER_BATCH][c % CHUNKS_PER_BATCH, :, None])
        del expected
        count = activity.speaker_count(counts.mean()[:, 0]).astype(np.int8)
        del counts
        if not count.any():
            report(steps, steps)
            return Diarization([])
        pieces = builder.finish()
        labels = self._assign(pieces)
        speakers = int(labels.max()) + 1 if len(labels) else 0
        active = self._stitch(Stitch(pieces, labels, local, offsets), count, max(speakers, 1))
        embedded = pieces.embedded & (labels >= 0)
        means = label_means(pieces.vectors[embedded[pieces.embedded]], labels[embedded],
                            speakers)
        report(steps, steps)
        return labelled(active, grid, uri, duration, means)

    def _stitch(self, stitch: Stitch, count: np.ndarray, speakers: int) -> np.ndarray:
        """(total, speakers) bool activity, FRAMES_PER_BLOCK frames at a time: each global
        speaker's score is the mean over the chunks covering a frame of its local speakers'
        activity (the larger where two local speakers of one chunk took the same label),
        and the frame's `count` best-scoring speakers are active (only the most likely with
        --exclusive)."""
        total = len(count)
        frames = stitch.local.shape[1]
        active = np.zeros((total, speakers), dtype=bool)
        for first in range(0, total, FRAMES_PER_BLOCK):
            last = min(first + FRAMES_PER_BLOCK, total)
            score = OverlapAdd(first, last, speakers)
            near = (stitch.offsets < last) & (stitch.offsets + frames > first)
            for c in np.flatnonzero(near):
                score.add(int(stitch.offsets[c]), stitch.values(int(c), speakers))
            mean = score.mean()
            block = activity.top_speakers(mean, count[first:last])
            if self.options.exclusive:
                block = activity.exclusive(block, mean)
            active[first:last] = block
        return active

    def _segment(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, chunk_samples) float32 chunks -> (B, F, 3) uint8 local speakers' activity,
        (B, F) float32 expected number of speakers and (B, F, 3) float16 probability of each
        local speaker."""
        seg = self.segmenter
        # runs of SEGMENT_BATCH chunks at most, and at least one for each worker
        runs = max(-(-len(batch) // SEGMENT_BATCH), min(self.workers.count, len(batch)))
        parts = np.array_split(batch, runs)
        log_probs = np.concatenate(self.workers.map(seg.frames, parts))
        return (seg.speakers(log_probs).astype(np.uint8), seg.expected_speakers(log_probs),
                seg.speaker_probabilities(log_probs).astype(np.float16))

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
        vectors, seconds, leader = pieces.agreeing_means()
        train = leader & (seconds >= TRAIN_SECONDS)
        if train.sum() < 2:
            train = leader
        threshold = self.options.threshold or AHC_THRESHOLD_LONG
        found = cluster_bounded(vectors[train], self.options.count,
                                self.options.clustering, threshold)
        similarity = vectors @ centroids(vectors[train], found).T
        vector_of = {int(piece): row for row, piece in enumerate(embedded)}
        for c in np.unique(pieces.chunk[embedded]):
            members = [int(i) for i in embedded if pieces.chunk[i] == c]
            members.sort(key=lambda i: -seconds[vector_of[i]])
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


@dataclass
class Stitch:
    """What the per-chunk scores of the global speakers are made from."""

    pieces: Pieces
    labels: np.ndarray  # (N,) global speaker of each piece, -1 for none
    local: np.ndarray  # (C, F, 3) float16: each local speaker's probability of talking
    offsets: np.ndarray  # (C,) first frame of each chunk on the recording's grid

    def __post_init__(self) -> None:
        # pieces are in chunk order: those of chunk c are bounds[c]:bounds[c + 1]
        self.bounds = np.searchsorted(self.pieces.chunk, np.arange(len(self.local) + 1))

    def values(self, c: int, speakers: int) -> np.ndarray:
        """(F, speakers) float32: chunk c's activity of each global speaker."""
        p = self.pieces
        values = np.zeros((self.local.shape[1], speakers), dtype=np.float32)
        for i in range(self.bounds[c], self.bounds[c + 1]):
            g = self.labels[i]
            if g >= 0:
                f0, f1 = max(0, p.first[i] - WIDEN), min(len(values), p.end[i] + WIDEN)
                np.maximum(values[f0:f1, g], self.local[c, f0:f1, p.local[i]],
                           out=values[f0:f1, g])
        return values


class PieceBuilder:
    """Pieces (see Pieces) gathered chunk batch by chunk batch; those long enough are
    embedded on the diarizer's workers as they come (one clip a task, or EMBED_BATCH clips a
    call without a pool), so only their vectors are kept."""

    def __init__(self, diarizer: Diarizer, grid: activity.FrameGrid, starts: list[int],
                 embedded: Callable[[int], None]):
        seg = diarizer.segmenter
        self.starts = starts  # each chunk's first sample in the recording
        self.on_embedded = embedded  # called with the number of chunks embedded so far
        self.speaker = diarizer.speaker
        self.workers = diarizer.workers
        self.grid = grid
        self.rate = seg.sample_rate
        frames = seg.num_frames()
        # sample of a chunk -> the frame whose centre is nearest
        self.index = np.clip(grid.nearest(np.arange(seg.chunk_samples) / self.rate), 0,
                             frames - 1)
        self.pause = max(1, int(round(SPLIT_PAUSE / grid.step)))
        self.rows: list[tuple] = []
        self.clips: list[np.ndarray] = []  # samples of the pieces not yet sent to be embedded
        self.embedding: deque = deque()  # futures: each a list of (dim,) vectors or None
        self.vectors: list = []  # the results of the futures done, in order
        self.recent = RecentClips()  # clips of earlier chunks a new clip may repeat
        self.source: list[int] = []  # each embedded piece's vector: an index in vectors
        self.sent = 0  # clips sent to be embedded
        # (vectors, chunks): the first `chunks` chunks are embedded once `vectors` are back
        self.marks: deque[tuple[int, int]] = deque()

    def cut(self, first: int, batch: np.ndarray, lengths: np.ndarray, local: np.ndarray
            ) -> None:
        """Cut every local speaker of a batch of chunks (chunk `first` on) into pieces and
        embed those with MIN_EMBED_SECONDS of speech: from their clean speech if it lasts
        CLEAN_SECONDS, else all of it (the middle MAX_EMBED_SECONDS at most), unless
        an earlier chunk's clip has nearly the same samples (clips.py)."""
        step = self.grid.step
        keep = int(MAX_EMBED_SECONDS * self.rate)
        overlap = local.sum(axis=2) > 1  # (B, F)
        for row in range(len(batch)):
            chunk = batch[row, :lengths[row]]
            idx = self.index[:len(chunk)]
            start = self.starts[first + row]
            self.recent.forget_before(start)
            for k in range(local.shape[2]):
                speaking = local[row, :, k] > 0
                for f0, f1 in activity.runs(speaking, self.pause):
                    active = np.zeros(local.shape[1], dtype=bool)
                    active[f0:f1] = speaking[f0:f1]
                    clean = active & ~overlap[row]
                    clean_seconds = float(clean.sum() * step)
                    mask = (clean if clean_seconds >= CLEAN_SECONDS else active)[idx]
                    long_enough = mask.sum() >= MIN_EMBED_SECONDS * self.rate
                    self.rows.append((first + row, k, f0, f1, clean_seconds, long_enough))
                    if not long_enough:
                        continue
                    runs = clip_runs(mask, keep)
                    where = [(a + start, b + start) for a, b in runs]
                    vector = self.recent.same(first + row, where)
                    if vector is None:
                        vector = self.sent
                        self.sent += 1
                        self.recent.add(first + row, where, vector)
                        self.clips.append(np.concatenate([chunk[a:b] for a, b in runs]))
                    self.source.append(vector)
        if self.workers.count > 1:  # one clip a task, the longest first (the workers end
            #                           together), the futures kept in the pieces' order
            futures = [None] * len(self.clips)
            for i in sorted(range(len(self.clips)), key=lambda i: -len(self.clips[i])):
                futures[i] = self.workers.submit(self._embed, self.clips[i:i + 1])
            self.embedding.extend(futures)
            self.clips = []
        while len(self.clips) >= EMBED_BATCH:
            self.embedding.append(self.workers.submit(self._embed, self.clips[:EMBED_BATCH]))
            self.clips = self.clips[EMBED_BATCH:]
        self.marks.append((self.sent, first + len(batch)))
        while self.embedding and self.embedding[0].done():  # (a future holds a lock or two)
            self.vectors += self.embedding.popleft().result()
        self._report()

    def _report(self) -> None:
        while self.marks and len(self.vectors) >= self.marks[0][0]:
            self.on_embedded(self.marks.popleft()[1])

    def _embed(self, clips: list[np.ndarray]) -> list[np.ndarray | None]:
        """The vector of each clip of samples (None if too short for the model)."""
        frontend = self.speaker.config.frontend
        features = [fbank(clip, frontend) for clip in clips]
        kept = [f for f in features if len(f) >= self.speaker.min_frames]
        vectors = iter(self.speaker.embed_features(kept) if kept else [])
        return [next(vectors) if len(f) >= self.speaker.min_frames else None
                for f in features]

    def finish(self) -> Pieces:
        if self.clips:
            self.embedding.append(self.workers.submit(self._embed, self.clips))
            self.clips = []
        while self.embedding:
            self.vectors += self.embedding.popleft().result()
            self._report()
        vectors = [self.vectors[i] for i in self.source]
        self.vectors, self.source = [], []
        found = iter(vector is not None for vector in vectors)
        rows = [row[:5] + (row[5] and next(found),) for row in self.rows]
        columns = list(zip(*rows, strict=True)) if rows else [()] * 6
        kept = [np.asarray(v, dtype=np.float32) for v in vectors if v is not None]
        return Pieces(*(np.array(col, dtype=kind) for col, kind in
                        zip(columns[:5], (np.int64, np.int64, np.int64, np.int64, np.float64),
                            strict=True)),
                      np.stack(kept) if kept else
                      np.zeros((0, self.speaker.model.dim), dtype=np.float32),
                      np.array(columns[5], dtype=bool))
