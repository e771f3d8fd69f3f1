"""Checks shared by every command's options (one bad value: exit 2 and one line naming the
option), and the help's look: flags without a value, arguments as NAME..., options by metavar.

Number options are checked while the command line is parsed, before any file or model is
touched: NaN and infinities are refused everywhere (Python's float() accepts "nan" and "inf").
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

MAX_SECONDS = 86400.0  # a day: the longest window, hop or minimum duration accepted


def _bad(value, rule: str):
    raise typer.BadParameter(f"{value!s}: {rule}")


def positive_seconds(value: float | None) -> float | None:
    """--window, --hop: a finite number of seconds above 0 and at most a day."""
    if value is not None and not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        _bad(value, f"must be a number of seconds above 0 and at most {MAX_SECONDS:g}")
    return value


def min_seconds(value: float) -> float:
    """--min-duration: a finite number of seconds from 0 to a day."""
    if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        _bad(value, f"must be a number of seconds from 0 to {MAX_SECONDS:g}")
    return value


def cosine(value: float | None) -> float | None:
    """--threshold, --min-score: a raw cosine, finite and in [-1, 1]."""
    if value is not None and not (math.isfinite(value) and -1.0 <= value <= 1.0):
        _bad(value, "must be a cosine from -1 to 1")
    return value


def db_folder(value: Path | None) -> Path | None:
    """--db: its folder must exist (as for --output); the store file itself may be new."""
    if value is not None and not value.expanduser().parent.is_dir():
        _bad(value, f"the folder {value.expanduser().parent} does not exist")
    return value


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the platform tells, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def threads(value: int | None) -> int | None:
    """--threads: at least 1; more than the usable CPUs is capped with a warning.

    Engine threads beyond the CPUs only wait for each other (1000 threads on 2 CPUs ran 65x
    slower), so the request is honoured as far as the machine allows and the cap is said
    once on stderr, as encoders such as ffmpeg do with thread counts they cannot use.
    """
    if value is None:
        return None
    if value < 1:
        _bad(value, "must be at least 1")
    cpus = usable_cpus()
    if value > cpus:
        sys.stderr.write(f"audio: warning: --threads {value} is more than the {cpus} CPUs "
                         f"here; using {cpus}\n")
        return cpus
    return value


def model_name(typed: str) -> str:
    """What every command calls a model: the registry's short name for a known model (by
    name or hub id), else what the user typed for --model."""
    from audio_cli.models.registry import known_model

    known = known_model(typed)
    return known.name if known is not None else typed


def plural(count: int, noun: str, many: str | None = None) -> str:
    """`1 embedding`, `2 embeddings` (or the given plural)."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def plain_help() -> None:
    """Help without typer's type labels (`--json <bool>`, `{INPUT}...`, `<list[str]>`).

    Flags show no value, arguments show their metavar (INPUT...), options their metavar or
    their name in capitals. Applies to typer versions whose parameters have
    `display_type_rich` (older ones print click's plain metavars already).
    """
    core = typer.core
    option, argument = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    if not (hasattr(option, "display_type_rich") and hasattr(argument, "display_type_rich")):
        return

    def option_value(self, ctx):
        if self.is_flag or self.count:
            return None
        return self.metavar or (self.name or "value").upper()

    def argument_usage(self):
        name = self.metavar or (self.name or "arg").upper()
        dots = "..." if self.nargs != 1 and not name.endswith("...") else ""
        return (name if self.required else f"[{name}]") + dots

    option.display_type_rich = option_value
    argument.display_type_rich = lambda self, ctx: None
    if hasattr(argument, "_usage_display_name"):
        argument._usage_display_name = argument_usage


def check_inputs_exist(paths: list[str]) -> None:
    """Exit 3 for a named file that is not there, before any model is resolved (which may
    need a download): `-` (stdin) and existing paths pass; the loader checks the rest."""
    from engines.errors import InputAudioError

    missing = [p for p in paths if p != "-" and not os.path.lexists(p)]
    if missing:
        raise InputAudioError("; ".join(f"{p}: no such file" for p in missing))


# ---------------------------------------------------------------- signals

CAUGHT_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # SIGHUP: not on Windows
received: list[int] = []  # the signal numbers that stopped the run
_holding = [0, False]  # depth of signals_held() blocks; whether a signal waits for their end


def _stop(signum: int, frame) -> None:
    if received:  # already stopping: let the clean-up finish
        return
    received.append(signum)
    if _holding[0]:
        _holding[1] = True
    else:
        raise KeyboardInterrupt


@contextmanager
def signals_held() -> Iterator[None]:
    """A block that a caught signal does not cut short: it stops the run when the block
    ends (e.g. a scratch file is created and recorded for clean-up, never only created)."""
    _holding[0] += 1
    try:
        yield
    finally:
        _holding[0] -= 1
    if _holding[1] and not _holding[0]:
        _holding[1] = False
        raise KeyboardInterrupt


def catch_signals() -> None:
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP stop the run the same way (KeyboardInterrupt), so
    the same clean-up runs (scratch files removed, store transactions rolled back); the exit
    status is then 128 + the signal. Signals the caller chose to ignore stay ignored."""
    import signal

    for name in CAUGHT_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) in (signal.SIG_DFL,
                                                               signal.default_int_handler):
            signal.signal(number, _stop)


def interrupted() -> tuple[str, int]:
    """The message and status of a stopped run: 128 + the signal (SIGINT for Ctrl-C)."""
    import signal

    if not received:
        return "interrupted", 128 + signal.SIGINT
    return f"interrupted by {signal.Signals(received[0]).name}", 128 + received[0]
