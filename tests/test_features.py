"""The Kaldi filterbank front-end against kaldi-native-fbank and the wespeaker-random fixture.

Run `pytest -s tests/test_features.py` to see the measured differences. Measured when written
(float64 numpy vs knf 1.23 float32, after CMN, |difference| in log units, max / p99.9):

  input                     wespeaker (hamming, x32768)   campp (povey, x1)
  white noise 2 s           5.9e-05 / 3.4e-05             6.9e-05 / 3.3e-05
  synthetic voiced 3 s      1.1e-04 / 4.8e-05             1.9e-04 / 6.7e-05
  1998-15444-0003           8.3e-05 / 5.4e-05             1.4e-04 / 5.1e-05
  2033-164914-0001          7.6e-04 / 1.3e-04             1.8e-03 / 4.1e-04
  3005-163389-0005          1.4e-04 / 2.7e-05             9.4e-05 / 2.7e-05
  edge lengths (no CMN)     <= 6.3e-05                    <= 1.3e-04
  fixture synth_voiced      5.6e-05 / 1.9e-05             -
  fixture 1688-142285-0002  4.0e-04 / 8.9e-05             -
  fixture 367-130732-0001   2.9e-03 / 8.1e-05             -

All 100 files of librispeech-test-other-10x10: max 3.4e-03 (wespeaker), 2.4e-03 (campp); p99.9
at most 1.7e-04 / 4.3e-04. The largest differences sit in deep spectral valleys where knf's
float32 FFT loses precision. 60 s of audio: about 30-40 ms on the development machine.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf  # a required dependency: no skip without it

from audio_cli.frontend.fbank import apply_cmn, fbank, log_mel, min_samples, num_frames
from engines.model import FrontendConfig

try:  # the reference implementation: an optional test package (the [test] extra)
    import kaldi_native_fbank as knf
except ImportError:
    knf = None

SAMPLE_RATE = 16000  # Hz
CONFIGS = {
    "wespeaker": FrontendConfig(),  # hamming window, samples x 32768
    "campp": FrontendConfig(window="povey", input_scale=1.0),  # 3D-Speaker CAM++
}
CLOSE = 1e-3  # log units: at least FRACTION_CLOSE of the cells within this
FRACTION_CLOSE = 0.999
WORST = 5e-3  # log units: no cell beyond this
EDGE_LENGTHS = (400, 401, 559, 560, 561, 1680)  # samples
SPEECH_DIR = "data/speech/librispeech-test-other-10x10"
SPEECH_FILES = (
    "1998/1998-15444-0003.flac",
    "2033/2033-164914-0001.flac",
    "3005/3005-163389-0005.flac",
)
FIXTURE_DIR = "fixtures/wespeaker-random"


def knf_log_mel(samples: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """(N,) samples in [-1, 1] -> (T, bins) float64 log-mel from kaldi-native-fbank, no CMN.
    Skips the calling test where kaldi-native-fbank is not installed."""
    if knf is None:
        pytest.skip("kaldi-native-fbank (optional: pip install -e '.[test]') is not installed")
    opts = knf.FbankOptions()
    opts.frame_opts.dither = 0.0
    opts.frame_opts.window_type = config.window
    opts.frame_opts.snip_edges = True
    opts.frame_opts.samp_freq = float(config.sample_rate)
    opts.frame_opts.frame_length_ms = config.frame_length_ms
    opts.frame_opts.frame_shift_ms = config.frame_shift_ms
    opts.frame_opts.preemph_coeff = config.preemphasis
    opts.frame_opts.remove_dc_offset = config.remove_dc_offset
    opts.mel_opts.num_bins = config.num_mel_bins
    opts.mel_opts.low_freq = config.low_freq
    opts.mel_opts.high_freq = config.high_freq
    computer = knf.OnlineFbank(opts)
    scaled = np.asarray(samples, dtype=np.float64) * config.input_scale
    computer.accept_waveform(float(config.sample_rate), scaled.astype(np.float32).tolist())
    computer.input_finished()
    rows = [computer.get_frame(i) for i in range(computer.num_frames_ready)]
    return np.asarray(rows, dtype=np.float64).reshape(-1, config.num_mel_bins)


def check_close(ours: np.ndarray, reference: np.ndarray, label: str) -> None:
    """Assert the tolerance of the brief and print max / p99.9 of |ours - reference|."""
    assert ours.shape == reference.shape, label
    diff = np.abs(ours.astype(np.float64) - reference.astype(np.float64)).ravel()
    worst = float(diff.max()) if diff.size else 0.0
    p999 = float(np.quantile(diff, 0.999)) if diff.size else 0.0
    close = float(np.mean(diff <= CLOSE)) if diff.size else 1.0
    print(f"\n  {label:<48} T={ours.shape[0]:<5} max {worst:.2e}  p99.9 {p999:.2e}")
    assert close >= FRACTION_CLOSE, f"{label}: only {close:.5f} of cells within {CLOSE}"
    assert worst <= WORST, f"{label}: max |difference| {worst:.3e} > {WORST}"


def compare_with_knf(samples: np.ndarray, name: str, label: str) -> None:
    """Our fbank (CMN) and log_mel (no CMN) against knf's, in config `name`."""
    config = CONFIGS[name]
    reference = knf_log_mel(samples, config)
    ours = fbank(samples, config)
    assert ours.dtype == np.float32
    assert ours.shape == (num_frames(len(samples), config), config.num_mel_bins)
    check_close(ours, apply_cmn(reference), f"{name} {label} (CMN)")
    check_close(log_mel(samples, config), reference, f"{name} {label} (no CMN)")


