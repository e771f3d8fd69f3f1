"""What an input names: a file, `-` for stdin, or a pipe, FIFO or process substitution.

A regular file is checked (exists, not a directory, not empty, readable) and left on disk for
the decoder. Stdin, pipes, FIFOs (`<(...)`), devices and sockets cannot be rewound, so they are
copied once, STREAM_BLOCK bytes at a time, to a scratch file in the temporary folder ($TMPDIR),
which the decoder then reads like any file; nothing holds the stream whole in memory. The
scratch file has no name (removed as soon as it is created), so it vanishes when the input is
done, when the run fails or is stopped, even when the process is killed. The copy stops with an
InputAudioError when the stream passes MAX_STREAM_BYTES ($AUDIO_MAX_STREAM_BYTES), or the
bytes its first block's header gives for the maximum duration (`stream_bytes_for`), when the
scratch folder runs short of space, or when its first block starts like no audio format
(/dev/zero, /dev/urandom). A terminal is refused: reading it would wait silently. Decoding is
`frontend/audio.py`.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from engines.errors import InputAudioError, UsageError

STDIN = "-"  # an input named "-" is audio on stdin
LIST_PREFIX = "@"  # an input named "@FILE" is a list of inputs, one a line ("@-": on stdin)
STDIN_HINT = "pipe or redirect a file in, e.g. `audio embed-speaker - < voice.wav`"

STREAM_BLOCK = 1 << 20  # bytes copied at a time from a stream to its scratch file
MAX_STREAM_BYTES = 4 << 30  # default limit of one stream: 4 GiB, well above 24 h of 16 kHz
#                             16-bit mono (2.76 GB), so an endless input ends by itself
MAX_STREAM_ENV = "AUDIO_MAX_STREAM_BYTES"  # changes the limit: bytes, or e.g. 500M, 8G
SCRATCH_RESERVE = 64 << 20  # free bytes always left in the scratch folder


def source_name(source: str | os.PathLike) -> str:
    """The name used in messages: `stdin` for `-`, else the path as given."""
    return "stdin" if str(source) == STDIN else str(source)


def open_input(source: str | os.PathLike, max_duration: float | None = None
               ) -> str | StreamCopy:
    """Check the path names a readable, non-empty file (-> the path); `-`, a pipe, a FIFO, a
    device or a socket is copied to a scratch file (-> a StreamCopy), up to what
    `max_duration` seconds can take. A terminal is a UsageError: reading it would wait
    silently."""
    if str(source) == STDIN:
        if sys.stdin is None:
            raise InputAudioError("stdin: not available (closed)")
        if sys.stdin.isatty():
            raise UsageError(f"stdin is a terminal, not audio; {STDIN_HINT}")
        return copy_stream(sys.stdin.buffer, "stdin", max_duration)
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
            return copy_stream(stream, str(path), max_duration)
    except OSError as exc:
        raise InputAudioError(f"{path}: cannot be read ({exc.strerror or exc})") from None


class StreamCopy:
    """A stream's bytes in a nameless scratch file. `reader()` gives a file object with a
    position of its own (reads are positioned: os.pread), so two decoders never disturb each
    other. The file is closed, and its space freed, by `close()` or when this is collected."""

    def __init__(self, handle, size: int) -> None:
        self._handle = handle  # the scratch file, open for reading and writing
        self.size = size  # bytes

    def reader(self) -> _Reader:
        return _Reader(self._handle.fileno(), self.size)

    def close(self) -> None:
        self._handle.close()


class _Reader(io.RawIOBase):
    """Read-only, seekable view of a file descriptor with its own position."""

    def __init__(self, fd: int, size: int) -> None:
        super().__init__()
        self._fd, self._size, self._position = fd, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = os.pread(self._fd, min(len(view), max(self._size - self._position, 0)),
                        self._position)
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._position, os.SEEK_END: self._size}[whence]
        self._position = max(base + offset, 0)
        return self._position

    def tell(self) -> int:
        return self._position


def max_stream_bytes() -> int:
    """The limit of one stream: $AUDIO_MAX_STREAM_BYTES (bytes, or with K, M, G or T: binary
    multiples), else MAX_STREAM_BYTES. A value that is not a positive size is a UsageError."""
    text = os.environ.get(MAX_STREAM_ENV, "").strip()
    if not text:
        return MAX_STREAM_BYTES
    match = re.fullmatch(r"(\d+)\s*(?:([KMGT])(?:I?B)?|B)?", text, re.IGNORECASE)
    value = int(match.group(1)) << (10 * " KMGT".index((match.group(2) or " ").upper())) \
        if match else 0
    if value <= 0:
        raise UsageError(f"{MAX_STREAM_ENV}: expected a positive size in bytes, such as "
                         f"4294967296 or 4G; got {text!r}")
    return value


def size_text(size: int) -> str:
    """4294967296 -> '4 GiB', 1536 -> '1.5 KiB', 100 -> '100 bytes'."""
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.4g} {unit}"
    return f"{size} bytes"


# How audio formats libsndfile reads begin (first bytes); a stream that starts otherwise is
# still accepted when libsndfile opens its first block (formats without a magic number).
AUDIO_MAGIC = (b"RIFF", b"RIFX", b"RF64", b"BW64", b"riff", b"FORM", b"caff", b"fLaC",
               b"OggS", b"ID3", b".snd", b"dns.", b"NIST_1A", b"Creative Voice File", b"2BIT",
               b"ALaw", b"PVF1", b"Extended Instrument", b"MATLAB 5.0", b"fap ", b" paf",
               b"\x64\xa3", b"\xa3\x64", b"\x00\x01\x64\xa3", b"\xf0\x7e", b"MPC")


def _mpeg_frame(head: bytes) -> bool:
    """An MPEG audio frame header: sync, and no reserved version, layer, bitrate or rate."""
    if len(head) < 4 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    return ((head[1] >> 3) & 3) != 1 and ((head[1] >> 1) & 3) != 0 \
        and (head[2] >> 4) != 15 and ((head[2] >> 2) & 3) != 3


# Bytes a sample takes in each uncompressed encoding libsndfile names. Compressed audio (the
# formats of COMPRESSED, or another encoding: ADPCM...) takes fewer than COMPRESSED_BOUND: FLAC's
# worst case, verbatim frames of 24-bit audio, is 3 bytes a sample and the frame headers
# (libsndfile names FLAC's encoding by its bit depth, PCM_16 or PCM_24).
SAMPLE_BYTES = {"PCM_S8": 1, "PCM_U8": 1, "ULAW": 1, "ALAW": 1, "PCM_16": 2, "PCM_24": 3,
                "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}
COMPRESSED = ("FLAC", "OGG", "MP3", "MPEG")
COMPRESSED_BOUND = 4


def stream_bytes_for(head: bytes, seconds: float) -> int | None:
    """At most how many bytes a stream starting with `head` takes for `seconds` of audio: its
    header's rate, channels and encoding, plus `head` for the header itself; None when
    libsndfile cannot read the header from `head` alone."""
    import soundfile

    try:
        with soundfile.SoundFile(io.BytesIO(head)) as info:
            rate, channels = info.samplerate, info.channels
            packed = info.format in COMPRESSED or info.subtype not in SAMPLE_BYTES
            width = COMPRESSED_BOUND if packed else SAMPLE_BYTES[info.subtype]
    except (RuntimeError, TypeError, ValueError):  # LibsndfileError is a RuntimeError
        return None
    return len(head) + int(seconds * rate * channels * width) + width * channels


def looks_like_audio(head: bytes) -> bool:
    """Whether the first bytes of a stream can be audio libsndfile reads: a known magic number
    or MPEG frame, else libsndfile itself opens them. All zeros or random bytes cannot."""
    if head.startswith(AUDIO_MAGIC) or _mpeg_frame(head):
        return True
    import soundfile

    try:
        soundfile.SoundFile(io.BytesIO(head)).close()
    except (RuntimeError, TypeError, ValueError):  # LibsndfileError is a RuntimeError
        return False
    return True


def copy_stream(stream, name: str, max_duration: float | None = None) -> StreamCopy:
    """Copy an unseekable input to a nameless scratch file, a block at a time; none is an
    error, and so are more than the limit, more bytes than `max_duration` seconds of audio
    take in the encoding its header names, a scratch folder short of space, and a first
    block that is clearly not audio (checked only when the stream goes on past it)."""
    limit = max_stream_bytes()
    longest = None  # bytes of max_duration seconds, from the first block's header
    folder = tempfile.gettempdir()
    try:
        handle = tempfile.TemporaryFile(dir=folder)  # no name: removed by the file system
    except OSError as exc:
        raise InputAudioError(f"{name}: cannot make a scratch file in {folder} to hold the "
                              f"stream ({exc.strerror or exc}); set TMPDIR") from None
    try:
        size = 0
        while block := stream.read(STREAM_BLOCK):
            if size == 0 and len(block) == STREAM_BLOCK:
                if not looks_like_audio(block):
                    raise InputAudioError(f"{name}: not audio (its first "
                                          f"{size_text(len(block))} start like no format "
                                          "libsndfile reads)")
                if max_duration is not None:
                    longest = stream_bytes_for(block, max_duration)
            if longest is not None and size + len(block) > longest:
                raise InputAudioError(
                    f"{name}: longer than {max_duration:g} s (--max-duration); stopped reading "
                    f"after {size_text(size + len(block))}")
            if size + len(block) > limit:
                raise InputAudioError(
                    f"{name}: more than {size_text(limit)} of input (the limit for a stream; "
                    f"save it to a file, or raise {MAX_STREAM_ENV})")
            _check_room(folder, len(block), name)
            try:
                handle.write(block)
            except OSError as exc:
                raise InputAudioError(f"{name}: the scratch folder {folder} is full or failing "
                                      f"({exc.strerror or exc}); set TMPDIR to a folder with "
                                      "room") from None
            size += len(block)
        if size == 0:
            raise InputAudioError(f"{name}: no data (empty input)")
        handle.flush()
        return StreamCopy(handle, size)
    except BaseException:  # failed, refused or stopped: the scratch file goes at once
        handle.close()
        raise


def _check_room(folder: str, needed: int, name: str) -> None:
    """Refuse before the scratch folder would be left with less than SCRATCH_RESERVE free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: the write itself reports a full disk
    if free < needed + SCRATCH_RESERVE:
        raise InputAudioError(f"{name}: the scratch folder {folder} has only "
                              f"{size_text(free)} free, too little to hold the stream; set "
                              "TMPDIR to a folder with room, or save the input to a file")
