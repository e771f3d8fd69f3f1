"""Kaldi log-mel filterbank front-end (SPEC §2, §8), vectorised numpy, float64 inside.

`fbank` = `log_mel` (framing, DC removal, pre-emphasis, window, 512-point power spectrum,
mel triangles, log floor) followed by `apply_cmn`. Matches kaldi-native-fbank / torchaudio's
`compliance.kaldi.fbank` with dither 0, snip_edges on, no energy column.

Too-short input: fewer samples than one frame gives an empty `(0, num_mel_bins)` array, not an
error; callers decide whether that is acceptable.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

import numpy as np

from .config import FrontendConfig

# Fixed by the Kaldi definition, not configurable here.
MEL_BREAK_HZ = 700.0  # mel(f) = MEL_SCALE * ln(1 + f / MEL_BREAK_HZ)
MEL_SCALE = 1127.0  # mels
HAMMING_ALPHA = 0.54  # hamming: alpha - (1 - alpha) * cos(2*pi*n / (N - 1))
POVEY_POWER = 0.85  # povey: hann(n) ** POVEY_POWER, symmetric hann over N - 1

DEFAULT_CONFIG = FrontendConfig()
FRAME_BLOCK = 512  # frames computed together (about 5 s); fixes the float grouping for streaming


def frame_length(config: FrontendConfig) -> int:
    """Samples per analysis window (400 at 16 kHz / 25 ms)."""
    return int(round(config.sample_rate * config.frame_length_ms / 1000.0))


def frame_shift(config: FrontendConfig) -> int:
    """Samples between frame starts (160 at 16 kHz / 10 ms)."""
    return int(round(config.sample_rate * config.frame_shift_ms / 1000.0))


def fft_size(config: FrontendConfig) -> int:
    """FFT length: the frame length rounded up to a power of two (512 for 400)."""
    return 1 << (frame_length(config) - 1).bit_length()


def num_frames(num_samples: int, config: FrontendConfig = DEFAULT_CONFIG) -> int:
    """Frames Kaldi's snip_edges framing yields: 1 + (N - length) // shift, or 0 if N < length."""
    length = frame_length(config)
    if num_samples < length:
        return 0
    return 1 + (num_samples - length) // frame_shift(config)


def min_samples(frames: int, config: FrontendConfig = DEFAULT_CONFIG) -> int:
    """Fewest samples that give at least `frames` frames (0 for frames <= 0)."""
    if frames <= 0:
        return 0
    return frame_length(config) + (frames - 1) * frame_shift(config)


def mel_scale(freq_hz: np.ndarray | float) -> np.ndarray:
    """Hz -> mel, Kaldi/HTK natural-log form 1127 ln(1 + f/700)."""
    return MEL_SCALE * np.log1p(np.asarray(freq_hz, dtype=np.float64) / MEL_BREAK_HZ)


@lru_cache(maxsize=16)
def _window(kind: str, length: int) -> np.ndarray:
    """(length,) float64 symmetric window, read-only (cached)."""
    phase = 2.0 * np.pi * np.arange(length) / (length - 1)
    if kind == "hamming":
        window = HAMMING_ALPHA - (1.0 - HAMMING_ALPHA) * np.cos(phase)
    elif kind == "povey":
        window = (0.5 - 0.5 * np.cos(phase)) ** POVEY_POWER
    else:
        raise ValueError(f"unknown window {kind!r} (expected 'hamming' or 'povey')")
    window.setflags(write=False)
    return window


