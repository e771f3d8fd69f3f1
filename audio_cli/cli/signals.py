"""Signals: Ctrl-C (SIGINT), SIGTERM and SIGHUP stop a run the same way, with its clean-up.

A stopped run leaves no scratch file: the signal becomes a KeyboardInterrupt, so the clean-up
in `finally` blocks runs, and a scratch file is made inside signals_held(), so it is always
recorded before the signal can act.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

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
