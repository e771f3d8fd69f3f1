"""Audio in: decode (libsndfile), downmix to mono and resample (soxr) to the model's rate.

`open_audio` checks an input (a path, or `-` for stdin) and reads its header; the returned
`AudioSource` then decodes a fixed number of source frames at a time, downmixes and resamples
with soxr's streaming resampler, so a long recording never has to be in memory. `load_audio`
is that block path run to the end, so whole-file and streamed samples are the same.
Also here: the checks that decoded audio can be embedded (duration, digital silence,
non-finite samples). The walker of audio folders is `frontend/folders.py`.

Stdin (`-`), pipes, FIFOs and process substitutions (`<(...)`) cannot be rewound, so they are
read into memory once; only the decoded signal is then streamed. A terminal is refused.
Decoders run with file descriptor 2 pointed at /dev/null: libmpg123 prints its notes there.
What is odd but usable (a header declaring more audio than the file holds, audio below the
model's rate) is an InputAudioWarning, once per input.
"""

from __future__ import annotations

import io
import os
import re
import stat
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.errors import InputAudioError, UsageError

STDIN = "-"  # an input named "-" is audio on stdin
LIST_PREFIX = "@"  # an input named "@FILE" is a list of inputs, one a line ("@-": on stdin)
RESAMPLE_QUALITY = "HQ"  # soxr quality, one-shot and streaming
SILENCE_PEAK = 2.0**-15  # below one 16-bit step: digital silence
STDIN_HINT = "pipe or redirect a file in, e.g. `audio embed-speaker - < voice.wav`"


class InputAudioWarning(UserWarning):
    """Input audio that is used but is odd: truncated, or below the model's sample rate."""


def warn(message: str) -> None:
    """Issue an InputAudioWarning (the CLI prints it as one `audio: warning:` line)."""
    warnings.warn(message, InputAudioWarning, stacklevel=2)


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
    """Check the path names a readable, non-empty file (-> the path); `-`, a pipe or a FIFO is
    read whole (-> its bytes). A terminal is a UsageError: reading it would wait silently."""
    if str(source) == STDIN:
        if sys.stdin is None:
            raise InputAudioError("stdin: not available (closed)")
        if sys.stdin.isatty():
            raise UsageError(f"stdin is a terminal, not audio; {STDIN_HINT}")
        return _read_stream(sys.stdin.buffer, "stdin")
    path = Path(source)
    if not path.exists():
        raise InputAudioError(f"{path}: no such file")
    if path.is_dir():
        raise InputAudioError(f"{path}: is a directory, not an audio file")
    info = path.stat()
    regular = stat.S_ISREG(info.st_mode)
    if regular and info.st_size == 0:
        raise InputAudioError(f"{path}: empty file")
    if not os.access(path, os.R_OK):
        raise InputAudioError(f"{path}: permission denied")
    if regular:
        return str(path)
    # A pipe, FIFO, socket or device: its size says nothing (0) and it cannot be rewound.
    try:
        with open(path, "rb") as stream:
            if stream.isatty():
                raise UsageError(f"{path} is a terminal, not audio; {STDIN_HINT}")
            return _read_stream(stream, str(path))
    except OSError as exc:
        raise InputAudioError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def _read_stream(stream, name: str) -> bytes:
    """All bytes of an unseekable input; none is an error."""
    data = stream.read()
    if not data:
        raise InputAudioError(f"{name}: no data (empty input)")
    return data


def unreadable(name: str, exc: Exception) -> InputAudioError:
    """The error for a file libsndfile cannot decode, with libsndfile's reason (first line)."""
    detail = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
    # soundfile prefixes "Error opening <the file object>: "; the name is already in front
    detail = re.sub(r"^Error opening .*?: ", "", detail.splitlines()[0]).rstrip(".")
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

    resampled = soxr.resample(samples, source_rate, target_rate, quality=RESAMPLE_QUALITY)
    return resampled.astype(np.float32)


def load_audio(source: str | os.PathLike, sample_rate: int = 16000) -> Audio:
    """Read a file (or `-` for stdin), downmix to mono and resample to `sample_rate`."""

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
    check_rate(name, int(sample_rate), target_rate)
    return Audio(resample(downmix(data), int(sample_rate), target_rate), target_rate,
                 int(sample_rate), data.shape[1], name)


