"""Decode audio files into 16 kHz mono float32 samples, and check they can be embedded.

The helpers here (input checks, error messages, downmix) are shared with `audio_stream`, which
decodes in blocks; `load_audio` is that block path run to the end, so both give the same samples.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputAudioError

STDIN = "-"
SILENCE_PEAK = 2.0**-15  # below one 16-bit step: digital silence


@dataclass(frozen=True)
class Audio:
    """Decoded audio: mono float32 samples in [-1, 1] and where they came from."""

    samples: np.ndarray  # (N,) float32 at `sample_rate`
    sample_rate: int  # Hz, after resampling
    source_rate: int  # Hz, of the file
    channels: int  # of the file, before the downmix
    source: str

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


def source_name(source: str | os.PathLike) -> str:
    """The name used in messages: `stdin` for `-`, else the path as given."""
    return "stdin" if str(source) == STDIN else str(source)


def open_input(source: str | os.PathLike) -> str | bytes:
    """Check the path names a readable, non-empty file (-> the path); `-` reads all of stdin."""
    if str(source) == STDIN:
        data = sys.stdin.buffer.read()
        if not data:
            raise InputAudioError("stdin: no data (empty input)")
        return data
    path = Path(source)
    if not path.exists():
        raise InputAudioError(f"{path}: no such file")
    if path.is_dir():
        raise InputAudioError(f"{path}: is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise InputAudioError(f"{path}: empty file")
    if not os.access(path, os.R_OK):
        raise InputAudioError(f"{path}: permission denied")
    return str(path)


def unreadable(name: str, exc: Exception) -> InputAudioError:
    """The error for a file libsndfile cannot decode, with its first line of detail."""
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return InputAudioError(f"{name}: not a readable audio file ({detail})")


def no_samples(name: str) -> InputAudioError:
    """The error for a well-formed file that holds no audio."""
    return InputAudioError(f"{name}: the file holds no audio samples")


def check_finite(data: np.ndarray, name: str) -> None:
    """Refuse NaN or infinite samples."""
    if not np.isfinite(data).all():
        raise InputAudioError(f"{name}: the audio holds non-finite samples (NaN or infinity)")


def downmix(data: np.ndarray) -> np.ndarray:
    """(frames, channels) -> (frames,) by averaging the channels."""
    if data.shape[1] == 1:
        return data[:, 0]
    return data.mean(axis=1, dtype=np.float64).astype(np.float32)


def resample(samples: np.ndarray, source_rate: int, target_rate: int) -> np.ndarray:
    """Resample with soxr (high quality); a no-op when the rates match."""
    if source_rate == target_rate:
        return samples
    import soxr

    return soxr.resample(samples, source_rate, target_rate, quality="HQ").astype(np.float32)


def load_audio(source: str | os.PathLike, sample_rate: int = 16000) -> Audio:
    """Read a file (or `-` for stdin), downmix to mono and resample to `sample_rate`."""
    from .audio_stream import open_audio

    return open_audio(source, sample_rate).read_audio()


def from_samples(samples: np.ndarray, sample_rate: int, target_rate: int = 16000,
                 name: str = "<samples>") -> Audio:
    """Wrap in-memory samples, (N,) or (N, channels), as Audio at `target_rate`."""
    data = np.asarray(samples)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.size == 0:
        raise InputAudioError(f"{name}: expected a non-empty (N,) or (N, channels) array")
    if np.issubdtype(data.dtype, np.integer):
        data = data.astype(np.float32) / float(np.iinfo(data.dtype).max + 1)
    data = data.astype(np.float32)
    check_finite(data, name)
    if sample_rate <= 0:
        raise InputAudioError(f"{name}: sample rate must be positive, got {sample_rate}")
    return Audio(resample(downmix(data), int(sample_rate), target_rate), target_rate,
                 int(sample_rate), data.shape[1], name)


def check_duration(name: str, duration: float, min_duration: float) -> None:
    """Refuse audio shorter than `min_duration` seconds."""
    if duration < min_duration:
        raise InputAudioError(
            f"{name}: too short ({duration:.3f} s); "
            f"at least {min_duration:g} s is needed (--min-duration)"
        )


def check_peak(name: str, peak: float) -> None:
    """Refuse audio whose largest absolute sample is digital silence."""
    if peak < SILENCE_PEAK:
        raise InputAudioError(f"{name}: the audio is digital silence")


def check_usable(audio: Audio, min_duration: float) -> None:
    """Refuse audio that is too short or digitally silent."""
    check_duration(audio.source, audio.duration, min_duration)
    check_peak(audio.source, float(np.max(np.abs(audio.samples))))
