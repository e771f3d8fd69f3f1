"""Mel filterbanks: the (FFT bins, mel bins) weights the log-mel front-end multiplies each power
spectrum by. Kaldi's (HTK mel scale, unnormalised triangles; WeSpeaker, 3D-Speaker) or Slaney's
(librosa's default, area-normalised triangles; NeMo). Built once per shape and cached.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Fixed by the Kaldi definition, not configurable here.
MEL_BREAK_HZ = 700.0  # mel(f) = MEL_SCALE * ln(1 + f / MEL_BREAK_HZ)
MEL_SCALE = 1127.0  # mels
# Slaney's mel scale: linear below SLANEY_BREAK_HZ, logarithmic above it.
SLANEY_HZ_PER_MEL = 200.0 / 3.0
SLANEY_BREAK_HZ = 1000.0
SLANEY_LOG_STEP = np.log(6.4) / 27.0  # mels per ln Hz above the break


def mel_scale(freq_hz: np.ndarray | float) -> np.ndarray:
    """Hz -> mel, Kaldi/HTK natural-log form 1127 ln(1 + f/700)."""
    return MEL_SCALE * np.log1p(np.asarray(freq_hz, dtype=np.float64) / MEL_BREAK_HZ)


def slaney_mel(freq_hz: np.ndarray) -> np.ndarray:
    """Hz -> mel on Slaney's scale (librosa's default, htk=False)."""
    f = np.asarray(freq_hz, dtype=np.float64)
    break_mel = SLANEY_BREAK_HZ / SLANEY_HZ_PER_MEL
    octaves = np.log(np.maximum(f, SLANEY_BREAK_HZ) / SLANEY_BREAK_HZ)
    above = break_mel + octaves / SLANEY_LOG_STEP
    return np.where(f >= SLANEY_BREAK_HZ, above, f / SLANEY_HZ_PER_MEL)


def slaney_hz(mel: np.ndarray) -> np.ndarray:
    """Slaney mel -> Hz (the inverse of slaney_mel)."""
    m = np.asarray(mel, dtype=np.float64)
    break_mel = SLANEY_BREAK_HZ / SLANEY_HZ_PER_MEL
    above = SLANEY_BREAK_HZ * np.exp(SLANEY_LOG_STEP * (m - break_mel))
    return np.where(m >= break_mel, above, m * SLANEY_HZ_PER_MEL)


@lru_cache(maxsize=16)
def mel_matrix(num_bins: int, n_fft: int, sample_rate: int,
               low_hz: float, high_hz: float, scale: str = "kaldi") -> np.ndarray:
    """(n_fft//2, num_bins) float64 triangular weights, read-only (cached): Kaldi's
    (unnormalised) or, with scale "slaney", librosa's.

    Rows are FFT bins 0..n_fft/2-1; the Nyquist bin has weight 0 so it is left out.
    `high_hz` <= 0 counts down from the Nyquist frequency (Kaldi's convention).
    """
    nyquist = 0.5 * sample_rate
    high = high_hz if high_hz > 0 else nyquist + high_hz
    if not 0.0 <= low_hz < high <= nyquist:
        raise ValueError(f"bad mel range {low_hz}..{high} Hz for sample rate {sample_rate} Hz")
    if scale == "kaldi":
        weights = _kaldi_matrix(num_bins, n_fft, sample_rate, low_hz, high)
    elif scale == "slaney":
        weights = _slaney_matrix(num_bins, n_fft, sample_rate, low_hz, high)
    else:
        raise ValueError(f"unknown mel scale {scale!r} (expected 'kaldi' or 'slaney')")
    weights.setflags(write=False)
    return weights


def _kaldi_matrix(num_bins: int, n_fft: int, sample_rate: int, low: float, high: float
                  ) -> np.ndarray:
    """Kaldi's triangles, equally spaced in HTK mels, peak 1, computed in mels."""
    edges = np.linspace(mel_scale(low), mel_scale(high), num_bins + 2)  # mels
    left, center, right = edges[:-2], edges[1:-1], edges[2:]
    bin_mel = mel_scale(np.arange(n_fft // 2) * sample_rate / n_fft)[:, None]
    rising = (bin_mel - left) / (center - left)
    falling = (right - bin_mel) / (right - center)
    weights = np.where(bin_mel <= center, rising, falling)
    return np.where((bin_mel > left) & (bin_mel < right), weights, 0.0)


def _slaney_matrix(num_bins: int, n_fft: int, sample_rate: int, low: float, high: float
                   ) -> np.ndarray:
    """librosa.filters.mel(norm="slaney"): triangles between Slaney-mel-spaced edges (in Hz),
    each scaled by 2 / its width in Hz."""
    edges = slaney_hz(np.linspace(slaney_mel(low), slaney_mel(high), num_bins + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - np.arange(n_fft // 2)[None, :] * sample_rate / n_fft
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return (weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]).T
