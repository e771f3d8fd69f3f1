"""Audio in: decode, downmix to mono and resample (soxr) to the model's rate, block by block.

`open_audio` checks an input (a path, or `-` for stdin: frontend/inputs.py) and reads its
header; the returned `AudioSource` then decodes a fixed number of source frames at a time
(libsndfile: frontend/sndfile.py), downmixes and resamples with soxr's streaming resampler, so a
long recording never has to be in memory. `load_audio` is that block path run to the end, so
whole-file and streamed samples are the same. The checks that decoded audio can be embedded are
frontend/checks.py; the walker of audio folders is frontend/folders.py.

Stdin (`-`), pipes, FIFOs, process substitutions (`<(...)`) and devices cannot be rewound, so
they are copied once, block by block, to a scratch file (frontend/inputs.py), which is then
decoded like any file. What is odd but usable (a
header declaring more audio than the file holds, audio below the model's rate) is an
InputAudioWarning, once per input.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from audio_cli.frontend.checks import (
    check_duration,
    check_finite,
    check_max_duration,
    check_peak,
    check_rate,
    warn,
)
from audio_cli.frontend.inputs import (
    StreamCopy,
    open_input,
    source_name,
)
from audio_cli.frontend.sndfile import declared_frames, open_sndfile, read_frames
from engines.errors import InputAudioError

RESAMPLE_QUALITY = "HQ"  # soxr quality, one-shot and streaming
DECODE_FRAMES = 1 << 16  # source frames per libsndfile read; fixed, so the caller's block
#                          size never changes what the resampler sees
BLOCK_SAMPLES = 1 << 16  # default output block, samples at the target rate


@dataclass(frozen=True)
class Audio:
    """Decoded audio: mono float32 samples in [-1, 1] and where they came from."""

    samples: np.ndarray  # (N,) float32 at `sample_rate`
    sample_rate: int  # Hz, after resampling
    source_rate: int  # Hz, of the file
    channels: int  # of the file, before the downmix
    source: str
    source_spread: float | None = None  # largest minus smallest mono sample before
    #                                     resampling (None: take the samples')

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / self.sample_rate


def check_usable(audio: Audio, min_duration: float) -> None:
    """Refuse audio that is too short, digitally silent or a constant level. The level is
    judged before resampling where known: a resampled constant ripples at its ends."""
    check_duration(audio.source, audio.duration, min_duration)
    spread = audio.source_spread
    check_peak(audio.source, float(np.max(np.abs(audio.samples))),
               float(np.ptp(audio.samples)) if spread is None else spread)


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

    resampled = soxr.resample(samples, source_rate, target_rate, quality=RESAMPLE_QUALITY)
    return resampled.astype(np.float32)


def load_audio(source: str | os.PathLike, sample_rate: int = 16000,
               max_duration: float | None = None) -> Audio:
    """Read a file (or `-` for stdin), downmix to mono and resample to `sample_rate`."""
    return open_audio(source, sample_rate, max_duration).read_audio()


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
    check_rate(name, int(sample_rate), target_rate)
    mono = downmix(data)
    samples = resample(mono, int(sample_rate), target_rate)
    return Audio(samples, target_rate, int(sample_rate), data.shape[1], name,
                 float(np.ptp(mono)))


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
    _input: str | bytes | StreamCopy = field(repr=False)  # a path, bytes, or a stream's copy
    _levels: list = field(default_factory=list, repr=False, compare=False)  # [low, high] of
    #                                 the mono source samples, once a pass has read them all

    @property
    def num_samples(self) -> int:
        """Exact number of samples `blocks()` yields in all, at `sample_rate`."""
        return resampled_length(self.source_frames, self.source_rate, self.sample_rate)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate

    @property
    def spread(self) -> float | None:
        """Largest minus smallest mono sample before resampling, once a pass has decoded
        every sample (None before): 0 for a constant level (frontend.checks.check_peak)."""
        return self._levels[1] - self._levels[0] if self._levels else None

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
        samples = self.read_all()
        return Audio(samples, self.sample_rate, self.source_rate, self.channels, self.name,
                     self.spread)

    def _pieces(self) -> Iterator[np.ndarray]:
        """Resampled mono pieces of whatever length soxr returns for each decoded read."""
        resampler = None
        if self.source_rate != self.sample_rate:
            import soxr

            resampler = soxr.ResampleStream(self.source_rate, self.sample_rate, 1,
                                            dtype="float32", quality=RESAMPLE_QUALITY)
        produced, remaining = 0, self.source_frames
        low, high = np.inf, -np.inf  # of the source's mono samples, before resampling (a
        #                              resampled constant ripples at its ends)
        with open_sndfile(self._input, self.name) as handle:
            while remaining > 0:
                data = read_frames(handle, min(DECODE_FRAMES, remaining), self.name)
                if data.shape[0] == 0:
                    raise InputAudioError(
                        f"{self.name}: the audio ends after {self.source_frames - remaining} of "
                        f"the {self.source_frames} frames its header declares (truncated or "
                        "damaged file)")
                remaining -= data.shape[0]
                check_finite(data, self.name)
                piece = downmix(data)
                if len(piece):
                    low, high = min(low, float(piece.min())), max(high, float(piece.max()))
                if remaining == 0:
                    self._levels[:] = [low, high]
                if resampler is not None:
                    piece = resampler.resample_chunk(piece, last=remaining == 0)
                produced += len(piece)
                if len(piece):
                    yield piece
        if produced != self.num_samples:  # resampled_length no longer matches soxr
            raise RuntimeError(f"{self.name}: decoded {produced} samples, "
                               f"expected {self.num_samples}")


def open_audio(source: str | os.PathLike, sample_rate: int = 16000,
               max_duration: float | None = None) -> AudioSource:
    """Check a path (or `-` for stdin) and read its header; nothing is decoded yet. Warns when
    the header declares more audio than is present (that is used) or the rate is below the
    model's; refuses a rate no speech front-end can use and, from the header, a recording
    longer than `max_duration` seconds (a stream: as soon as its copy passes that length)."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    name = source_name(source)
    data = open_input(source, max_duration)
    try:
        with open_sndfile(data, name) as handle:
            rate = int(handle.samplerate)
            channels = int(handle.channels)
            frames = int(handle.frames)
            declared = declared_frames(handle, frames)
        if frames <= 0 or channels <= 0:
            raise InputAudioError(f"{name}: the file holds no audio samples")
        if declared is not None:
            warn(f"{name}: truncated: header says {declared / rate:.2f} s, "
                 f"{frames / rate:.2f} s present")
        check_rate(name, rate, int(sample_rate))
        check_max_duration(name, frames / rate, max_duration)
    except BaseException:
        if isinstance(data, StreamCopy):  # refused: the scratch copy goes now, not when
            data.close()  #                 the traceback is dropped
        raise
    return AudioSource(name, rate, channels, frames, int(sample_rate), data)


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