@lru_cache(maxsize=16)
def _mel_matrix(num_bins: int, n_fft: int, sample_rate: int,
                low_hz: float, high_hz: float) -> np.ndarray:
    """(n_fft//2, num_bins) float64 triangular weights, unnormalised, read-only (cached).

    Rows are FFT bins 0..n_fft/2-1; the Nyquist bin has weight 0 so it is left out.
    """
    nyquist = 0.5 * sample_rate
    high = high_hz if high_hz > 0 else nyquist + high_hz
    if not 0.0 <= low_hz < high <= nyquist:
        raise ValueError(f"bad mel range {low_hz}..{high} Hz for sample rate {sample_rate} Hz")
    edges = np.linspace(mel_scale(low_hz), mel_scale(high), num_bins + 2)  # mels
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    bin_mel = mel_scale(np.arange(n_fft // 2) * sample_rate / n_fft)[:, None]
    rising = (bin_mel - left) / (center - left)
    falling = (right - bin_mel) / (right - center)
    weights = np.where(bin_mel <= center, rising, falling)
    weights = np.where((bin_mel > left) & (bin_mel < right), weights, 0.0)
    weights.setflags(write=False)
    return weights


def _frames(samples: np.ndarray, config: FrontendConfig) -> np.ndarray:
    """(T, frame_length) read-only strided view of 1-D samples, snip_edges framing."""
    length, shift = frame_length(config), frame_shift(config)
    count = num_frames(samples.shape[0], config)
    return np.lib.stride_tricks.as_strided(
        samples, shape=(count, length),
        strides=(shift * samples.strides[0], samples.strides[0]), writeable=False,
    )


def log_mel(samples: np.ndarray, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
    """(N,) samples in [-1, 1] at config.sample_rate -> (T, bins) float64 log-mel, no CMN.

    Computed FRAME_BLOCK frames at a time (see frame_blocks), so the streaming front-end,
    which computes the same blocks, gets bit-identical rows.
    """
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"expected 1-D samples, got shape {x.shape}")
    total = num_frames(x.shape[0], config)
    if total == 0:
        return log_mel_block(x, config)  # checks the config, gives (0, bins)
    out = np.empty((total, config.num_mel_bins), dtype=np.float64)
    for first, count, lo, hi in frame_blocks(total, config):
        out[first : first + count] = log_mel_block(x[lo:hi], config)
    return out


def frame_blocks(total: int, config: FrontendConfig = DEFAULT_CONFIG
                 ) -> Iterator[tuple[int, int, int, int]]:
    """(first frame, frame count, first sample, end sample) of each FRAME_BLOCK of `total`."""
    length, shift = frame_length(config), frame_shift(config)
    for first in range(0, total, FRAME_BLOCK):
        count = min(FRAME_BLOCK, total - first)
        yield first, count, first * shift, (first + count - 1) * shift + length


def log_mel_block(samples: np.ndarray, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
    """log_mel of one frame block: (N,) samples -> (num_frames(N), bins) float64."""
    x = np.asarray(samples, dtype=np.float64)
    length = frame_length(config)
    window = _window(config.window, length)
    mel = _mel_matrix(config.num_mel_bins, fft_size(config), config.sample_rate,
                      float(config.low_freq), float(config.high_freq))
    if x.shape[0] < length:
        return np.zeros((0, config.num_mel_bins), dtype=np.float64)
    frames = _frames(np.ascontiguousarray(x * config.input_scale), config)
    if config.remove_dc_offset:
        frames = frames - frames.mean(axis=1, keepdims=True)
    if config.preemphasis != 0.0:
        emphasised = np.empty_like(frames)
        emphasised[:, 1:] = frames[:, 1:] - config.preemphasis * frames[:, :-1]
        emphasised[:, 0] = frames[:, 0] * (1.0 - config.preemphasis)
        frames = emphasised
    spectrum = np.fft.rfft(frames * window, n=fft_size(config), axis=1)  # (T, n_fft/2 + 1)
    power = spectrum.real**2 + spectrum.imag**2
    energies = power[:, : mel.shape[0]] @ mel  # Nyquist bin has zero weight
    return np.log(np.maximum(energies, config.log_floor))


def block_mean(features: np.ndarray) -> np.ndarray:
    """(T, bins) -> (bins,) float64 mean, summed FRAME_BLOCK rows at a time (T must be > 0).

    The streaming front-end sums the same blocks in the same order, so both means are equal.
    """
    total = np.zeros(features.shape[1], dtype=np.float64)
    for first in range(0, features.shape[0], FRAME_BLOCK):
        total += features[first : first + FRAME_BLOCK].sum(axis=0)
    return total / features.shape[0]


def apply_cmn(features: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """(T, bins) -> (T, bins) minus `mean` (bins,), by default each bin's mean over T."""
    if mean is None:
        if features.shape[0] == 0:
            return features
        mean = block_mean(features)
    return features - mean


def fbank(samples: np.ndarray, config: FrontendConfig = DEFAULT_CONFIG) -> np.ndarray:
    """(N,) samples in [-1, 1] -> (T, num_mel_bins) float32 log-mel, CMN when config.cmn.

    T = num_frames(N); fewer than one frame of samples gives an empty (0, bins) array.
    """
    features = log_mel(samples, config)
    if config.cmn:
        features = apply_cmn(features)
    return features.astype(np.float32)
