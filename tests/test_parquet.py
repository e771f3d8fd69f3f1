"""Parquet output on one machine (`embed-speaker --output X.parquet`) and `index --from` it.
The real CLI (in-process; in a child process where pyarrow must be missing), files read back
with pyarrow (and duckdb/pandas where installed)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_audio
from signals import voiced, write_wav
from store_helpers import make_model

pa = pytest.importorskip("pyarrow", reason="pyarrow (pip install 'audio-speaker[parquet]') "
                         "is not installed")
import pyarrow.parquet as pq  # noqa: E402

SAME = 0.99999


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("parquet")
    audio = root / "audio"
    audio.mkdir()
    for i, seconds in enumerate((1.5, 3.0, 2.2)):
        write_wav(audio / f"v{i}.wav", voiced(seconds, f0=120 + 40 * i, seed=i))
    (audio / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    return {"model": make_model(root / "model"), "other": make_model(root / "other", seed=5),
            "audio": audio, "root": root}


@pytest.fixture(scope="module")
def written(env) -> tuple[Path, list[dict]]:
    """The folder embedded to a .parquet file, and the same run's JSON Lines records."""
    out = env["root"] / "vectors.parquet"
    proc = run_audio("embed-speaker", env["audio"], "--model", env["model"], "-o", out)
    assert proc.returncode == 3, proc.stderr  # the corrupt file
    assert f"wrote 3 embeddings to {out}" in proc.stderr
    lines = run_audio("embed-speaker", env["audio"], "--model", env["model"], "--json")
    return out, [json.loads(line) for line in lines.stdout.splitlines()]


def test_parquet_has_one_row_per_input_with_the_vectors_and_the_error(env, written):
    out, records = written
    table = pq.read_table(out)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 32)
    rows = table.to_pylist()
    assert [r["path"] for r in rows] == [r["file"] for r in records]
    for row, record in zip(rows, records, strict=True):
        st = os.stat(row["path"])
        assert (row["size"], row["mtime_ns"]) == (st.st_size, st.st_mtime_ns)
        if "error" in record:
            assert row["embedding"] is None and row["dimension"] is None
            assert row["error"] == record["error"] and "not a readable audio file" in row["error"]
            continue
        assert row["error"] is None and row["start"] is None and row["end"] is None
        assert cosine(row["embedding"], record["embedding"]) >= SAME
        assert row["dimension"] == record["dimension"] == 32
        assert row["duration"] == pytest.approx(record["duration"], abs=1e-6)
        assert (row["model"], row["model_digest"], row["engine"]) == (
            record["model"], record["model_digest"], record["engine"])


def test_windows_are_rows_with_start_and_end(env, tmp_path):
    clip = env["audio"] / "v1.wav"
    out = tmp_path / "w.parquet"
    proc = run_audio("embed-speaker", clip, "--model", env["model"], "--window", "1",
                     "--hop", "0.5", "-o", out)
    assert proc.returncode == 0, proc.stderr
    lines = run_audio("embed-speaker", clip, "--model", env["model"], "--window", "1",
                      "--hop", "0.5", "--json").stdout.splitlines()
    records = [json.loads(line) for line in lines]
    rows = pq.read_table(out).to_pylist()
    assert len(rows) == len(records) > 2
    for row, record in zip(rows, records, strict=True):
        assert (row["start"], row["end"]) == pytest.approx((record["start"], record["end"]))
        assert cosine(row["embedding"], record["embedding"]) >= SAME
        assert row["duration"] == pytest.approx(3.0, abs=1e-3)


@pytest.mark.skipif(importlib.util.find_spec("duckdb") is None, reason="duckdb not installed")
def test_duckdb_reads_it(written):
    import duckdb

    count = duckdb.sql(f"SELECT count(*) FROM read_parquet('{written[0]}') "
                       "WHERE embedding IS NOT NULL").fetchone()[0]
    assert count == 3


@pytest.mark.skipif(importlib.util.find_spec("pandas") is None, reason="pandas not installed")
def test_pandas_reads_it(written):
    import pandas

    frame = pandas.read_parquet(written[0])
    assert frame["error"].notna().sum() == 1 and len(frame["embedding"].dropna().iloc[0]) == 32


