"""Section (e): many files in one call against a loop of calls, and one long input.

The one-call CLI row reports n/a when `embed-speaker` refuses several inputs. The loop runs
`BENCH_LOOP_FILES` of the files (default: all, or 3 in quick mode) as separate processes;
with fewer, the row says so and extrapolates to all files. The long input (one hour; five
minutes in quick mode) runs in a child under a time limit and an address-space cap, so a
failure becomes a row, not a crash.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from .children import run_limited
from .common import CORPUS, RATIO_HEADER, Plan, cli_command, corpus_files, log
from .synthetic import write_long_wav

LONG_TIMEOUT = 420.0  # seconds
LONG_MEMORY_CAP = 8 << 30  # bytes of address space for the long-input child
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
    return (f"| library, one call: `speaker.embed_sources({len(files)} paths)` (model loaded) | "
            f"{wall:.2f} s | {len(files) / wall:.2f} | {failed} failed |")


def _one_call_row(model_dir: Path, files: list[Path], folder: Path) -> tuple[str, float | None]:
    cmd = cli_command("embed-speaker", str(folder), "--model", str(model_dir),
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


def _loop_row(model_dir: Path, files: list[Path], plan: Plan) -> tuple[str, float]:
    default = len(files) if plan.loop_files is None else plan.loop_files
    count = max(1, min(len(files), int(os.environ.get("BENCH_LOOP_FILES", default))))
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


def _long_row(model_dir: Path, tmp: Path, seconds: int) -> str:
    log(f"long input: writing a {seconds} s WAV")
    clip = write_long_wav(tmp / "long.wav", seconds)
    size_mb = clip.stat().st_size / 1e6
    cmd = cli_command("embed-speaker", str(clip), "--model", str(model_dir), "--engine", "onnx",
                      "--json")
    log(f"long input: embedding (limit {LONG_TIMEOUT:.0f} s, "
        f"{LONG_MEMORY_CAP >> 30} GiB address space)")
    run = run_limited(cmd, LONG_TIMEOUT, LONG_MEMORY_CAP, str(tmp / "long.err"))
    clip.unlink()
    length = "one-hour" if seconds == 3600 else f"{seconds} s"
    label = f"| CLI on a {length} 16 kHz WAV ({size_mb:.0f} MB), onnx"
    if run.code is None:
        return f"{label} | timed out after {run.wall:.0f} s | peak RSS {run.peak_kib / 1024:.0f}" \
               " MiB before the kill | FAILED |"
    if run.code != 0:
        return (f"{label} | exit {run.code} after {run.wall:.1f} s | peak RSS "
                f"{run.peak_kib / 1024:.0f} MiB | FAILED: {run.stderr_tail[:160]} |")
    return (f"{label} | {run.wall:.1f} s (RTF {seconds / run.wall:.0f}x) | peak RSS "
            f"{run.peak_kib / 1024:.0f} MiB | ok |")


def section_batch(speaker, model_dir: Path, plan: Plan, tmp: Path,
                  notes: list[str]) -> list[str]:
    """One call against a loop of calls; the long input."""
    lines = ["## (e) Many files in one call, and one long input", ""]
    files = corpus_files(plan.corpus_limit)
    if files:
        folder = CORPUS if plan.corpus_limit is None else _linked(files, tmp)
        log("batch: library one call")
        rows = [_library_row(speaker, files)]
        log("batch: CLI one call")
        one_row, one_wall = _one_call_row(model_dir, files, folder)
        rows.append(one_row)
        loop_row, loop_wall = _loop_row(model_dir, files, plan)
        rows.append(loop_row)
        lines += [f"{len(files)} corpus files, each way once (no repeats).", "",
                  "| how | wall | files/s | notes |", "|---|---|---|---|", *rows, ""]
        if one_wall is not None:
            lines += [f"{RATIO_HEADER} = loop-of-processes time ÷ one-call time = "
                      f"{loop_wall / one_wall:.2f} (target >= 1: the loop must not be faster).",
                      ""]
    else:
        notes.append("(e) corpus rows skipped: the corpus is absent")
    lines += ["| input | wall | memory | status |", "|---|---|---|---|",
              _long_row(model_dir, tmp, plan.long_seconds)]
    return lines


def _linked(files: list[Path], tmp: Path) -> Path:
    """A folder of symbolic links to just these files (the quick mode's subset of the corpus)."""
    folder = tmp / "corpus-subset"
    folder.mkdir(exist_ok=True)
    for i, path in enumerate(files):
        (folder / f"{i:03d}{path.suffix}").symlink_to(path)
    return folder
