"""Section (e), issue 5: many files in one call against a loop of calls, and one hour of audio.

The one-call CLI row reports n/a when `embed-speaker` refuses several inputs. The loop runs
`BENCH_LOOP_FILES` of the files (default all) as separate processes; with fewer, the row
says so and extrapolates to the whole corpus. The one-hour input runs in a child under a time
limit and an address-space cap, so a failure becomes a row, not a crash.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np

from .children import run_limited
from .common import CORPUS, cli_command, corpus_files, log

HOUR_SECONDS = 3600
HOUR_TIMEOUT = 420.0  # seconds
HOUR_MEMORY_CAP = 8 << 30  # bytes of address space for the one-hour child
CALL_TIMEOUT = 300.0  # seconds for one CLI call


def _library_row(speaker, files: list[Path]) -> str:
    from audio_cli.frontend.audio import load_audio
    from audio_cli.pipeline.speaker import InputFailure

    speaker.embed_audio(load_audio(files[0]))  # warm-up, and the masked graph of ragged
    list(speaker.embed_sources(files[:4]))  # batches built (and cached) before the timing
    start = time.perf_counter()
    results = list(speaker.embed_sources(files))
    wall = time.perf_counter() - start
    failed = sum(isinstance(r, InputFailure) for r in results)
    return (f"| library, one call: `speaker.embed_sources(100 paths)` (model loaded) | "
            f"{wall:.2f} s | {len(files) / wall:.2f} | {failed} failed |")


def _one_call_row(model_dir: Path, files: list[Path]) -> tuple[str, float | None]:
    cmd = cli_command("embed-speaker", str(CORPUS), "--model", str(model_dir),
                      "--engine", "onnx", "--json")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, timeout=CALL_TIMEOUT)
    wall = time.perf_counter() - start
    records = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or len(records) != len(files):
        reason = (proc.stderr.decode(errors="replace").strip().splitlines() or ["?"])[-1]
        return (f"| CLI, one call: `audio embed-speaker DIR --json` | n/a | n/a | "
                f"exit {proc.returncode}, {len(records)} records: {reason[:120]} |", None)
    return (f"| CLI, one call: `audio embed-speaker DIR --json` (incl. start-up) | {wall:.2f} s | "
            f"{len(files) / wall:.2f} | {len(records)} JSON lines |", wall)


def _loop_row(model_dir: Path, files: list[Path]) -> tuple[str, float]:
    count = min(len(files), int(os.environ.get("BENCH_LOOP_FILES", len(files))))
    start = time.perf_counter()
    for i, path in enumerate(files[:count]):
        if i % 20 == 0:
            log(f"loop of single calls: {i}/{count}")
        cmd = cli_command("embed-speaker", str(path), "--model", str(model_dir),
                          "--engine", "onnx", "--json")
        subprocess.run(cmd, capture_output=True, timeout=CALL_TIMEOUT, check=True)
    wall = time.perf_counter() - start
    total = wall * len(files) / count
    note = "" if count == len(files) else f" ({count} run, extrapolated to {len(files)})"
    return (f"| CLI, loop of {len(files)} processes: `audio embed-speaker FILE --json`{note} | "
            f"{total:.2f} s | {len(files) / total:.2f} | |", total)


def write_hour(path: Path) -> Path:
    """A one-hour 16 kHz voice-like WAV, written 10 s at a time (slightly varied)."""
    import soundfile
    from signals import voiced

    block = voiced(10.0)
    with soundfile.SoundFile(path, "w", 16000, 1, "PCM_16") as out:
        for i in range(HOUR_SECONDS // 10):
            out.write(block * (0.6 + 0.4 * np.cos(i / 7.0) ** 2))
    return path


def _hour_row(model_dir: Path, tmp: Path) -> str:
    log("one-hour input: writing the WAV")
    clip = write_hour(tmp / "hour.wav")
    cmd = cli_command("embed-speaker", str(clip), "--model", str(model_dir), "--engine", "onnx",
                      "--json")
    log(f"one-hour input: embedding (limit {HOUR_TIMEOUT:.0f} s, "
        f"{HOUR_MEMORY_CAP >> 30} GiB address space)")
    run = run_limited(cmd, HOUR_TIMEOUT, HOUR_MEMORY_CAP, str(tmp / "hour.err"))
    clip.unlink()
    label = "| CLI on a one-hour 16 kHz WAV (115 MB), onnx"
    if run.code is None:
        return f"{label} | timed out after {run.wall:.0f} s | peak RSS {run.peak_kib / 1024:.0f}" \
               " MiB before the kill | FAILED |"
    if run.code != 0:
        return (f"{label} | exit {run.code} after {run.wall:.1f} s | peak RSS "
                f"{run.peak_kib / 1024:.0f} MiB | FAILED: {run.stderr_tail[:160]} |")
    return (f"{label} | {run.wall:.1f} s (RTF {HOUR_SECONDS / run.wall:.0f}x) | peak RSS "
            f"{run.peak_kib / 1024:.0f} MiB | ok |")


def section_batch(speaker, model_dir: Path, tmp: Path, notes: list[str]) -> list[str]:
    """Issue-5 rows: one call against a loop of calls; the one-hour input."""
    lines = ["## (e) Many files in one call, and one hour of audio", ""]
    files = corpus_files()
    if files:
        log("batch: library one call")
        rows = [_library_row(speaker, files)]
        log("batch: CLI one call")
        one_row, one_wall = _one_call_row(model_dir, files)
        rows.append(one_row)
        loop_row, loop_wall = _loop_row(model_dir, files)
        rows.append(loop_row)
        lines += [f"The {len(files)} corpus files.", "",
                  "| how | wall | files/s | notes |", "|---|---|---|---|", *rows, ""]
        if one_wall is not None:
            lines += [f"Loop of single calls / one call = {loop_wall / one_wall:.1f}x "
                      "(the loop must not be faster).", ""]
    else:
        notes.append("(e) corpus rows skipped: the corpus is absent")
    lines += ["| input | wall | memory | status |", "|---|---|---|---|", _hour_row(model_dir, tmp)]
    return lines
