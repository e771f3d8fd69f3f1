"""Synthesised test audio: voice-like harmonic signals, written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def voiced(seconds: float, sample_rate: int = 16000, f0: float = 130.0,
           seed: int = 0) -> np.ndarray:
    """A vowel-like float32 signal: harmonics of a wobbling f0 through two formants, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    pitch = f0 * (1 + 0.04 * np.sin(2 * np.pi * 4.0 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    x = np.zeros_like(t)
    for k in range(1, int(7000 // f0)):
        freq = k * f0
        gain = 1 / (1 + ((freq - 600) / 150) ** 2) + 1 / (1 + ((freq - 1800) / 250) ** 2) + 0.05
        x += gain / k * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    x *= 0.6 + 0.4 * np.sin(2 * np.pi * 2.5 * t) ** 2
    x = 0.4 * x / np.abs(x).max() + 0.002 * rng.standard_normal(len(t))
    return x.astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = 16000,
              subtype: str = "PCM_16") -> Path:
    """Write samples (N,) or (N, channels) to a WAV file and return its path."""
    sf.write(str(path), samples, sample_rate, subtype=subtype)
    return path
