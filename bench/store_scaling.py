"""How voice search scales: N 256-dim vectors with speaker structure in a store.

Run: `python -m bench.store_scaling [N ...]` (default 10000 100000 1000000). The vectors are
utterances around speakers (N / 100 speaker centroids on the unit sphere, each utterance
`sqrt(0.7) * centroid + sqrt(0.3) * noise`, so two utterances of a speaker have cosine ~0.7,
as real embeddings do); queries are new utterances of stored speakers. Each step runs in a
child process of its own (its own peak RSS): build (store, vector file, approximate graph),
the old path (every vector read out of SQLite), a cold search process, then query times and
recall@10 of approximate against exact search. The full benchmark (`python -m bench`) includes
the same table as its section (f).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DIM = 256
PER_SPEAKER = 100
WITHIN = 0.7  # cosine of two utterances of one speaker
QUERIES = 200  # recall and approximate timing; exact timing uses the first EXACT_QUERIES
EXACT_QUERIES = 20


class _FakeEmbedder:
    """Just the identity fields the store functions read."""

    name, digest, dim, frontend = "bench/clustered", "0" * 16, DIM, "{}"


def clustered(rng: np.random.Generator, centres: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit-length utterances of the speakers `labels` around their `centres`."""
    noise = rng.standard_normal((len(labels), centres.shape[1])).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x = np.float32(np.sqrt(WITHIN)) * centres[labels] + np.float32(np.sqrt(1 - WITHIN)) * noise
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _centres(n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((max(1, n // PER_SPEAKER), DIM)).astype(np.float32)
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def _queries(n: int) -> np.ndarray:
    centres = _centres(n)
    rng = np.random.default_rng(2)
    return clustered(rng, centres, rng.integers(0, len(centres), QUERIES))


def _build(n: int, folder: Path) -> dict:
    from audio_cli.store import ann
    from audio_cli.store.db import Store, now, pack
    from audio_cli.store.vectors import store_state, sync

    centres, rng = _centres(n), np.random.default_rng(0)
    path = folder / "s.db"
    start = time.perf_counter()
    with Store(path) as store:
        for first in range(0, n, 50_000):
            block = clustered(rng, centres, rng.integers(0, len(centres), min(50_000, n - first)))
            with store.write() as conn:
                model = store.model_row(conn, _FakeEmbedder.name, _FakeEmbedder.digest, DIM, "{}")
                conn.executemany(
                    "INSERT INTO recordings (path, size, mtime_ns, model_id, engine, duration, "
                    "created, vector) VALUES (?, 0, 0, ?, 'x', 1.0, ?, ?)",
                    ((f"/data/{first + i:08d}.flac", model, now(), pack(v))
                     for i, v in enumerate(block)))
        insert = time.perf_counter() - start
        start = time.perf_counter()
        view = sync(store, _FakeEmbedder.digest, DIM)
        vector_file = time.perf_counter() - start
        start = time.perf_counter()
        with store.read() as conn:
            graph = ann.update(conn, store, store_state(conn)[0], _FakeEmbedder.digest, view)
        graph_s = time.perf_counter() - start
    files = {p.suffix: p.stat().st_size for p in (folder / "s.db.vectors").iterdir()}
    return {"db_mb": path.stat().st_size / 1e6, "insert_s": insert, "file_s": vector_file,
            "file_mb": files.get(".vec", 0) / 1e6, "graph_s": graph_s if graph else None,
            "graph_mb": files.get(".usearch", 0) / 1e6 if graph else None}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _load_matrix(conn, store) -> tuple[np.ndarray, np.ndarray]:
    """Row ids and the (N, DIM) float32 matrix of the model's vectors, read out of SQLite."""
    model = store.find_model(conn, _FakeEmbedder.digest)
    # No ORDER BY: sorting the blobs would cost SQLite a temporary b-tree (~3x slower).
    rows = conn.execute("SELECT id, vector FROM recordings WHERE model_id = ?",
                        (model,)).fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
    return ids, matrix.reshape(len(rows), DIM)


def _old_load(folder: Path) -> dict:
    """What every search did before the vector files: all vectors out of SQLite."""
    from audio_cli.store.db import Store

    start = time.perf_counter()
    with Store(folder / "s.db", readonly=True) as store, store.read() as conn:
        _load_matrix(conn, store)
    return {"old_load_s": time.perf_counter() - start, "old_rss_mb": _peak_mb()}


def _cold(folder: Path, exact: bool) -> dict:
    """One query in a fresh process: open the store, map the files, rank (no model)."""
    from audio_cli.store.db import Store
    from audio_cli.store.ranking import search_many

    query = _queries(len(_centres(0)))[:1]  # any unit vector will do
    with Store(folder / "s.db", readonly=True) as store:
        answer = search_many(store, _FakeEmbedder(), query, 10, force_exact=exact)
    return {"mode": answer.mode, "rss_mb": _peak_mb()}


def _timed(folder: Path, n: int) -> dict:
    """Query times in one process with the store opened once (as a many-query call has it):
    open = count check, mapping, graph view; query = ranking plus paths from SQLite."""
    from audio_cli.store.db import Store
    from audio_cli.store.ranking import Searcher

    queries = _queries(n)
    result: dict = {}
    with Store(folder / "s.db", readonly=True) as store, store.read() as conn:
        embedder = _FakeEmbedder()
        t0 = time.perf_counter()
        exact = Searcher(conn, store, embedder, force_exact=True)
        result["open_exact_ms"] = 1000 * (time.perf_counter() - t0)
        exact.hits(exact.rank(queries[:1], 10))  # pages mapped in
        times, truth = [], []
        for i, q in enumerate(queries):
            t0 = time.perf_counter()
            (hits,) = exact.hits(exact.rank(q, 10))
            if i < EXACT_QUERIES:
                times.append(time.perf_counter() - t0)
            truth.append({h.path for h in hits})
        result["exact_ms"] = 1000 * float(np.median(times))
        t0 = time.perf_counter()
        exact.hits(exact.rank(queries, 10))
        result["batch_ms"] = 1000 * (time.perf_counter() - t0) / len(queries)
        t0 = time.perf_counter()
        approx = Searcher(conn, store, embedder)
        result["open_approx_ms"] = 1000 * (time.perf_counter() - t0)
        if approx.mode == "approximate":
            times, recall = [], []
            for q, want in zip(queries, truth, strict=True):
                t0 = time.perf_counter()
                (hits,) = approx.hits(approx.rank(q, 10))
                times.append(time.perf_counter() - t0)
                recall.append(len({h.path for h in hits} & want) / len(want))
            result.update(approx_ms=1000 * float(np.median(times)),
                          recall=float(np.mean(recall)))
    return result


def _child(step: str, folder: str, n: int) -> dict:
    """Run one step in a fresh process (through a relay: a child forked from a large process
    would start with that process's peak RSS as its own); returns its JSON and its wall time,
    from its start to its exit (timed by the relay, whose own start-up is not counted)."""
    relay = ("import subprocess, sys, time; start = time.perf_counter(); "
             "code = subprocess.call(sys.argv[1:]); "
             "print(f'{time.perf_counter() - start:.6f}', file=sys.stderr); sys.exit(code)")
    env = {**os.environ, "AUDIO_ANN_MIN_ROWS": os.environ.get("AUDIO_ANN_MIN_ROWS", "0")}
    proc = subprocess.run([sys.executable, "-c", relay, sys.executable, "-m",
                           "bench.store_scaling", "--child", step, folder, str(n)],
                          capture_output=True, text=True, check=True, env=env)
    return {**json.loads(proc.stdout), "wall_s": float(proc.stderr.split()[-1])}


def measure(n: int) -> dict:
    """Every step for `n` vectors (the approximate graph is built whatever the threshold)."""
    with tempfile.TemporaryDirectory() as tmp:
        r = _child("build", tmp, n)
        r.update(_child("old", tmp, n))
        cold = _child("cold-exact", tmp, n)
        r.update(cold_exact_s=cold["wall_s"], cold_exact_rss_mb=cold["rss_mb"])
        cold = _child("cold", tmp, n)
        if cold["mode"] == "approximate":
            r.update(cold_approx_s=cold["wall_s"], cold_approx_rss_mb=cold["rss_mb"])
        r.update(_child("timed", tmp, n))
    return r


HEADER = ["| vectors | store file | vector file (write) | HNSW graph (build) | old load from "
          "SQLite (peak RSS) | cold search process, exact (peak RSS) | cold, approximate (peak "
          "RSS) | open (exact) | exact query | exact, per query in a batch of 200 | approximate "
          "query | recall@10 |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]


def _or_dash(value, text: str) -> str:
    return "-" if value is None else text


def row(n: int) -> str:
    """One table row for `n` vectors."""
    r = measure(n)
    return (f"| {n:,} | {r['db_mb']:.0f} MB | {r['file_mb']:.0f} MB ({r['file_s']:.1f} s) | "
            + _or_dash(r['graph_s'], f"{r['graph_mb'] or 0:.0f} MB ({r['graph_s'] or 0:.0f} s)")
            + f" | {r['old_load_s']:.2f} s ({r['old_rss_mb']:.0f} MB) | "
            f"{r['cold_exact_s']:.2f} s ({r['cold_exact_rss_mb']:.0f} MB) | "
            + _or_dash(r.get("cold_approx_s"), f"{r.get('cold_approx_s', 0):.2f} s "
                       f"({r.get('cold_approx_rss_mb', 0):.0f} MB)")
            + f" | {r['open_exact_ms']:.0f} ms | {r['exact_ms']:.1f} ms | "
            f"{r['batch_ms']:.1f} ms | "
            + _or_dash(r.get("approx_ms"), f"{r.get('approx_ms', 0):.2f} ms") + " | "
            + _or_dash(r.get("recall"), f"{r.get('recall', 0):.3f}") + " |")


def section_store(sizes, log=lambda message: None) -> list[str]:
    """Section (f) of the benchmark: the table for these sizes."""
    lines = ["## (f) Voice-search store scaling (vector files, exact and approximate)", "",
             f"{DIM}-dim float32 unit vectors with speaker structure ({PER_SPEAKER} utterances "
             f"per speaker, same-speaker cosine ~{WITHIN}) in a fresh store; each step in its "
             "own process. Cold search process = a fresh Python process that opens the store, "
             "maps the vector file (and graph) and answers one query: no model (page cache "
             f"warm). Open = count check and mapping, once per command; query = top 10 with "
             f"paths, median of {EXACT_QUERIES} (exact) / {QUERIES} (approximate); recall@10 "
             f"of approximate against exact over {QUERIES} queries. The graph is built at "
             "every size here; `audio` searches "
             "approximately only from AUDIO_ANN_MIN_ROWS vectors (default 1,000,000). "
             "No baseline, hence no ratio.", "", *HEADER]
    for n in sizes:
        log(f"store scaling: {n:,} vectors")
        lines.append(row(n))
    return lines


STEPS = {"build": lambda folder, n: _build(n, folder),
         "old": lambda folder, n: _old_load(folder),
         "cold-exact": lambda folder, n: _cold(folder, True),
         "cold": lambda folder, n: _cold(folder, False),
         "timed": lambda folder, n: _timed(folder, n)}


def main(argv: list[str]) -> None:
    if argv[:1] == ["--child"]:
        print(json.dumps(STEPS[argv[1]](Path(argv[2]), int(argv[3]))))
        return
    sizes = [int(a) for a in argv] or [10_000, 100_000, 1_000_000]
    print("\n".join(HEADER), flush=True)
    for n in sizes:
        print(row(n), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