def without(module: str, *args) -> subprocess.CompletedProcess:
    """The CLI in a process where `module` cannot be imported (as if not installed)."""
    code = (f"import sys; sys.modules[{module!r}] = None\n"
            "from audio_cli.cli.main import main\nmain(sys.argv[1:])")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def test_without_pyarrow_a_parquet_output_is_one_line_and_status_2(env, tmp_path):
    out = tmp_path / "v.parquet"
    proc = without("pyarrow", "embed-speaker", env["audio"] / "v0.wav", "--model", env["model"],
                   "-o", out)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "audio: error: Parquet output needs pyarrow, which is not installed here "
        "(pip install 'audio-speaker[parquet]')"]
    assert not out.exists()
    index = without("pyarrow", "index", "--from", out, "--db", tmp_path / "s.db")
    assert index.returncode == 2 and len(index.stderr.splitlines()) == 1
    assert "pip install 'audio-speaker[parquet]'" in index.stderr


def test_index_from_loads_the_vectors_skips_errors_and_search_finds_them(env, written, tmp_path):
    out, records = written
    db = tmp_path / "s.db"
    proc = run_audio("index", "--from", out, "--model", env["model"], "--db", db, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert (report["rows"], report["added"], report["errors_skipped"]) == (4, 3, 1)
    again = run_audio("index", env["audio"], "--model", env["model"], "--db", db, "--json")
    assert again.returncode == 3  # the corrupt file, embedded by `index` itself
    counts = json.loads(again.stdout)
    assert (counts["added"], counts["updated"], counts["unchanged"]) == (0, 0, 3)
    query = next(r for r in records if "embedding" in r)
    hits = run_audio("search", query["file"], "--model", env["model"], "--db", db, "--json")
    assert hits.returncode == 0, hits.stderr
    best = json.loads(hits.stdout)["results"][0]
    assert best["path"] == str(Path(query["file"]).absolute())
    assert best["score"] == pytest.approx(1.0, abs=1e-5)


def test_index_from_refuses_another_models_vectors_in_one_line(env, written, tmp_path):
    db = tmp_path / "s.db"
    proc = run_audio("index", "--from", written[0], "--model", env["other"], "--db", db)
    assert proc.returncode == 4
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"audio: error: {written[0]}: vectors of ")
    assert "pass the --model they were made with" in line


@pytest.mark.parametrize("args,words", [
    ([], "PATH... or --from"),
    (["X", "--from", "F"], "PATH... or --from"),
    (["--from", "nope.parquet"], "no such file"),
    (["--from", "W"], "holds windows"),
    (["--from", "J"], "cannot read it as Parquet"),
])
def test_index_from_mistakes_are_one_line(args, words, env, written, tmp_path):
    windows = tmp_path / "w.parquet"
    run_audio("embed-speaker", env["audio"] / "v1.wav", "--model", env["model"], "--window",
              "1", "-o", windows)
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    names = {"X": str(env["audio"]), "F": str(written[0]), "W": str(windows), "J": str(junk)}
    proc = run_audio("index", *[names.get(a, a) for a in args], "--model", env["model"],
                     "--db", tmp_path / "s.db")
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert words in line and line.startswith("audio: error:")


def test_index_from_records_how_the_vectors_were_made(env, written, tmp_path):
    """VAD (a speech duration in the row) and precision (the engine's -int8) go into the
    store, and its rules apply: no VAD vectors where vectors without VAD are stored."""
    import sqlite3

    samples = Path(__file__).resolve().parents[1] / "samples"
    made = {}
    for name, args in (("vad", ["--vad"]), ("int8", ["--precision", "int8"])):
        made[name] = tmp_path / f"{name}.parquet"
        proc = run_audio("embed-speaker", samples, "--model", env["model"], "-o", made[name],
                         *args)
        assert proc.returncode == 0, proc.stderr
    for name, expected in (("vad", {(2, "float32")}), ("int8", {(0, "int8")})):
        db = tmp_path / f"{name}.db"
        proc = run_audio("index", "--from", made[name], "--model", env["model"], "--db", db)
        assert proc.returncode == 0, proc.stderr
        with sqlite3.connect(db) as conn:
            rows = set(conn.execute("SELECT vad, precision FROM recordings"))
        assert rows == expected, name
    plain = tmp_path / "plain.db"
    assert run_audio("index", "--from", written[0], "--model", env["model"], "--db",
                     plain).returncode == 0
    refused = run_audio("index", "--from", made["vad"], "--model", env["model"], "--db", plain)
    assert refused.returncode == 2
    (line,) = refused.stderr.splitlines()
    assert "were made without --vad, this index runs with --vad" in line
    warned = run_audio("index", "--from", made["int8"], "--model", env["model"], "--db", plain)
    assert warned.returncode == 0, warned.stderr
    assert "are float32, these int8" in warned.stderr
