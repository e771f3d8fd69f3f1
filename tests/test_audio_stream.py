"""Block-wise decoding and the streaming front-end against load_audio and fbank, bit for bit.

Run `pytest -s tests/test_audio_stream.py` to see the figures. Measured when written:
streamed samples == soxr.resample one-shot exactly (max |difference| 0.0) for 44.1 kHz stereo;
tracemalloc peak streaming 20 min of 16 kHz audio (76.8 MB decoded): about 1.1 MB for the
samples, 9.4 MB for pass 1 (mean), 13.7 MB for pass 2 (20 s spans).
"""

from __future__ import annotations

import io
import sys
import tracemalloc
from itertools import zip_longest
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from signals import voiced, write_wav

from audio_cli.frontend.audio import check_usable, downmix, load_audio, open_audio
from audio_cli.frontend.checks import check_peak
from audio_cli.frontend.fbank import (
    FRAME_BLOCK,
    block_mean,
    fbank,
    feature_spans,
    log_mel,
    log_mel_stats,
    source_frames,
)
from engines.errors import InputAudioError
from engines.model import FrontendConfig

CONFIG = FrontendConfig()
BLOCK_SIZES = (160, 997, 65536, 1_000_000)  # samples
LONG_MINUTES = 20
PEAK_BOUND = 24e6  # bytes of Python-tracked memory while streaming LONG_MINUTES


