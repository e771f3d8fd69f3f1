"""Diarizing long recordings in bounded memory: chunks cut from decoded blocks of any size,
per-chunk values added back a stretch of frames at a time, clustering bounded in size."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from audio_cli.diarization.bounded import cluster_bounded, sample
from audio_cli.diarization.chunks import OverlapAdd, chunk_batches, chunk_starts
from audio_cli.diarization.clustering import SpeakerCount, cluster


@pytest.mark.parametrize("block", [1, 7, 1000, 10**6])
def test_chunks_from_blocks_are_the_recordings_samples(block):
    rng = np.random.default_rng(0)
    signal = rng.standard_normal(2345).astype(np.float32)
    size, step = 500, 200
    starts = chunk_starts(len(signal), size, step)
    assert starts[0] == 0 and starts[-1] + size >= len(signal) > starts[-2] + size
    blocks = (signal[i:i + block] for i in range(0, len(signal), block))
    seen = []
    for first, batch, lengths in chunk_batches(blocks, starts, size, 3):
        for row in range(len(batch)):
            start = starts[first + row]
            expected = signal[start:start + size]
            assert lengths[row] == len(expected)
            assert np.array_equal(batch[row, :len(expected)], expected)
            assert not batch[row, len(expected):].any()  # zeros past the end
            seen.append(first + row)
    assert seen == list(range(len(starts)))


def test_a_recording_shorter_than_a_chunk_is_one_padded_chunk():
    starts = chunk_starts(120, 500, 200)
    assert starts == [0]
    (first, batch, lengths), = chunk_batches([np.ones(120, np.float32)], starts, 500, 4)
    assert first == 0 and lengths.tolist() == [120] and batch.sum() == 120


def test_overlap_add_on_stretches_equals_the_whole_grids():
    rng = np.random.default_rng(1)
    frames, total = 7, 30
    offsets = np.array([0, 3, 6, 9, 12, 15, 18, 21, 24])
    values = rng.random((len(offsets), frames, 2)).astype(np.float32)
    whole = OverlapAdd(0, total, 2)
    for offset, v in zip(offsets, values, strict=True):
        whole.add(int(offset), v)
    # by hand: the mean over the chunks covering each frame
    summed, covered = np.zeros((total + frames, 2)), np.zeros(total + frames)
    for offset, v in zip(offsets, values, strict=True):
        summed[offset:offset + frames] += v
        covered[offset:offset + frames] += 1
    expected = (summed / np.maximum(covered, 1)[:, None])[:total]
    assert np.allclose(whole.mean(), expected, atol=1e-6)
    parts = []
    for first in range(0, total, 4):
        part = OverlapAdd(first, min(first + 4, total), 2)
        for offset, v in zip(offsets, values, strict=True):
            part.add(int(offset), v)
        parts.append(part.mean())
    assert np.array_equal(np.concatenate(parts), whole.mean())


def test_sample_is_bounded_and_spread():
    assert sample(10, 20).tolist() == list(range(10))
    chosen = sample(10_000, 100)
    assert len(chosen) == 100 and chosen[0] == 0 and chosen[-1] == 9999
    assert np.all(np.diff(chosen) >= 99)


def test_bounded_clustering_labels_every_vector_as_its_group():
    rng = np.random.default_rng(2)
    centres = np.eye(3, 16) * 6  # three orthogonal directions
    groups = rng.integers(0, 3, 900)
    vectors = (centres[groups] + rng.standard_normal((900, 16))).astype(np.float32)
    labels = cluster_bounded(vectors, SpeakerCount(), "ahc", 0.3, most=120)
    assert len(set(labels.tolist())) == 3
    for g in range(3):  # one label per group, a different one for each
        assert len(set(labels[groups == g].tolist())) == 1
    chosen = sample(900, 120)
    assert np.array_equal(labels[chosen], cluster(vectors[chosen], SpeakerCount(), "ahc",
                                                  0.3))
    small = vectors[:50]
    assert np.array_equal(cluster_bounded(small, SpeakerCount(), "auto", 0.3, most=120),
                          cluster(small, SpeakerCount(), "auto", 0.3))


def test_a_streamed_file_gives_the_turns_of_its_decoded_samples(shared_dir, small_model_dir,
                                                                 tmp_path, monkeypatch):
    """Diarizer.diarize of an opened file (decoded block by block; here in blocks shorter
    than a chunk, frames picked 500 at a time) gives what it gives for the whole decoded
    recording: 44.1 kHz stereo, so the blocks are resampled as they come."""
    import soundfile as sf

    from audio_cli.diarization import pipeline
    from audio_cli.diarization.pipeline import DiarizeOptions, Diarizer
    from audio_cli.frontend.audio import load_audio, open_audio

    checkpoint = shared_dir / "models/pyannote-segmentation-3.0/pytorch_model.bin"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} is not present")
    folder = shared_dir / "data/speech/librispeech-test-other-10x10"
    clips = [sf.read(path, dtype="float32")[0] for reader in ("1688", "3080")
             for path in sorted((folder / reader).glob("*.flac"))[:3]]
    mono = np.concatenate([c for clip in clips for c in (clip, np.zeros(8000, np.float32))])
    import soxr

    wide = soxr.resample(mono, 16000, 44100).astype(np.float32)
    path = tmp_path / "talk.wav"
    sf.write(str(path), np.stack([wide, 0.5 * wide], axis=1), 44100, subtype="FLOAT")
    diarizer = Diarizer(DiarizeOptions(model=str(small_model_dir), engine="onnx",
                                       segmentation=str(checkpoint), threads=1))
    whole = diarizer.diarize(load_audio(path, diarizer.sample_rate), "talk")
    monkeypatch.setattr(pipeline, "STREAM_BLOCK", 30_000)
    monkeypatch.setattr(pipeline, "FRAMES_PER_BLOCK", 500)
    monkeypatch.setattr(pipeline, "CHUNKS_PER_BATCH", 2)
    seen, events = [], []
    diarizer.progress = lambda done, total: (seen.append((done, total)),
                                             events.append(("progress", done)))
    embed = pipeline.PieceBuilder._embed

    def logged(self, clips):
        events.append(("embed", len(clips)))
        return embed(self, clips)

    monkeypatch.setattr(pipeline.PieceBuilder, "_embed", logged)
    streamed = diarizer.diarize(open_audio(path, diarizer.sample_rate), "talk")
    order = list(events)  # (the two-worker run below logs too)
    assert whole.turns and streamed.turns == whole.turns
    assert set(streamed.vectors) == set(whole.vectors)
    # two workers, each running the engines on one thread: the same turns and vectors
    parallel = Diarizer(DiarizeOptions(model=str(small_model_dir), engine="onnx",
                                       segmentation=str(checkpoint), threads=2))
    assert parallel.workers.count == 2
    before = set(threading.enumerate())
    with parallel:
        both = parallel.diarize(open_audio(path, parallel.sample_rate), "talk")
        workers = [t for t in set(threading.enumerate()) - before
                   if t.name.startswith("audio")]
        assert len(workers) == 2
    assert not any(t.is_alive() for t in workers)  # closed with the block
    assert both.turns == whole.turns
    for label, vector in whole.vectors.items():
        assert np.allclose(both.vectors[label], vector, atol=1e-6)
    total = seen[-1][1]
    assert seen[-1][0] == total and [d for d, _ in seen] == sorted(d for d, _ in seen)
    # the steps: every chunk once its pieces are embedded (nothing embedded after the last
    # chunk's step), then the clustering and the turns
    assert len(seen) > 2 and seen[-2][0] == total - 1
    assert ("embed", 0) not in order and order[-1] == ("progress", total)
    assert all(kind == "progress" for kind, _ in order[order.index(("progress", total - 1)):])
    # a path is opened and streamed the same way; the turns' uri is the file's stem
    diarizer.progress = None
    assert diarizer.diarize(str(path)).turns == whole.turns


def test_a_pieces_label_covers_its_speakers_probability_a_little_beyond_it():
    """Stitch.values: inside a piece and up to 10 frames each side, the label carries the
    local speaker's probability (not a 0/1 decision); farther out, nothing; a piece with no
    label gives nothing."""
    from audio_cli.diarization.pipeline import Pieces, Stitch

    frames = 100
    probability = np.zeros((1, frames, 3), dtype=np.float16)
    probability[0, :, 1] = np.linspace(0.0, 0.99, frames)  # local speaker 1 fades in
    probability[0, :, 2] = 0.5
    pieces = Pieces(chunk=np.array([0, 0]), local=np.array([1, 2]), first=np.array([40, 0]),
                    end=np.array([60, 5]), clean=np.array([2.0, 0.0]),
                    vectors=np.zeros((1, 4)), embedded=np.array([True, False]))
    stitch = Stitch(pieces, np.array([1, -1]), probability, np.array([0]))
    values = stitch.values(0, 2)
    assert values.shape == (frames, 2)
    inside = np.arange(30, 70)
    assert np.allclose(values[inside, 1], probability[0, inside, 1].astype(np.float32))
    assert not values[:30].any() and not values[70:].any() and not values[:, 0].any()


def test_a_long_pieces_vector_comes_from_the_middle_of_its_speech(shared_dir, small_model_dir,
                                                                  monkeypatch):
    """A piece with more speech than MAX_EMBED_SECONDS is embedded from that much of it, the
    middle: 9 s of one reader alone in a chunk give clips of at most 5 s, some of 5 s, with
    speech on both sides of them (longer clips without the cap)."""
    import soundfile as sf

    from audio_cli.diarization import pipeline
    from audio_cli.diarization.pipeline import DiarizeOptions, Diarizer, PieceBuilder
    from audio_cli.frontend.audio import from_samples

    checkpoint = shared_dir / "models/pyannote-segmentation-3.0/pytorch_model.bin"
    if not checkpoint.is_file():
        pytest.skip(f"{checkpoint} is not present")
    # a reader who pauses little: 9 s give one piece of about 8.8 s of speech
    path = shared_dir / "data/speech/librispeech-test-other-10x10/2609/2609-156975-0006.flac"
    speech = sf.read(path, dtype="float32")[0]
    samples = np.concatenate([np.zeros(16000, np.float32), speech[:9 * 16000],
                              np.zeros(16000, np.float32)])
    diarizer = Diarizer(DiarizeOptions(model=str(small_model_dir), engine="onnx",
                                       segmentation=str(checkpoint), threads=1))
    clips = []
    embed = PieceBuilder._embed

    def recording(self, batch):
        clips.extend(batch)
        return embed(self, batch)

    monkeypatch.setattr(PieceBuilder, "_embed", recording)
    diarizer.diarize(from_samples(samples, 16000), "one")
    capped = list(clips)
    clips.clear()
    monkeypatch.setattr(pipeline, "MAX_EMBED_SECONDS", 100.0)
    diarizer.diarize(from_samples(samples, 16000), "one")
    cap = 5 * 16000
    assert len(clips) == len(capped) and max(len(c) for c in clips) > cap
    for whole, clip in zip(clips, capped, strict=True):
        middle = whole[(len(whole) - cap) // 2:][:cap] if len(whole) > cap else whole
        assert np.array_equal(clip, middle)
