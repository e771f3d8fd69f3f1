"""What an input names: a file, `-` for stdin, or a pipe, FIFO or process substitution.

A regular file is checked (exists, not a directory, not empty, readable) and left on disk for
the decoder; stdin, pipes and FIFOs (`<(...)`) cannot be rewound, so they are read into memory
once. A terminal is refused: reading it would wait silently. Decoding is `frontend/audio.py`.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from engines.errors import InputAudioError, UsageError

STDIN = "-"  # an input named "-" is audio on stdin
LIST_PREFIX = "@"  # an input named "@FILE" is a list of inputs, one a line ("@-": on stdin)
STDIN_HINT = "pipe or redirect a file in, e.g. `audio embed-speaker - < voice.wav`"


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
