"""Small helpers shared by the benchmark sections: paths, the run plan, logging, timing, ratios."""

from __future__ import annotations

import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "speech" / "librispeech-test-other-10x10"
OUT_DIR = Path(__file__).resolve().parent / "out"  # untracked (.gitignore)

# The one ratio convention of the whole report (and of bench/RESULTS.md).
RATIO_HEADER = "baseline ÷ ours"
CONVENTION = (
    "Every ratio in this report is **baseline ÷ ours** of the same measure (time or peak "
    "memory), each table or line naming which is which: 1.00 = the same, **> 1 = ours is "
    "faster (or smaller)** than the baseline, < 1 = ours is slower (or larger). For times this "
    "is ours' speed relative to the baseline.")

# A pause before every timed in-process call, so threads that one session leaves spinning
# (onnxruntime's default) cannot slow the call that follows.
SETTLE = 0.1  # seconds


@dataclass(frozen=True)
class Plan:
    """How much of each section to run: the full benchmark or a quick check of the code."""

    quick: bool
    forward_sizes: tuple[tuple[str, int, int], ...]  # (label, frames, runs)
    mlx_sizes: tuple[tuple[str, int, int], ...]
    cli_runs: int
    corpus_limit: int | None  # files of the corpus (None: all)
    loop_files: int | None  # CLI calls actually made in the loop (None: all)
    long_seconds: int  # the long-input row
    store_sizes: tuple[int, ...]
    memory_counts: tuple[int, ...]  # files in one call, section (g)
    campplus_long: tuple[int, ...]  # seconds of the CAM++ long-input rows


FULL = Plan(quick=False,
            forward_sizes=(("3 s", 298, 11), ("10 s", 998, 7), ("60 s", 5998, 3)),
            # MLX runs on the CPU off Apple Silicon at ~5 s per 3 s clip for the full model.
            mlx_sizes=(("3 s", 298, 5),),
            cli_runs=5, corpus_limit=None, loop_files=None, long_seconds=3600,
            store_sizes=(10_000, 100_000, 1_000_000),
            memory_counts=(1, 10, 100, 250), campplus_long=(300, 3600))
QUICK = Plan(quick=True,
             forward_sizes=(("3 s", 298, 3), ("10 s", 998, 3)),
             mlx_sizes=(("3 s", 298, 3),),
             cli_runs=2, corpus_limit=10, loop_files=3, long_seconds=300,
             store_sizes=(2_000,), memory_counts=(1, 10), campplus_long=(60,))


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the report)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def interleaved_times(calls: dict, runs: int, settle: float = SETTLE) -> dict[str, list[float]]:
    """Wall seconds of each named call over `runs` rounds, after one untimed warm-up call each.

    Every round calls each once, the order rotating round by round, so a change in the
    machine's load (and any effect of going first or last) hits all of them alike.
    """
    names = list(calls)
    for name in names:
        calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(runs):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            time.sleep(settle)
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def ratio(baseline: float | None, ours: float | None, digits: int = 2) -> str:
    """`baseline ÷ ours` formatted, or n/a."""
    if not baseline or not ours:
        return "n/a"
    return f"{baseline / ours:.{digits}f}"


def ms(seconds: float | None) -> str:
    """Seconds as `12.3 ms`, or `n/a`."""
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def corpus_files(limit: int | None = None) -> list[Path]:
    """The LibriSpeech test-other files (recursive *.flac), sorted, the first `limit` of them;
    [] when the corpus is absent."""
    files = sorted(CORPUS.rglob("*.flac")) if CORPUS.is_dir() else []
    return files[:limit] if limit is not None else files


def cli_command(*args: str) -> list[str]:
    """`python -m audio_cli ARGS` with this interpreter."""
    return [sys.executable, "-m", "audio_cli", *args]


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"
