"""`--window` streams the file (pipeline.windows): the same windows as from decoded audio,
whatever the block size, window and hop; an hour's worth in bounded memory.

Run `pytest -s tests/test_windows_stream.py` to see the figures. Measured when written:
20 min of 16 kHz audio (76.8 MB decoded), --vad --window 30 on the small test model:
tracemalloc peak 7.7 MB streamed; the path before (the file decoded whole, then windowed)
peaked at 84 MB.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from signals import write_wav

from audio_cli.frontend import vad
from audio_cli.frontend.audio import load_audio
from audio_cli.pipeline import windows
from audio_cli.pipeline.speaker import WeSpeaker
from engines.errors import InputAudioError

RATE = 16000
SAMPLES = Path(__file__).resolve().parents[1] / "samples"
LONG_MINUTES = 20
PEAK_BOUND = 24e6  # bytes of Python-tracked memory for LONG_MINUTES, as in test_audio_stream


def speech() -> np.ndarray:
    x, rate = sf.read(str(SAMPLES / "1688-142285-0002.flac"), dtype="float32")
    assert rate == RATE
    return x


@pytest.fixture(scope="module")
def speaker(small_model_dir) -> WeSpeaker:
    return WeSpeaker.from_pretrained(small_model_dir)


@pytest.fixture(scope="module")
def paused(tmp_path_factory) -> Path:
    """Speech, 7 s of silence, speech again, 5 s of silence: windows with and without."""
    x = speech()
    gap = np.zeros(7 * RATE, np.float32)
    return write_wav(tmp_path_factory.mktemp("w") / "paused.wav",
                     np.concatenate([x, gap, x[: 6 * RATE], gap[: 5 * RATE]]), subtype="FLOAT")


def reference(speaker, path: Path, window: float, hop: float, use_vad: bool,
              min_duration: float = 0.5) -> list[tuple]:
    """(start, end, speech, vector or None) of each window, cut from all the samples at once."""
    from audio_cli.frontend.fbank import fbank

    x = load_audio(path).samples
    regions = vad.find_speech(x) if use_vad else [(0, len(x))]
    out = []
    for s, e in windows.window_bounds(len(x), RATE, window, hop):
        parts = vad.overlap(regions, s, e)
        piece = vad.cut(x, parts)
        vector = (speaker.embed_features(fbank(piece, speaker.config.frontend))
                  if len(piece) >= min_duration * RATE else None)
        out.append((s / RATE, e / RATE, vad.total(parts) / RATE if use_vad else None, vector))
    return out


def same(a, b) -> None:
    assert [(w.start, w.end, w.speech) for w in a] == [(w.start, w.end, w.speech) for w in b]
    for x, y in zip(a, b, strict=True):
        assert (x.embedding is None) == (y.embedding is None)
        if x.embedding is not None:
            np.testing.assert_allclose(x.embedding, y.embedding, atol=1e-5)


@pytest.mark.parametrize("use_vad", [False, True])
@pytest.mark.parametrize("window,hop", [(3.0, 3.0), (4.0, 1.5), (2.0, 5.0)])
@pytest.mark.parametrize("block", [997, 1 << 17])
def test_streamed_windows_equal_those_of_decoded_audio(speaker, paused, monkeypatch, use_vad,
                                                       window, hop, block):
    expected = reference(speaker, paused, window, hop, use_vad)
    monkeypatch.setattr(windows, "READ_BLOCK", block)  # windows span many blocks, or few
    streamed = speaker.embed_windows(paused, window, hop, vad=use_vad)
    assert [(w.start, w.end, w.speech) for w in streamed] == [r[:3] for r in expected]
    for w, r in zip(streamed, expected, strict=True):
        assert (w.embedding is None) == (r[3] is None)
        if r[3] is not None:
            np.testing.assert_allclose(w.embedding, r[3], atol=1e-5)
    same(speaker.embed_windows(load_audio(paused), window, hop, vad=use_vad), streamed)
    if use_vad:  # windows in the pauses are listed, without a vector
        assert any(w.embedding is None for w in streamed)
        assert all((w.embedding is None) == (w.speech < 0.5) for w in streamed)
    else:
        assert all(w.embedding is not None and w.speech is None for w in streamed)


def test_groups_are_cut_by_count_and_by_frames(speaker, paused, monkeypatch):
    expected = speaker.embed_windows(paused, 2.0, 0.5, vad=True)
    monkeypatch.setattr(windows, "WINDOWS_PER_BATCH", 3)
    same(speaker.embed_windows(paused, 2.0, 0.5, vad=True), expected)
    monkeypatch.setattr(windows, "WINDOWS_PER_BATCH", 64)
    monkeypatch.setattr(windows, "GROUP_FRAMES", 1)
    same(speaker.embed_windows(paused, 2.0, 0.5, vad=True), expected)


def test_streamed_errors_are_those_of_decoded_audio(speaker, tmp_path):
    silence = write_wav(tmp_path / "silence.wav", np.zeros(4 * RATE, np.float32))
    with pytest.raises(InputAudioError, match="digital silence"):
        speaker.embed_windows(silence, 1.0, 1.0)
    with pytest.raises(InputAudioError, match="no speech found"):
        speaker.embed_windows(silence, 1.0, 1.0, vad=True)
    short = write_wav(tmp_path / "short.wav", speech()[: RATE // 4])
    with pytest.raises(InputAudioError, match="too short"):
        speaker.embed_windows(short, 1.0, 1.0)


@pytest.fixture(scope="module")
def long_file(tmp_path_factory) -> Path:
    """LONG_MINUTES of 16 kHz speech and pauses, written a piece at a time."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    x = speech()
    piece = np.concatenate([x, np.zeros(RATE * 60 - len(x), np.float32)])  # 1 min
    with sf.SoundFile(str(path), "w", RATE, 1, subtype="PCM_16") as handle:
        for _ in range(LONG_MINUTES):
            handle.write(piece)
    return path


@pytest.mark.slow
def test_an_hour_scale_file_is_windowed_in_bounded_memory(speaker, long_file):
    decoded_bytes = LONG_MINUTES * 60 * RATE * 4
    speaker.embed_windows(long_file, 30.0, 30.0, vad=True)  # warm: sessions, caches
    tracemalloc.start()
    try:
        result = speaker.embed_windows(long_file, 30.0, 30.0, vad=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(result) == LONG_MINUTES * 2
    # one minute = 15 s of speech, then 45 s of silence: every other window has none
    assert [w.embedding is None for w in result] == [False, True] * LONG_MINUTES
    assert all(w.speech == pytest.approx(vad.total(vad.find_speech(speech())) / RATE, abs=0.1)
               for w in result[::2])
    print(f"\n  {LONG_MINUTES} min, {decoded_bytes / 1e6:.1f} MB decoded; windows streamed: "
          f"tracemalloc peak {peak / 1e6:.1f} MB")
    assert peak < PEAK_BOUND < decoded_bytes / 3
