"""Child processes: wall time, and peak RSS through a tiny launcher (with optional limits).

The bare onnxruntime child itself is `bench/ort_sessions.py` run as a script."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

# Linux copies the parent's RSS high-water mark into a forked child (and records it again at
# exec), so a child of this large benchmark process would report at least our own peak RSS.
# Peak memory is therefore measured through this tiny launcher, whose own peak is ~10 MiB.
LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


# The same, with a time limit and an address-space cap for the child; prints
# "exit-code-or-'timeout' ru_maxrss wall-seconds".
LIMITED_LAUNCHER = """
import resource, subprocess, sys, time
timeout, cap, err = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]

def limit():
    if cap > 0:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

start = time.perf_counter()
with open(err, "wb") as sink:
    proc = subprocess.Popen(sys.argv[4:], stdout=subprocess.DEVNULL, stderr=sink,
                            preexec_fn=limit)
    try:
        proc.wait(timeout)
        outcome = str(proc.returncode)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        outcome = "timeout"
wall = time.perf_counter() - start
# the only child this launcher ever reaped: its peak is the children's peak
print(outcome, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, wall)
"""


@dataclass(frozen=True)
class ChildRun:
    """How a limited child run ended: exit code (None on timeout), peak RSS, wall, stderr."""

    code: int | None
    peak_kib: int
    wall: float
    stderr_tail: str


def run_limited(cmd: list[str], timeout: float, memory_cap: int, err_file: str,
                cwd: str | None = None) -> ChildRun:
    """Run a command under a time limit and an address-space cap (bytes; 0 for none)."""
    out = subprocess.run([sys.executable, "-c", LIMITED_LAUNCHER, str(timeout), str(memory_cap),
                          err_file, *cmd], cwd=cwd, check=True, capture_output=True, text=True)
    outcome, maxrss, wall = out.stdout.split()
    with open(err_file, "rb") as handle:
        tail = handle.read().decode(errors="replace").strip().splitlines()[-1:] or [""]
    peak = int(maxrss) // 1024 if sys.platform == "darwin" else int(maxrss)
    return ChildRun(None if outcome == "timeout" else int(outcome), peak, float(wall), tail[0])


def peak_rss_kib(cmd: list[str], cwd: str | None = None) -> int:
    """Peak resident memory (KiB) of a command, measured via a small launcher process."""
    out = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], cwd=cwd, check=True,
                         capture_output=True, text=True)
    code, maxrss = (int(v) for v in out.stdout.split())
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({code}): {out.stderr[-800:]}")
    return maxrss // 1024 if sys.platform == "darwin" else maxrss


def run_child(cmd: list[str], cwd: str | None = None) -> tuple[float, int]:
    """Run a command to completion; (wall seconds, ru_maxrss KiB). Raises on failure.

    The ru_maxrss is at least this process's own peak (see LAUNCHER); use peak_rss_kib.
    """
    with open(os.devnull, "wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.PIPE, cwd=cwd)
        # stderr is small; read it after the wait would risk a full pipe, so read first.
        err = proc.stderr.read() if proc.stderr else b""
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): "
                           f"{err.decode(errors='replace')[-800:]}")
    # ru_maxrss is KiB on Linux, bytes on macOS
    maxrss = usage.ru_maxrss // 1024 if sys.platform == "darwin" else usage.ru_maxrss
    return wall, maxrss
