"""What the command line makes of errors: one table from error kinds to exit statuses.

=====  ===========================================================
0      success
1      unexpected internal error (a bug: please report it)
2      wrong usage: unknown option, bad option value, unknown engine
3      bad input audio: missing, directory, empty, corrupt, too short, silent, non-finite
4      model problem: unknown model, weights not found or offline, bad checkpoint
5      engine problem: the engine cannot run on this machine or failed
6      store problem: --db is not an audio store, is corrupt, or is from a newer version
7      disk problem: writing an output or the store failed (no space left, over quota, I/O
       error, read-only file system, no permission), said with the file's path
=====  ===========================================================

`compare` and `identify` answer with 0 and 1, so every error of theirs exits 2 (`Failed`).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import typer

from engines.errors import AudioCliError


def _click_exception_modules() -> list:
    """Click's exception modules: typer's vendored copy (newer typer) and/or click itself."""
    modules = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            pass
    return modules


_CLICK = _click_exception_modules()
USAGE_ERRORS = tuple(m.UsageError for m in _CLICK)
ABORTS = (typer.Abort, *(m.Abort for m in _CLICK if hasattr(m, "Abort")))
CLICK_ERRORS = tuple(m.ClickException for m in _CLICK)
CLICK_EXITS = (typer.Exit, *(m.Exit for m in _CLICK if hasattr(m, "Exit")))
NO_ARGS_HELP = tuple(m.NoArgsIsHelpError for m in _CLICK if hasattr(m, "NoArgsIsHelpError"))

DEBUG_ENV = "AUDIO_DEBUG"  # set (to anything) for a traceback instead of "internal error"

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_MODEL = 4
EXIT_ENGINE = 5
EXIT_STORE = 6
EXIT_DISK = 7

EXIT_STATUS = {"internal": EXIT_INTERNAL, "usage": EXIT_USAGE, "input": EXIT_INPUT,
               "model": EXIT_MODEL, "engine": EXIT_ENGINE, "store": EXIT_STORE,
               "disk": EXIT_DISK}


class Failed(Exception):
    """An error that leaves its command with a status of the command's own (see `answers`)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def status_of(error: BaseException) -> int:
    """The exit status of an error: by its kind (the table above), 1 for anything else."""
    if isinstance(error, Failed):
        return error.status
    return EXIT_STATUS.get(getattr(error, "kind", "internal"), EXIT_INTERNAL)


def combined_status(errors: Iterable[BaseException]) -> int:
    """A run over many inputs: 0 if none failed, their status if all agree, else 3."""
    codes = {status_of(error) for error in errors}
    if not codes:
        return EXIT_OK
    return next(iter(codes)) if len(codes) == 1 else EXIT_INPUT


def internal_message(error: BaseException) -> str:
    """The one line of an unexpected error (a bug)."""
    return f"internal error: {type(error).__name__}: {error} (set {DEBUG_ENV}=1 for a traceback)"


@contextmanager
def answers(status: int) -> Iterator[None]:
    """A command whose 0 and 1 are answers (compare, identify): every error exits `status`."""
    try:
        yield
    except AudioCliError as exc:
        raise Failed(str(exc), status) from None
    except CLICK_EXITS:
        raise
    except Exception as exc:  # noqa: BLE001 - a bug still exits with the error status
        if os.environ.get(DEBUG_ENV):
            raise
        raise Failed(internal_message(exc), status) from None
