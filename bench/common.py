"""Small helpers shared by the benchmark sections: paths, logging, timing, formatting."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "speech" / "librispeech-test-other-10x10"


def log(message: str) -> None:
    """Progress on stderr (stdout carries only the report)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def median_time(fn, runs: int, warmup: int = 1) -> float:
    """Median wall seconds of `fn()` over `runs` calls after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def ms(seconds: float | None) -> str:
    """Seconds as `12.3 ms`, or `n/a`."""
    return "n/a" if seconds is None else f"{seconds * 1000:.1f} ms"


def corpus_files() -> list[Path]:
    """The 100 LibriSpeech test-other files (recursive *.flac), sorted; [] when absent."""
    return sorted(CORPUS.rglob("*.flac")) if CORPUS.is_dir() else []


def cli_command(*args: str) -> list[str]:
    """`python -m audio_cli ARGS` with this interpreter."""
    return [sys.executable, "-m", "audio_cli", *args]
