"""Issue 26: the store takes only good vectors. `index --from` and `speakers import` refuse a
non-finite, zero or wrong-dimension vector row by row (one `audio: error:` line each, exit 3);
the good rows still go in and search finds them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_audio
from signals import voiced, write_wav
from store_helpers import make_model

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("goodvectors")
    audio = root / "audio"
    audio.mkdir()
    files = [write_wav(audio / f"v{i}.wav", voiced(1.5, f0=110 + 45 * i, seed=i))
             for i in range(3)]
    model = make_model(root / "model")
    out = root / "vectors.parquet"
    proc = run_audio("embed-speaker", audio, "--model", model, "-o", out)
    assert proc.returncode == 0, proc.stderr
    return {"root": root, "model": model, "files": files, "parquet": out}


def with_bad_row(source: Path, target: Path, row: int, value: float) -> Path:
    """A copy of the Parquet file with row `row`'s vector filled with `value`."""
    table = pq.read_table(source)
    field = table.schema.field("embedding")
    dim = field.type.list_size
    vectors = np.asarray(table.column("embedding").combine_chunks().flatten(),
                         dtype=np.float32).reshape(len(table), dim).copy()
    vectors[row] = value
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)
    table = table.set_column(table.schema.get_field_index("embedding"), field, column)
    pq.write_table(table, target)
    return target


@pytest.mark.parametrize("value,label", [(np.nan, "nan"), (0.0, "zero")])
def test_index_from_refuses_a_bad_row_and_keeps_the_good(env, tmp_path, value, label):
    paths = pq.read_table(env["parquet"]).column("path").to_pylist()
    bad = with_bad_row(env["parquet"], tmp_path / f"{label}.parquet", 1, value)
    db = tmp_path / "s.db"
    proc = run_audio("index", "--from", bad, "--model", env["model"], "--db", db, "--json")
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == [
        f"audio: error: {bad}: the row of {paths[1]} holds a non-finite or zero vector; "
        "refused"]
    report = json.loads(proc.stdout)
    assert (report["rows"], report["added"], report["refused"]) == (3, 2, 1)
    for i in (0, 2):  # the good rows are found
        hits = run_audio("search", paths[i], "--model", env["model"], "--db", db, "--json")
        assert hits.returncode == 0, hits.stderr
        best = json.loads(hits.stdout)["results"][0]
        assert best["path"] == str(Path(paths[i]).absolute())
        assert best["score"] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("edit,problem", [
    (lambda v: [float("nan")] + v[1:], "non-finite values (NaN or infinity)"),
    (lambda v: v[:-1], "values, not"),
    (lambda v: [0.0] * len(v), "a zero vector"),
])
def test_speakers_import_refuses_a_bad_exemplar(env, tmp_path, edit, problem):
    db = tmp_path / "a.db"
    proc = run_audio("enroll", "alice", *env["files"][:2], "--model", env["model"], "--db", db)
    assert proc.returncode == 0, proc.stderr
    export = tmp_path / "out.json"
    assert run_audio("speakers", "export", export, "--db", db).returncode == 0
    document = json.loads(export.read_text())
    exemplar = document["speakers"][0]["exemplars"][0]
    exemplar["vector"] = edit(exemplar["vector"])
    export.write_text(json.dumps(document))  # NaN is written as NaN, which json reads back
    other = tmp_path / "b.db"
    proc = run_audio("speakers", "import", export, "--db", other, "--json")
    assert proc.returncode == 3, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"audio: error: {export}: an exemplar of 'alice' ")
    assert problem in line and line.endswith("; refused")
    result = json.loads(proc.stdout)
    assert (result["exemplars_added"], result["refused"]) == (1, 1)
    who = run_audio("identify", env["files"][1], "--model", env["model"], "--db", other,
                    "--json")
    assert who.returncode == 0, who.stderr
