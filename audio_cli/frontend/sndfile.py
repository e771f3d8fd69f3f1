"""libsndfile (through soundfile), kept quiet and in this tool's terms: files opened from a path
or from bytes, frames read as float32, its failures as one-line InputAudioErrors, and the
header that declares more audio than the file holds.

Decoders run with file descriptor 2 pointed at /dev/null: libmpg123 prints its notes there.
"""

from __future__ import annotations

import io
import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from engines.errors import InputAudioError

SNDFILE_ERRORS = (RuntimeError, TypeError, ValueError)  # LibsndfileError is a RuntimeError

# libsndfile's log of a WAV, AIFF or AU header whose data chunk is longer than the file:
# "data : 480000 (should be 160000)" (bytes declared, bytes present).
_SHORT_DATA = re.compile(r"^\s*(?:data|ssnd|data size)\s*:\s*(\d+)\s*\(should be (\d+)\)",
                         re.IGNORECASE | re.MULTILINE)
UNKNOWN_SIZE = 0x7FFF0000  # bytes; at or above: a placeholder written by a streaming encoder


def unreadable(name: str, exc: Exception) -> InputAudioError:
    """The error for a file libsndfile cannot decode, with libsndfile's reason (first line)."""
    detail = getattr(exc, "error_string", None) or str(exc) or type(exc).__name__
    # soundfile prefixes "Error opening <the file object>: "; the name is already in front
    detail = re.sub(r"^Error opening .*?: ", "", detail.splitlines()[0]).rstrip(".")
    return InputAudioError(f"{name}: not a readable audio file ({detail})")


def open_sndfile(data, name: str):
    """A soundfile.SoundFile on a path, in-memory bytes, or anything with `reader()` that gives
    a fresh file object (a stream's scratch copy: frontend/inputs.py); errors as
    InputAudioError."""
    import soundfile

    if isinstance(data, bytes):
        data = io.BytesIO(data)
    elif hasattr(data, "reader"):
        data = data.reader()
    try:
        with _decoder_quiet():
            return soundfile.SoundFile(data)
    except SNDFILE_ERRORS as exc:
        raise unreadable(name, exc) from None


def read_frames(handle, frames: int, name: str) -> np.ndarray:
    """Up to `frames` frames as (n, channels) float32; decoding errors as InputAudioError."""
    try:
        with _decoder_quiet():
            return handle.read(frames, dtype="float32", always_2d=True)
    except SNDFILE_ERRORS as exc:
        raise unreadable(name, exc) from None


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
