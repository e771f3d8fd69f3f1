"""How far exact voice search scales: N random 256-dim vectors in a store, load and query times.

Run: `python -m bench.store_scaling [N ...]` (default 10000 100000 1000000). Each size runs in
a child process so its peak RSS is its own. Prints one Markdown table row per size. The full
benchmark (`python -m bench`) includes the same table as its section (f).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 256
QUERIES = 20


class _FakeEmbedder:
    """Just the identity fields the store functions read."""

    name, digest, dim, frontend = "bench/random", "0" * 16, DIM, "{}"


def _measure(n: int) -> dict:
    from audio_cli.store.db import Store, now, pack
    from audio_cli.store.index import load_matrix, top_k

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.db"
        with Store(path) as store, store.write() as conn:
            model = store.model_row(conn, "bench/random", "0" * 16, DIM, "{}")
            for start in range(0, n, 50_000):
                block = rng.standard_normal((min(50_000, n - start), DIM)).astype(np.float32)
                block /= np.linalg.norm(block, axis=1, keepdims=True)
                conn.executemany(
                    "INSERT INTO recordings (path, size, mtime_ns, model_id, engine, duration, "
                    "created, vector) VALUES (?, 0, 0, ?, 'x', 1.0, ?, ?)",
                    ((f"/data/{start + i:07d}.flac", model, now(), pack(v))
                     for i, v in enumerate(block)))
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        with Store(path) as store, store.read() as conn:
            _, matrix = load_matrix(conn, store, _FakeEmbedder())
        load = time.perf_counter() - start
        queries = rng.standard_normal((QUERIES, DIM)).astype(np.float32)
        times = []
        for q in queries:
            t0 = time.perf_counter()
            top_k(matrix, q / np.linalg.norm(q), 10)
            times.append(time.perf_counter() - t0)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return {"n": n, "db_mb": path.stat().st_size / 1e6, "load_s": load,
                "query_ms": 1000 * float(np.median(times)), "matrix_mb": matrix.nbytes / 1e6,
                "peak_rss_mb": peak / 1024, "load_rss_mb": (peak - rss_before) / 1024}


RELAY = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"
HEADER = ["| vectors | store file | load (SQLite -> numpy) | query (top 10, median) | matrix | "
          "peak RSS |", "|---|---|---|---|---|---|"]


def row(n: int) -> str:
    """One table row: `n` vectors measured in a child process of their own."""
    # Through a tiny relay process: a child forked straight from a large process (the full
    # benchmark) would start with that process's RSS high-water mark as its own.
    out = subprocess.run([sys.executable, "-c", RELAY, sys.executable, "-m",
                          "bench.store_scaling", "--child", str(n)],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out)
    return (f"| {n:,} | {r['db_mb']:.0f} MB | {r['load_s']:.2f} s | {r['query_ms']:.1f} ms | "
            f"{r['matrix_mb']:.0f} MB | {r['peak_rss_mb']:.0f} MB |")


def section_store(sizes, log=lambda message: None) -> list[str]:
    """Section (f) of the benchmark: the table for these sizes."""
    lines = ["## (f) Voice-search store scaling (exact search, random vectors)", "",
             f"{DIM}-dim float32 unit vectors written into a fresh store; each size in its own "
             f"process (its own peak RSS). Load = all vectors of the model from SQLite into one "
             f"numpy matrix (what every search command does); query = top 10 by cosine, median "
             f"of {QUERIES}. No baseline, hence no ratio.", "", *HEADER]
    for n in sizes:
        log(f"store scaling: {n:,} vectors")
        lines.append(row(n))
    return lines


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        print(json.dumps(_measure(int(argv[1]))))
        return
    sizes = [int(a) for a in argv] or [10_000, 100_000, 1_000_000]
    print("\n".join(HEADER), flush=True)
    for n in sizes:
        print(row(n), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
