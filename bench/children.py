"""Code run in child processes: bare onnxruntime baselines and rusage of a child."""

from __future__ import annotations

import os
import subprocess
import sys
import time

# A bare ONNX Runtime run: import, open the cached .onnx, run once on random features.
BARE_ORT = """
import sys
import numpy as np
import onnxruntime as ort
options = ort.SessionOptions()
options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
session = ort.InferenceSession(sys.argv[1], sess_options=options,
                               providers=["CPUExecutionProvider"])
frames = int(sys.argv[2])
x = np.random.default_rng(0).standard_normal((1, frames, 80)).astype(np.float32)
name = session.get_inputs()[0].name
session.run(None, {name: x})
"""


def bare_ort_command(model_path: str, frames: int) -> list[str]:
    return [sys.executable, "-c", BARE_ORT, model_path, str(frames)]


# Linux copies the parent's RSS high-water mark into a forked child (and records it again at
# exec), so a child of this large benchmark process would report at least our own peak RSS.
# Peak memory is therefore measured through this tiny launcher, whose own peak is ~10 MiB.
LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


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
