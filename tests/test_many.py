"""Many inputs through the library: input order, isolated failures, batch = alone."""

from __future__ import annotations

import numpy as np
import pytest
from model_factory import small_config, write_model
from signals import voiced, write_wav

from audio_cli import WeSpeaker, cosine_similarity
from audio_cli.pipeline.batching import DEFAULT_BATCH_FRAMES
from audio_cli.pipeline.results import EmbeddingResult, InputFailure
from audio_cli.pipeline.windows import window_bounds
from engines.errors import InputAudioError


@pytest.fixture(scope="module")
def speaker(tmp_path_factory):
    directory = tmp_path_factory.mktemp("model")
    write_model(directory, small_config())
    return WeSpeaker.from_pretrained(directory, engine="onnx")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    paths = [write_wav(folder / f"clip{i}.wav", voiced(s, f0=100 + 20 * i, seed=i))
             for i, s in enumerate((1.0, 2.5, 0.9, 4.0, 1.7))]
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    return paths, folder / "corrupt.wav", folder / "missing.wav"


def test_results_come_in_input_order_and_failures_do_not_stop_the_rest(speaker, files):
    paths, corrupt, missing = files
    sources = [paths[0], corrupt, paths[1], missing, *paths[2:]]
    results = list(speaker.embed_sources(sources))
    assert [r.file for r in results] == [str(s) for s in sources]
    assert [type(r) for r in results] == [EmbeddingResult, InputFailure, EmbeddingResult,
                                          InputFailure, EmbeddingResult, EmbeddingResult,
                                          EmbeddingResult]
    assert "not a readable audio file" in results[1].message
    assert "no such file" in results[3].message
    assert isinstance(results[3].error, InputAudioError)


def test_batched_vectors_equal_single_file_vectors(speaker, files, monkeypatch):
    paths, _, _ = files
    alone = [r.embedding for r in speaker.embed_sources(paths)]
    # On a CPU clips run one by one; force padded batches (what an accelerator runs)
    assert speaker.inference.batch_frames == 0
    monkeypatch.setattr(speaker.inference, "batch_frames", DEFAULT_BATCH_FRAMES)
    runs = []
    encode = speaker.engine.encode
    monkeypatch.setattr(speaker.engine, "encode",
                        lambda x, lengths=None: runs.append(len(x)) or encode(x, lengths))
    batched = [r.embedding for r in speaker.embed_sources(paths)]
    assert max(runs) > 1  # some clips did share a padded batch
    for path, vector, single in zip(paths, batched, alone, strict=True):
        assert cosine_similarity(speaker.embed(path), vector) >= 0.99999
        assert cosine_similarity(single, vector) >= 0.99999


def test_too_short_input_is_a_failure_not_padding(speaker, tmp_path, files):
    short = write_wav(tmp_path / "short.wav", voiced(0.3))
    (failure, ok) = speaker.embed_sources([short, files[0][0]])
    assert isinstance(failure, InputFailure) and "too short" in failure.message
    assert isinstance(ok, EmbeddingResult)


def test_windows_are_embedded_as_clips_of_their_own(speaker):
    samples = voiced(5.0, seed=9)
    from audio_cli.frontend.audio import from_samples

    audio = from_samples(samples, 16000)
    windows = speaker.embed_windows(audio, window=2.0, hop=1.5)
    assert [(w.start, w.end) for w in windows] == [(0.0, 2.0), (1.5, 3.5), (3.0, 5.0)]
    for w in windows:
        piece = samples[int(w.start * 16000):int(w.end * 16000)]
        alone = speaker.embed(samples=piece, sample_rate=16000)
        assert cosine_similarity(alone, w.embedding) >= 0.99999


def test_window_bounds_cover_the_end_without_padding():
    bounds = window_bounds(16000 * 10, 16000, 3.0, 2.0)
    assert bounds[0] == (0, 48000) and bounds[-1] == (112000, 160000)
    assert all(end - start == 48000 for start, end in bounds)
    assert window_bounds(8000, 16000, 3.0, 1.0) == [(0, 8000)]
    assert np.diff([s for s, _ in bounds[:-1]]).tolist() == [32000] * (len(bounds) - 2)


def test_long_recording_streams_in_chunks_and_equals_one_pass(speaker, tmp_path):
    from audio_cli.frontend.audio import load_audio
    from audio_cli.frontend.fbank import fbank

    path = write_wav(tmp_path / "long.wav", voiced(70.0, seed=4))
    one_pass = speaker.engine.embed(fbank(load_audio(path).samples)[None])[0]
    speaker.inference.chunk_frames = 1000  # 7 chunks, each decoded from the stream
    try:
        assert speaker.inference.needs_chunks(6998)
        (streamed,) = speaker.embed_sources([path])
        (in_batch,) = speaker.embed_sources([path])
    finally:
        speaker.inference.chunk_frames = 6000
    assert streamed.duration == pytest.approx(70.0)
    assert cosine_similarity(streamed.embedding, one_pass) >= 0.99999
    np.testing.assert_array_equal(in_batch.embedding, streamed.embedding)


def test_long_silent_recording_is_refused_on_the_streamed_path_too(speaker, tmp_path):
    path = write_wav(tmp_path / "silent.wav", np.zeros(16000 * 80, dtype=np.float32))
    assert speaker.inference.needs_chunks(7998)
    (failure,) = speaker.embed_sources([path])
    assert isinstance(failure, InputFailure) and "digital silence" in failure.message
