"""Decode audio in blocks: mono float32 at the target rate, in memory bounded by the block size.

`open_audio` checks the input and reads its header; `AudioSource.blocks()` then decodes with
libsndfile a fixed number of source frames at a time, downmixes and resamples with soxr's
streaming resampler. Each call to `blocks()` starts again from the beginning and yields the same
samples, so callers can make several passes. `audio_io.load_audio` is this path run to the end.

Stdin (`-`) cannot be rewound, so it is read into memory once (as `load_audio` always did); only
the decoded signal is then streamed.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from .audio_io import Audio, check_finite, downmix, no_samples, open_input, source_name, unreadable
from .errors import InputAudioError

DECODE_FRAMES = 1 << 16  # source frames per libsndfile read; fixed, so the caller's block
#                          size never changes what the resampler sees
BLOCK_SAMPLES = 1 << 16  # default output block, samples at the target rate
RESAMPLE_QUALITY = "HQ"  # soxr quality, as audio_io.resample uses
_SNDFILE_ERRORS = (RuntimeError, TypeError, ValueError)  # LibsndfileError is a RuntimeError


def resampled_length(frames: int, source_rate: int, target_rate: int) -> int:
    """Samples soxr gives for `frames` input frames: frames * target / source, rounded half up.

    Measured, not documented: soxr's streaming resampler (flushed with last=True) and its
    one-shot `resample` both give this count (checked over many rates and lengths).
    """
    if source_rate == target_rate:
        return frames
    return (2 * frames * target_rate + source_rate) // (2 * source_rate)


@dataclass(frozen=True)
class AudioSource:
    """An opened, checked audio input whose samples are decoded on demand, block by block."""

    name: str  # for messages: the path as given, or "stdin"
    source_rate: int  # Hz, of the file
    channels: int  # of the file, before the downmix
    source_frames: int  # frames in the file, from its header
    sample_rate: int  # Hz, of the samples `blocks()` yields
    _input: str | bytes = field(repr=False)  # a path, or stdin's bytes

    @property
    def num_samples(self) -> int:
        """Exact number of samples `blocks()` yields in all, at `sample_rate`."""
        return resampled_length(self.source_frames, self.source_rate, self.sample_rate)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate

    def blocks(self, block_samples: int = BLOCK_SAMPLES) -> Iterator[np.ndarray]:
        """Mono float32 blocks of `block_samples` at `sample_rate` (the last may be shorter).

        Decoding errors (corrupt data, NaN/infinite samples, a file shorter than its header
        says) raise InputAudioError while iterating, when the decoder reaches them.
        """
        if block_samples < 1:
            raise ValueError(f"block_samples must be >= 1, got {block_samples}")
        return _rechunk(self._pieces(), block_samples)

    def read_all(self) -> np.ndarray:
        """All samples, (num_samples,) float32, decoded through the same path as `blocks()`."""
        samples = np.empty(self.num_samples, dtype=np.float32)
        filled = 0
        for piece in self._pieces():
            samples[filled : filled + len(piece)] = piece
            filled += len(piece)
        return samples

    def read_audio(self) -> Audio:
        """All samples as decoded Audio, with where they came from."""
        return Audio(self.read_all(), self.sample_rate, self.source_rate, self.channels,
                     self.name)

    def _pieces(self) -> Iterator[np.ndarray]:
        """Resampled mono pieces of whatever length soxr returns for each decoded read."""
        resampler = None
        if self.source_rate != self.sample_rate:
            import soxr

            resampler = soxr.ResampleStream(self.source_rate, self.sample_rate, 1,
                                            dtype="float32", quality=RESAMPLE_QUALITY)
        produced, remaining = 0, self.source_frames
        with _open_sndfile(self._input, self.name) as handle:
            while remaining > 0:
                data = _read(handle, min(DECODE_FRAMES, remaining), self.name)
                if data.shape[0] == 0:
                    raise InputAudioError(
                        f"{self.name}: the audio ends after {self.source_frames - remaining} of "
                        f"the {self.source_frames} frames its header declares (truncated file)")
                remaining -= data.shape[0]
                check_finite(data, self.name)
                piece = downmix(data)
                if resampler is not None:
                    piece = resampler.resample_chunk(piece, last=remaining == 0)
                produced += len(piece)
                if len(piece):
                    yield piece
        if produced != self.num_samples:  # resampled_length no longer matches soxr
            raise RuntimeError(f"{self.name}: decoded {produced} samples, "
                               f"expected {self.num_samples}")


def open_audio(source: str | os.PathLike, sample_rate: int = 16000) -> AudioSource:
    """Check a path (or `-` for stdin) and read its header; nothing is decoded yet."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    name = source_name(source)
    data = open_input(source)
    with _open_sndfile(data, name) as handle:
        rate, channels, frames = int(handle.samplerate), int(handle.channels), int(handle.frames)
    if frames <= 0 or channels <= 0:
        raise no_samples(name)
    return AudioSource(name, rate, channels, frames, int(sample_rate), data)


def _open_sndfile(data: str | bytes, name: str):
    """A soundfile.SoundFile on a path or in-memory bytes; errors as InputAudioError."""
    import soundfile

    try:
        return soundfile.SoundFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except _SNDFILE_ERRORS as exc:
        raise unreadable(name, exc) from None


def _read(handle, frames: int, name: str) -> np.ndarray:
    """Up to `frames` frames as (n, channels) float32; decoding errors as InputAudioError."""
    try:
        return handle.read(frames, dtype="float32", always_2d=True)
    except _SNDFILE_ERRORS as exc:
        raise unreadable(name, exc) from None


def _rechunk(pieces: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Regroup 1-D pieces into fresh arrays of exactly `size` samples (the last may be shorter)."""
    buffer, filled = np.empty(size, dtype=np.float32), 0
    for piece in pieces:
        start = 0
        while start < len(piece):
            take = min(size - filled, len(piece) - start)
            buffer[filled : filled + take] = piece[start : start + take]
            filled, start = filled + take, start + take
            if filled == size:
                yield buffer
                buffer, filled = np.empty(size, dtype=np.float32), 0
    if filled:
        yield buffer[:filled]
