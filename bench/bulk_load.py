"""What `audio index --from X.parquet` costs as the file grows: peak RSS and wall time.

Run: `python -m bench.bulk_load [N ...]` (default 100000 1000000); section (f) of
`python -m bench` runs it too. For each N it writes an embed-speaker-style Parquet file of N rows
of 256-dim unit vectors (random, float32, one row group per 4096 rows as embed-speaker writes
them) made by a random-weight model of this benchmark, then loads it into a new store with
`audio index --from` in a child process: its peak resident set size (ru_maxrss) and wall clock.
The approximate-search graph is left out (AUDIO_ANN_MIN_ROWS above N): its cost belongs to
bench/store_scaling.py.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

DIM = 256
BLOCK = 4096  # rows per row group, as embed-speaker writes them


def write_model(directory: Path) -> Path:
    """A small random-weight ResNet whose vectors have DIM values."""
    from bench.synthetic import quick_config, random_weights
    from engines.model import WEIGHTS_FILE, save_safetensors

    config = dataclasses.replace(quick_config(), embedding_dim=DIM, model_id="bench/bulk-random")
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory)
    save_safetensors(directory / WEIGHTS_FILE, random_weights(config))
    return directory


def write_parquet(path: Path, rows: int, digest: str, seed: int = 0) -> Path:
    """`rows` rows of the embed-speaker Parquet schema, written a row group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from audio_cli.pipeline.parquet import COLUMNS, schema

    shape = schema(DIM)
    rng = np.random.default_rng(seed)
    with pq.ParquetWriter(str(path), shape, compression="zstd") as writer:
        for first in range(0, rows, BLOCK):
            n = min(BLOCK, rows - first)
            vectors = rng.standard_normal((n, DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            values = {
                "path": [f"/corpus/{i // 1000:05d}/{i:08d}.wav" for i in range(first, first + n)],
                "size": [64000] * n, "mtime_ns": [1_700_000_000_000_000_000 + i for i in range(n)],
                "duration": [2.0] * n, "start": [None] * n, "end": [None] * n,
                "speech": [None] * n, "model": ["bench/bulk-random"] * n,
                "model_digest": [digest] * n, "engine": ["onnx"] * n, "dimension": [DIM] * n,
                "error": [None] * n,
            }
            arrays = [pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)
                      if name == "embedding" else pa.array(values[name],
                                                           type=shape.field(name).type)
                      for name in COLUMNS]
            writer.write_table(pa.Table.from_arrays(arrays, schema=shape))
    return path


# Runs a command and prints its status, wall seconds and peak RSS (ru_maxrss of the children of
# this fresh launcher: the command's own).
LAUNCHER = """
import resource, subprocess, sys, time
start = time.perf_counter()
done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
wall = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
sys.stderr.write(done.stderr)
print(done.returncode, wall, peak)
"""


def timed(cmd: list[str], env: dict) -> tuple[int, float, int, str]:
    """(exit status, wall seconds, peak RSS KiB, last `audio:` stderr line) of `cmd`."""
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], env=env, capture_output=True,
                          text=True, check=True)
    code, wall, peak = proc.stdout.split()
    kib = int(peak) // 1024 if sys.platform == "darwin" else int(peak)  # macOS: bytes
    lines = [line for line in proc.stderr.splitlines() if line.startswith("audio:")]
    return int(code), float(wall), kib, (lines[-1:] or [""])[0]


def section_bulk(sizes: tuple[int, ...]) -> list[str]:
    """The bulk-load table under section (f) of the benchmark."""
    return ["### `audio index --from` (bulk load of an embed-speaker Parquet file)", "",
            f"{DIM}-dim float32 unit vectors, one row group per {BLOCK} rows, into a new store "
            "(vector file included, no approximate-search graph); one process per size. "
            "Before streaming (all rows held): 1081 MB and 24 s at 10^5 rows, 9136 MB and "
            "187 s at 10^6 (same machine, busy).", "", *measure(sizes)]


def measure(sizes: tuple[int, ...]) -> list[str]:
    from engines.files import model_digest

    rows = ["| rows | Parquet MB | status | wall s | peak RSS MB |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="bulk-load-") as tmp:
        model = write_model(Path(tmp) / "model")
        digest = model_digest(model)
        for n in sizes:
            source = write_parquet(Path(tmp) / f"rows-{n}.parquet", n, digest)
            db = Path(tmp) / f"store-{n}.db"
            env = {**os.environ, "AUDIO_ANN_MIN_ROWS": str(10 * n + 1)}
            code, wall, peak, last = timed(
                [sys.executable, "-m", "audio_cli", "index", "--from", str(source), "--model",
                 str(model), "--db", str(db)], env)
            mb = source.stat().st_size / 1e6
            rows.append(f"| {n} | {mb:.0f} | {code} | {wall:.1f} | {peak / 1024:.0f} |")
            print(rows[-1], last, file=sys.stderr, flush=True)
    return rows


def main(argv: list[str]) -> None:
    sizes = tuple(int(a) for a in argv) or (100_000, 1_000_000)
    print("\n".join(measure(sizes)))


if __name__ == "__main__":
    main(sys.argv[1:])