def white_noise(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """Gaussian white noise, RMS 0.1."""
    rng = np.random.default_rng(seed)
    return np.clip(0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE)), -1.0, 1.0)


def speech_like(seconds: float = 3.0, seed: int = 1) -> np.ndarray:
    """Voiced, speech-like signal: a gliding f0's harmonics through moving formants, syllable
    envelope, a short unvoiced burst and a silent gap (deep spectral valleys)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    f0 = 105.0 + 40.0 * np.sin(2 * np.pi * 0.4 * t) + 3.0 * np.sin(2 * np.pi * 6.0 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    formants = (  # (centre Hz as a function of t, bandwidth Hz)
        (550.0 + 200.0 * np.sin(2 * np.pi * 0.7 * t), 90.0),
        (1500.0 + 500.0 * np.sin(2 * np.pi * 0.5 * t + 1.0), 130.0),
        (2700.0 + 150.0 * np.sin(2 * np.pi * 0.3 * t), 200.0),
    )
    x = np.zeros_like(t)
    for k in range(1, 60):
        harmonic = k * f0
        gain = sum(1.0 / (1.0 + ((harmonic - fc) / bw) ** 2) for fc, bw in formants) + 0.01
        x += np.where(harmonic < 7500.0, gain / k, 0.0) * np.sin(k * phase + rng.uniform(0, 6.3))
    x *= np.sin(np.pi * 3.0 * t) ** 2  # syllables
    x = 0.5 * x / np.abs(x).max()
    burst = (t > 1.1) & (t < 1.2)
    x[burst] += 0.05 * rng.standard_normal(burst.sum())
    x[(t > 2.0) & (t < 2.3)] = 0.0  # digital silence inside the utterance
    return x + 1e-4 * rng.standard_normal(len(t))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_white_noise_matches_knf(name):
    compare_with_knf(white_noise(), name, "white noise")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_speech_like_signal_matches_knf(name):
    compare_with_knf(speech_like(), name, "synthetic voiced")


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("length", EDGE_LENGTHS)
def test_edge_lengths_match_knf(name, length):
    samples = speech_like(0.5)[1000 : 1000 + length]
    compare_with_knf(samples, name, f"{length} samples")


@pytest.mark.shared
@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("relative", SPEECH_FILES)
def test_real_speech_matches_knf(shared_dir, name, relative):
    path = shared_dir / SPEECH_DIR / relative
    if not path.exists():
        pytest.skip(f"{path} is absent")
    samples, rate = sf.read(str(path), dtype="float64")
    assert rate == SAMPLE_RATE and samples.ndim == 1
    compare_with_knf(samples, name, path.stem)


def fixture_entries(shared_dir):
    """(directory, manifest `files` entries) of the wespeaker-random fixture, or skip."""
    directory = shared_dir / FIXTURE_DIR
    manifest = directory / "manifest.json"
    if not manifest.exists():
        pytest.skip(f"{manifest} is absent")
    return directory, json.loads(manifest.read_text(encoding="utf-8"))["files"]


@pytest.mark.shared
def test_fixture_fbank(shared_dir):
    directory, entries = fixture_entries(shared_dir)
    assert len(entries) == 3
    for entry in entries:
        samples, rate = sf.read(str(directory / entry["audio"]), dtype="float64")
        assert rate == entry["sample_rate"] == SAMPLE_RATE
        assert samples.shape == (entry["num_samples"],)
        expected = np.load(directory / entry["fbank"])
        ours = fbank(samples)  # WeSpeaker defaults: hamming, x32768, CMN
        assert ours.shape[0] == entry["num_fbank_frames"] == num_frames(len(samples))
        check_close(ours, expected, f"fixture {entry['name']}")


def knf_num_frames(num_samples: int) -> int:
    """Frames knf produces for `num_samples` samples (WeSpeaker options)."""
    return knf_log_mel(np.zeros(num_samples), CONFIGS["wespeaker"]).shape[0]


LENGTHS = sorted({*range(0, 1300, 7), *range(390, 410), *range(555, 565), 16000, 16001, 48123})


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_num_frames_matches_knf(name):
    config = CONFIGS[name]
    for length in LENGTHS:
        assert num_frames(length, config) == knf_num_frames(length), length
        assert fbank(np.zeros(length), config).shape[0] == num_frames(length, config)


def test_min_samples_is_tight():
    assert min_samples(0) == 0
    assert min_samples(1) == 400
    for frames in range(1, 200):
        assert num_frames(min_samples(frames)) == frames
        assert num_frames(min_samples(frames) - 1) == frames - 1


@pytest.mark.parametrize("length", (0, 1, 160, 399))
def test_too_short_gives_empty(length):
    samples = white_noise(1.0)[:length]
    assert knf_num_frames(length) == 0
    for config in CONFIGS.values():
        features = fbank(samples, config)
        assert features.shape == (0, config.num_mel_bins)
        assert features.dtype == np.float32
        assert log_mel(samples, config).shape == (0, config.num_mel_bins)


def test_bad_input_rejected():
    with pytest.raises(ValueError):
        fbank(np.zeros((2, 800)))
    with pytest.raises(ValueError):
        fbank(np.zeros(800), FrontendConfig(window="blackman"))


def test_cmn_split_for_chunked_use():
    samples = speech_like(2.0)
    raw = log_mel(samples)
    mean = raw.mean(axis=0)
    np.testing.assert_allclose(apply_cmn(raw, mean), apply_cmn(raw), atol=1e-12)
    np.testing.assert_allclose(fbank(samples), apply_cmn(raw), atol=1e-5)
    assert np.array_equal(fbank(samples, FrontendConfig(cmn=False)), raw.astype(np.float32))
    # a chunk starting on a frame boundary yields the same rows as the whole signal
    start, frames = 37, 50
    chunk = samples[start * 160 : start * 160 + min_samples(frames)]
    np.testing.assert_allclose(log_mel(chunk), raw[start : start + frames], atol=1e-9)


def test_float32_and_float64_input_agree():
    """The front-end computes in float64 whatever the input dtype: float32 samples give the
    features of the same values in float64, and float64 samples keep their extra precision
    (they are not rounded to float32 on the way in)."""
    double = speech_like(1.0)
    single = double.astype(np.float32)
    assert double.dtype == np.float64
    assert not np.array_equal(single.astype(np.float64), double)  # the inputs really differ
    for config in CONFIGS.values():
        from_single = log_mel(single, config)
        assert from_single.dtype == np.float64
        # the same values in either dtype: bit-identical features
        assert np.array_equal(from_single, log_mel(single.astype(np.float64), config))
        assert np.array_equal(fbank(single, config), fbank(single.astype(np.float64), config))
        # float64 input differs from its float32 rounding by < 3e-8 of full scale: its
        # features must differ (the extra precision reached them) yet stay very close
        from_double = log_mel(double, config)
        assert not np.array_equal(from_double, from_single)
        np.testing.assert_allclose(from_double, from_single, atol=1e-3)
        # float64 arithmetic through to the log: doubling the samples scales every energy by
        # exactly 4 (powers of two are exact), so log-mel rises by log(4) to ~1e-15, where
        # float32 arithmetic would be off by ~1e-6 (white noise: no cell on the log floor)
        noise = white_noise(1.0)
        for samples in (noise.astype(np.float32), noise):
            rise = log_mel(2 * samples, config) - log_mel(samples, config)
            assert rise.min() > 1.0  # no cell on the log floor
            np.testing.assert_allclose(rise, np.log(4.0), rtol=0, atol=1e-10)
