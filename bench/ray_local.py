"""Section (i): `embed-speaker --ray` on a local Ray (2 actors x 1 thread) against one process
with 2 threads, on the shared LibriSpeech files (100 test-other + 251 train-clean).

Ray is started once in this process (`ray.init(num_cpus=2)`) and each Ray run joins it
(`--ray auto`, RAY_ADDRESS), so the runs time the job, not Ray's start, which is given on its
own line. Both ways run as one CLI call into a Parquet output (`--output X.parquet`), in
interleaved rounds; the ratio is one-process time ÷ Ray time = Ray's throughput relative to
the one process (target >= 0.8)."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

from .common import CORPUS, RATIO_HEADER, Plan, cli_command, log, median

TRAIN = CORPUS.parent / "librispeech-train-clean-100-251x1"
TARGET = 0.8


def speech_files(limit: int | None) -> list[Path]:
    """The 351 shared speech files (sorted), the first `limit` of them; [] if absent."""
    files = sorted(p for d in (CORPUS, TRAIN) if d.is_dir() for p in d.rglob("*.flac"))
    return files[:limit] if limit is not None else files


def _timed(argv: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[2:5])}...: exit {proc.returncode}: "
                           f"{proc.stderr.strip().splitlines()[-1:]}")
    return time.perf_counter() - start


def section_ray(model_dir: Path, plan: Plan, tmp: Path, notes: list[str]) -> list[str]:
    """(i) Ray local, 2 actors x 1 thread, against one process with 2 threads."""
    lines = ["## (i) Ray local (2 actors x 1 thread) against one process (2 threads)", ""]
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        notes.append("(i) skipped: Ray is not installed (pip install 'audio-speaker[ray]')")
        return lines + ["Not run: Ray is not installed."]
    files = speech_files(plan.corpus_limit)
    if not files:
        notes.append("(i) skipped: the shared speech files are absent")
        return lines + ["Not run: the shared speech files are absent."]
    listing = tmp / "ray-inputs.txt"
    listing.write_text("".join(f"{p}\n" for p in files))
    rounds = 1 if plan.quick else 2
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
             log_to_driver=False)
    started = time.perf_counter() - start
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    times: dict[str, list[float]] = {"one": [], "ray": []}
    try:
        for round_ in range(rounds):
            order = ("one", "ray") if round_ % 2 == 0 else ("ray", "one")
            for way in order:
                out = tmp / f"{way}-{round_}.parquet"
                extra = ["--threads", "2"] if way == "one" else ["--ray", "auto"]
                log(f"ray section: {way}, round {round_ + 1}/{rounds}, {len(files)} files")
                times[way].append(_timed(cli_command(
                    "embed-speaker", f"@{listing}", "--model", str(model_dir), *extra, "-o",
                    str(out)), env))
    finally:
        ray.shutdown()
    one, on_ray = median(times["one"]), median(times["ray"])
    ratio = one / on_ray
    lines += [f"{len(files)} files, {rounds} interleaved round(s) each, medians; both into a "
              "Parquet output. Ray joined a local Ray started by the benchmark (its start, "
              f"not in the times: {started:.1f} s).", "",
              "| how | wall | files/s |", "|---|---|---|",
              f"| one process, --threads 2 | {one:.1f} s | {len(files) / one:.1f} |",
              f"| Ray local, 2 actors x 1 thread | {on_ray:.1f} s | {len(files) / on_ray:.1f} |",
              "", f"{RATIO_HEADER} = one-process time ÷ Ray time = {ratio:.2f} (target >= "
              f"{TARGET}: {'met' if ratio >= TARGET else 'NOT met'})."]
    return lines
