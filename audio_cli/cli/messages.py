"""The one writer of what the command line says on stderr: `audio: error:`, `audio: warning:`
and plain `audio:` lines. stdout carries results only."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager

PROGRAM = "audio"


def line(text: str) -> None:
    """One line on stderr, at once."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def error_text(message: str) -> str:
    return f"{PROGRAM}: error: {message}"


def warning_text(message: str) -> str:
    return f"{PROGRAM}: warning: {message}"


def error(message: str, write: Callable[[str], None] = line) -> None:
    """`audio: error: MESSAGE` (through `write`: above a progress bar, for one)."""
    write(error_text(message))


def warning(message: str, write: Callable[[str], None] = line) -> None:
    """`audio: warning: MESSAGE`."""
    write(warning_text(message))


def note(message: str, write: Callable[[str], None] = line) -> None:
    """`audio: MESSAGE`: what a run did or is doing (files written, progress)."""
    write(f"{PROGRAM}: {message}")


def show_warning(message, category, filename, lineno, file=None, source=None) -> None:
    """warnings.showwarning for the command line: any warning (an input's, the store's, a
    library's) as one `audio: warning:` line, not Python's two."""
    warning(str(message))


@contextmanager
def warnings_through(write: Callable[[str], None]) -> Iterator[None]:
    """Warnings issued meanwhile go out through `write` (above a progress bar); the
    user's kind (UserWarning: inputs, the store) each message once, never as an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("default", UserWarning)

        def show(message, category, *args, **kwargs):
            warning(str(message), write)

        warnings.showwarning = show
        yield


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 embedding`, `2 embeddings` (or the given plural)."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"
