"""Running the `audio` command in tests: in this process (fast), or in a child process.

`run_audio` calls the CLI's entry point, `audio_cli.cli.main.main(argv)`, in the test process:
no interpreter, numpy or onnxruntime start-up per run (about a second each on a busy machine).
It captures stdout and stderr, feeds stdin, turns SystemExit into a status, and puts back
what main() changes in the process: warning display and filters, the signal handlers it
installs, the record of signals received, environment variables, the working directory.

`run_audio_process` runs `python -m audio_cli` in a child process, for what only a process
shows: signals, terminals, real file descriptors (FIFOs, /dev/stdin, inherited pipes),
concurrency between runs, settings read once at import (HF_HUB_OFFLINE, HF_HOME), and the
status the process itself ends with.

Both return an object with `returncode`, `stdout` and `stderr` (str, or bytes with
text=False), like subprocess.CompletedProcess.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

TIMEOUT = 300  # seconds for one child-process run

# Environment variables that libraries read once, when first imported: in this process they
# would be ignored after the first test that imported the library, so such runs need a child.
READ_AT_IMPORT = ("HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "HF_ENDPOINT",
                  "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE")
CAUGHT_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP")
                       if hasattr(signal, n))


@dataclass
class Result:
    """What one in-process run of `audio` did (the fields of subprocess.CompletedProcess)."""

    args: list[str]
    returncode: int
    stdout: str | bytes
    stderr: str | bytes


def audio_cmd(*args: str | os.PathLike) -> list[str]:
    """The argv that runs `audio ARGS` with this interpreter in a child process."""
    return [sys.executable, "-m", "audio_cli", *map(str, args)]


def run_audio_process(*args: str | os.PathLike, stdin=None, input: bytes | str | None = None,
                      env: Mapping[str, str] | None = None, cwd=None, text: bool = True,
                      timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run `python -m audio_cli ARGS` in a child process; `stdin` may be a file descriptor,
    `input` bytes (or str with text=True) to pipe in; `env` adds to this environment."""
    if text and isinstance(input, bytes):
        input = input.decode()
    return subprocess.run(audio_cmd(*args), stdin=stdin, input=input, capture_output=True,
                          text=text, env={**os.environ, **(env or {})}, cwd=cwd,
                          timeout=timeout)


class _KeptBytes(io.BytesIO):
    """A byte buffer that stays readable when the CLI closes the stream over it."""

    def close(self) -> None:  # the CLI closes stderr after a broken pipe
        pass


def _text_stream(data: bytes = b"") -> tuple[io.TextIOWrapper, _KeptBytes]:
    raw = _KeptBytes(data)
    return io.TextIOWrapper(raw, encoding="utf-8", errors="strict", write_through=True), raw


@contextlib.contextmanager
def _environment(env: Mapping[str, str | None]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    try:
        for name, value in env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = str(value)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _process_state() -> Iterator[None]:
    """Put back what main() changes: signal handlers, warnings, the signals-received record."""
    handlers = {number: signal.getsignal(number) for number in CAUGHT_SIGNALS}
    from audio_cli.cli.signals import received  # where main() records signals received

    before = list(received)
    cwd = os.getcwd()
    try:
        with warnings.catch_warnings():  # restores showwarning and the filters afterwards
            warnings.resetwarnings()  # Python's defaults, as in a fresh `python -m audio_cli`
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                             ResourceWarning):
                warnings.simplefilter("ignore", category)
            yield
    finally:
        os.chdir(cwd)
        for number, handler in handlers.items():
            if handler is not None:
                signal.signal(number, handler)
        received[:] = before


def run_audio(*args: str | os.PathLike, stdin: bytes | str | None = None,
              env: Mapping[str, str | None] | None = None, cwd=None,
              text: bool = True) -> Result:
    """Run `audio ARGS` in this process through the CLI's entry point.

    `stdin`: what the command reads on standard input (empty, as /dev/null, by default);
    `env`: variables to set (None removes one) for this run only; `cwd`: the directory to run
    in; text=False returns stdout and stderr as bytes.
    """
    from audio_cli.cli.main import main

    env = dict(env or {})
    late = sorted(set(env) & set(READ_AT_IMPORT))
    if late:
        raise ValueError(f"{', '.join(late)} is read when a library is imported: use "
                         "run_audio_process for this run")
    argv = [str(a) for a in args]
    data = stdin.encode() if isinstance(stdin, str) else (stdin or b"")
    fake_in, _ = _text_stream(data)
    fake_out, out_bytes = _text_stream()
    fake_err, err_bytes = _text_stream()
    streams = sys.stdin, sys.stdout, sys.stderr
    status = 0
    with _environment(env), _process_state():
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin, sys.stdout, sys.stderr = fake_in, fake_out, fake_err
        try:
            main(argv)
        except SystemExit as exc:
            if exc.code is None or isinstance(exc.code, int):
                status = exc.code or 0
            else:  # sys.exit("message"): the message on stderr, status 1, as Python does
                fake_err.write(f"{exc.code}\n")
                status = 1
        finally:
            for stream in (fake_out, fake_err):
                with contextlib.suppress(ValueError):  # closed by the CLI
                    stream.flush()
            sys.stdin, sys.stdout, sys.stderr = streams
    out, err = out_bytes.getvalue(), err_bytes.getvalue()
    if text:
        return Result(argv, status, out.decode(), err.decode())
    return Result(argv, status, out, err)


def kill_after_shards(argv: list[str], env: Mapping[str, str], out: os.PathLike,
                      shards: int, timeout: float = 600) -> None:
    """Start `argv` and kill it (SIGKILL) once `out` holds `shards` Parquet shards; it must
    still be running then."""
    import time
    from pathlib import Path

    proc = subprocess.Popen(argv, env=dict(env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    while len(list(Path(out).glob("part-*.parquet"))) < shards and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