def stereo(seconds: float, rate: int) -> np.ndarray:
    """(N, 2) float32: two different voiced channels."""
    return np.stack([voiced(seconds, rate), 0.7 * voiced(seconds, rate, f0=190.0, seed=1)], 1)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A 16 kHz mono and a 44.1 kHz stereo file, both about 23 s (several frame blocks)."""
    tmp = tmp_path_factory.mktemp("stream")
    return {
        "16k mono": write_wav(tmp / "mono16k.wav", voiced(23.1)),
        "44.1k stereo": write_wav(tmp / "stereo44k.wav", stereo(23.1, 44100), 44100),
    }


@pytest.mark.parametrize("kind", ["16k mono", "44.1k stereo"])
def test_blocks_concatenate_to_load_audio(files, kind):
    source, audio = open_audio(files[kind]), load_audio(files[kind])
    assert (source.source_rate, source.channels) == (audio.source_rate, audio.channels)
    assert source.num_samples == len(audio.samples)
    assert source.duration == audio.duration
    for size in BLOCK_SIZES:
        blocks = list(source.blocks(size))
        assert all(len(b) == size for b in blocks[:-1]) and 0 < len(blocks[-1]) <= size
        assert all(b.dtype == np.float32 for b in blocks)
        assert np.array_equal(np.concatenate(blocks), audio.samples), size


def test_two_passes_are_identical_even_interleaved(files):
    source = open_audio(files["44.1k stereo"])
    first = np.concatenate(list(source.blocks(4096)))
    parts: dict[int, list[np.ndarray]] = {4096: [], 1000: []}
    for a, b in zip_longest(source.blocks(4096), source.blocks(1000)):
        parts[4096] += [] if a is None else [a]
        parts[1000] += [] if b is None else [b]
    for size, blocks in parts.items():
        assert np.array_equal(np.concatenate(blocks), first), size


def test_resampling_matches_soxr_one_shot(files):
    data, rate = sf.read(files["44.1k stereo"], dtype="float32", always_2d=True)
    one_shot = soxr.resample(downmix(data), rate, 16000, quality="HQ")
    streamed = load_audio(files["44.1k stereo"]).samples
    assert streamed.shape == one_shot.shape
    difference = float(np.max(np.abs(streamed - one_shot)))
    print(f"\n  streamed vs soxr.resample one-shot, 44.1 kHz stereo: max |diff| {difference:.2e}")
    assert difference <= 1e-6


@pytest.mark.parametrize("rate", [8000, 11025, 22050, 32000, 44100, 48000, 96000])
@pytest.mark.filterwarnings("ignore:.*upsampled:UserWarning")  # expected below 16 kHz
def test_num_samples_is_exact(rate, tmp_path):
    for frames in (1, 2, 3, 5, 441, 999, 44101, 100003):
        path = write_wav(tmp_path / "x.wav", voiced(frames / rate + 1e-9, rate)[:frames], rate)
        source = open_audio(path)
        assert source.source_frames == frames
        expected = len(soxr.resample(np.zeros(frames, np.float32), rate, 16000, quality="HQ"))
        assert source.num_samples == expected == len(source.read_all()), (rate, frames)


def test_log_mel_mean_equals_fbank_mean(files):
    for path in files.values():
        samples = load_audio(path).samples
        raw = log_mel(samples)
        mean = log_mel_stats(open_audio(path), CONFIG).mean
        assert mean.dtype == np.float64 and mean.shape == (CONFIG.num_mel_bins,)
        assert np.array_equal(mean, block_mean(raw))
        np.testing.assert_allclose(mean, raw.mean(axis=0), rtol=0, atol=1e-9)
        assert np.array_equal(fbank(samples), (raw - mean).astype(np.float32))


def test_stats_give_the_peak_and_check_the_whole_file(files, tmp_path):
    audio = load_audio(files["44.1k stereo"])
    stats = log_mel_stats(open_audio(files["44.1k stereo"]), CONFIG)
    assert stats.peak == float(np.max(np.abs(audio.samples)))
    assert stats.frames == fbank(audio.samples).shape[0]
    silence = open_audio(write_wav(tmp_path / "silence.wav", np.zeros(16000, np.float32)))
    assert log_mel_stats(silence, CONFIG).peak == 0.0
    expected = _error(check_usable, load_audio(silence.name), 0.5)
    assert _error(check_peak, silence.name, 0.0) == expected
    tail_nan = voiced(1.0)
    tail_nan[-5] = np.nan  # after the last frame: fbank never reads it, pass 1 still must
    source = open_audio(write_wav(tmp_path / "tail.wav", tail_nan, subtype="FLOAT"))
    assert "non-finite" in _error(log_mel_stats, source, CONFIG)


@pytest.mark.parametrize("kind", ["16k mono", "44.1k stereo"])
def test_feature_spans_equal_fbank_slices(files, kind):
    source = open_audio(files[kind])
    expected = fbank(load_audio(files[kind]).samples)
    total = source_frames(source, CONFIG)
    assert total == expected.shape[0] > 3 * FRAME_BLOCK
    edge = FRAME_BLOCK
    spans = [(0, 1), (0, 700), (300, 1500), (edge - 1, edge + 1), (edge, edge + 1),
             (edge + 5, 2 * edge + 300), (2 * edge, 2 * edge + 1), (total - 900, total),
             (total - 2, total), (total - 1, total)]
    mean = log_mel_stats(source, CONFIG).mean
    produced = list(feature_spans(source, CONFIG, spans, mean))
    assert len(produced) == len(spans)
    for features, (lo, hi) in zip(produced, spans, strict=True):
        assert features.dtype == np.float32
        assert np.array_equal(features, expected[lo:hi]), (lo, hi)


def test_feature_spans_without_cmn(files):
    config = FrontendConfig(cmn=False)
    source = open_audio(files["16k mono"])
    expected = fbank(load_audio(files["16k mono"]).samples, config)
    spans = [(lo, min(lo + 800, expected.shape[0])) for lo in range(0, expected.shape[0], 600)]
    for features, (lo, hi) in zip(feature_spans(source, config, spans, None), spans,
                                  strict=True):
        assert np.array_equal(features, expected[lo:hi])


def test_bad_spans_are_refused(files):
    source = open_audio(files["16k mono"])
    total = source_frames(source, CONFIG)
    mean = np.zeros(CONFIG.num_mel_bins)
    for spans in ([(5, 5)], [(0, total + 1)], [(-1, 3)], [(10, 20), (9, 30)]):
        with pytest.raises(ValueError):
            list(feature_spans(source, CONFIG, spans, mean))
    with pytest.raises(ValueError):
        source_frames(open_audio(files["16k mono"], 8000), CONFIG)


def _error(call, *args) -> str:
    """The message of the InputAudioError that call(*args) raises."""
    with pytest.raises(InputAudioError) as caught:
        call(*args)
    return str(caught.value)


def _stream(path) -> list[np.ndarray]:
    return list(open_audio(path).blocks(1000))


def test_bad_inputs_give_load_audio_errors(tmp_path):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(200)))
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio\n" * 20)
    (tmp_path / "empty.wav").write_bytes(b"")
    nan = voiced(1.0)
    nan[12345] = np.nan
    cases = {"missing": (tmp_path / "nope.wav", "no such file"),
             "directory": (tmp_path, "directory"),
             "empty": (tmp_path / "empty.wav", "empty"),
             "corrupt": (corrupt, "not a readable audio file"),
             "not audio": (text, "not a readable audio file"),
             "non-finite": (write_wav(tmp_path / "nan.wav", nan, subtype="FLOAT"), "non-finite")}
    for name, (path, words) in cases.items():
        expected = _error(load_audio, path)
        assert words in expected, name
        assert _error(_stream, path) == expected, name


def test_truncated_file_is_an_error_not_silently_short(tmp_path):
    path = tmp_path / "clip.mp3"
    sf.write(str(path), voiced(3.0), 16000, format="MP3", subtype="MPEG_LAYER_III")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    source = open_audio(path)
    message = _error(lambda: list(source.blocks()))
    assert "truncated" in message and message == _error(lambda: load_audio(path))


def _stdin(monkeypatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))


def test_stdin_is_read_once_and_streams_twice(files, monkeypatch):
    path = files["44.1k stereo"]
    _stdin(monkeypatch, path.read_bytes())
    source = open_audio("-")
    assert source.name == "stdin"
    first = np.concatenate(list(source.blocks(5000)))
    assert np.array_equal(first, np.concatenate(list(source.blocks(777))))
    assert np.array_equal(first, load_audio(path).samples)
    _stdin(monkeypatch, b"")
    assert _error(lambda: open_audio("-")) == "stdin: no data (empty input)"


@pytest.fixture(scope="module")
def long_file(tmp_path_factory) -> Path:
    """LONG_MINUTES of 16 kHz mono 16-bit audio, written 10 s at a time."""
    path = tmp_path_factory.mktemp("long") / "long.wav"
    piece = voiced(10.0)
    with sf.SoundFile(str(path), "w", 16000, 1, subtype="PCM_16") as handle:
        for index in range(LONG_MINUTES * 6):
            handle.write(piece * (0.4 + 0.6 * (index % 7) / 7))
    return path


def test_long_input_streams_in_bounded_memory(long_file):
    source = open_audio(long_file)
    decoded_bytes = source.num_samples * 4
    assert source.num_samples == LONG_MINUTES * 60 * 16000
    peaks = {}
    tracemalloc.start()
    try:
        assert sum(len(block) for block in source.blocks()) == source.num_samples
        peaks["samples"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        mean = log_mel_stats(source, CONFIG).mean
        peaks["pass 1 (mean)"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        total = source_frames(source, CONFIG)
        spans = [(lo, min(lo + 2000, total)) for lo in range(0, total, 1800)]
        rows = sum(len(features) for features in feature_spans(source, CONFIG, spans, mean))
        peaks["pass 2 (20 s spans)"] = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rows == sum(hi - lo for lo, hi in spans)
    print(f"\n  {LONG_MINUTES} min, {decoded_bytes / 1e6:.1f} MB decoded; tracemalloc peaks: "
          + ", ".join(f"{name} {peak / 1e6:.1f} MB" for name, peak in peaks.items()))
    for name, peak in peaks.items():
        assert peak < PEAK_BOUND < decoded_bytes / 3, name
