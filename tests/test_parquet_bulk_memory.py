"""Issue 26: `index --from X.parquet` reads the file a record batch at a time, so its peak memory
does not grow with the rows; a bad row in a later batch is refused like any other, the rest
goes in. (Peak RSS and time at 10^5 and 10^6 rows: bench/bulk_load.py.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import audio_cmd, run_audio
from store_helpers import make_model

from engines.files import model_digest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

DIM = 32  # the small test model's vectors
# Peak RSS of a child, measured by a fresh launcher (RUSAGE_CHILDREN: its own children only).
LAUNCHER = ("import resource, subprocess, sys; "
            "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
            "print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def write_rows(path: Path, rows: int, digest: str, bad: dict[int, float] | None = None,
               block: int = 4096) -> Path:
    """An embed-speaker-style Parquet file of `rows` random unit vectors; `bad`: row -> the
    value filling that row's vector."""
    from audio_cli.pipeline.parquet import COLUMNS, schema

    shape = schema(DIM)
    rng = np.random.default_rng(0)
    with pq.ParquetWriter(str(path), shape) as writer:
        for first in range(0, rows, block):
            n = min(block, rows - first)
            vectors = rng.standard_normal((n, DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            for row, value in (bad or {}).items():
                if first <= row < first + n:
                    vectors[row - first] = value
            values = {"path": [f"/corpus/{i:08d}.wav" for i in range(first, first + n)],
                      "size": [64000] * n, "mtime_ns": list(range(first, first + n)),
                      "duration": [2.0] * n, "start": [None] * n, "end": [None] * n,
                      "speech": [None] * n, "model": ["m"] * n, "model_digest": [digest] * n,
                      "engine": ["onnx"] * n, "dimension": [DIM] * n, "error": [None] * n}
            arrays = [pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)
                      if name == "embedding" else
                      pa.array(values[name], type=shape.field(name).type) for name in COLUMNS]
            writer.write_table(pa.Table.from_arrays(arrays, schema=shape))
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return make_model(tmp_path_factory.mktemp("bulk") / "model")


def peak_mib(*args) -> float:
    out = subprocess.run([sys.executable, "-c", LAUNCHER, *audio_cmd(*args)], check=True,
                         capture_output=True, text=True)
    code, peak = out.stdout.split()
    assert code == "0", out.stderr
    return int(peak) / 1024  # Linux: KiB


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KiB is Linux's unit")
def test_peak_memory_does_not_grow_with_the_rows(model, tmp_path):
    digest = model_digest(model)
    small = write_rows(tmp_path / "small.parquet", 50_000, digest)
    large = write_rows(tmp_path / "large.parquet", 250_000, digest)
    peaks = [peak_mib("index", "--from", source, "--model", model, "--db", tmp_path / f"{n}.db")
             for n, source in (("small", small), ("large", large))]
    # Holding the rows took ~3 KB each (~600 MiB more for the 200 000 more rows).
    assert peaks[1] - peaks[0] < 60, peaks


def test_a_nan_row_in_a_later_batch_is_refused_and_the_rest_loaded(model, tmp_path,
                                                                    monkeypatch):
    import audio_cli.store.bulk as bulk

    monkeypatch.setattr(bulk, "BULK_ROWS", 1000)  # several batches from a small file
    source = write_rows(tmp_path / "rows.parquet", 5000, model_digest(model),
                        bad={3500: np.nan, 4999: 0.0}, block=1000)
    db = tmp_path / "s.db"
    proc = run_audio("index", "--from", source, "--model", model, "--db", db, "--json")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == [
        f"audio: error: {source}: the row of /corpus/{row:08d}.wav holds a non-finite or zero "
        "vector; refused" for row in (3500, 4999)]
    report = json.loads(proc.stdout)
    assert (report["rows"], report["added"], report["refused"]) == (5000, 4998, 2)
    again = run_audio("index", "--from", source, "--model", model, "--db", db, "--json")
    assert (json.loads(again.stdout)["unchanged"], json.loads(again.stdout)["added"]) == (4998, 0)