def check_rate(name: str, source_rate: int, target_rate: int) -> None:
    """Warn about audio below the model's rate: upsampling cannot bring back the high band."""
    if source_rate < target_rate:
        warn(f"{name}: {source_rate} Hz audio upsampled to {target_rate} Hz; speaker vectors "
             "from narrow-band audio are less reliable")


def check_duration(name: str, duration: float, min_duration: float) -> None:
    """Refuse audio shorter than `min_duration` seconds."""
    if duration < min_duration:
        shown = f"{duration:.3f}" if round(duration, 3) < min_duration else f"{duration:.6f}"
        raise InputAudioError(
            f"{name}: too short ({shown} s); "
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


# ---------------------------------------------------------------- decoding in blocks

DECODE_FRAMES = 1 << 16  # source frames per libsndfile read; fixed, so the caller's block
#                          size never changes what the resampler sees
BLOCK_SAMPLES = 1 << 16  # default output block, samples at the target rate
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
                        f"the {self.source_frames} frames its header declares (truncated or "
                        "damaged file)")
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
    """Check a path (or `-` for stdin) and read its header; nothing is decoded yet. Warns when
    the header declares more audio than is present (that is used) or the rate is too low."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    name = source_name(source)
    data = open_input(source)
    with _open_sndfile(data, name) as handle:
        rate, channels, frames = int(handle.samplerate), int(handle.channels), int(handle.frames)
        declared = declared_frames(handle, frames)
    if frames <= 0 or channels <= 0:
        raise no_samples(name)
    if declared is not None:
        warn(f"{name}: truncated: header says {declared / rate:.2f} s, "
             f"{frames / rate:.2f} s present")
    check_rate(name, rate, int(sample_rate))
    return AudioSource(name, rate, channels, frames, int(sample_rate), data)


# libsndfile's log of a WAV, AIFF or AU header whose data chunk is longer than the file:
# "data : 480000 (should be 160000)" (bytes declared, bytes present).
_SHORT_DATA = re.compile(r"^\s*(?:data|ssnd|data size)\s*:\s*(\d+)\s*\(should be (\d+)\)",
                         re.IGNORECASE | re.MULTILINE)
UNKNOWN_SIZE = 0x7FFF0000  # bytes; at or above: a placeholder written by a streaming encoder


def declared_frames(handle, frames: int) -> int | None:
    """Frames the header declares when it declares more data than the file holds, else None
    (libsndfile then reads and counts only what is there). Placeholder sizes written to a pipe
    (0xFFFFFFFF, or 0) mean "unknown", not truncated."""
    match = _SHORT_DATA.search(handle.extra_info)
    if match is None:
        return None
    declared, present = int(match.group(1)), int(match.group(2))
    if present <= 0 or not present < declared < UNKNOWN_SIZE:
        return None
    return round(frames * declared / present)


_quiet_lock = threading.Lock()
_quiet = {"users": 0, "saved": -1}  # decoder calls running; fd 2 as it was before them


@contextmanager
def _decoder_quiet() -> Iterator[None]:
    """fd 2 on /dev/null while decoder calls run (libmpg123 writes notes and errors there).
    Concurrent calls share one redirection; other threads' fd-2 output meanwhile is lost."""
    with _quiet_lock:
        if _quiet["users"] == 0:
            if sys.stderr is not None:
                sys.stderr.flush()  # Python's buffered text goes out before fd 2 moves
            try:
                _quiet["saved"] = os.dup(2)
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, 2)
                os.close(null)
            except OSError:  # fd 2 closed, or no /dev/null: nothing to silence
                pass
        _quiet["users"] += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet["users"] -= 1
            if _quiet["users"] == 0 and _quiet["saved"] >= 0:
                os.dup2(_quiet["saved"], 2)
                os.close(_quiet["saved"])
                _quiet["saved"] = -1


def _open_sndfile(data: str | bytes, name: str):
    """A soundfile.SoundFile on a path or in-memory bytes; errors as InputAudioError."""
    import soundfile

    try:
        with _decoder_quiet():
            return soundfile.SoundFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except _SNDFILE_ERRORS as exc:
        raise unreadable(name, exc) from None


def _read(handle, frames: int, name: str) -> np.ndarray:
    """Up to `frames` frames as (n, channels) float32; decoding errors as InputAudioError."""
    try:
        with _decoder_quiet():
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
