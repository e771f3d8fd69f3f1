"""`audio search` on the command line: vector files, many queries, exact and approximate modes."""

from __future__ import annotations

import importlib.util
import json
import sqlite3

import pytest
from cli_run import run_audio
from store_helpers import make_model, make_speakers


@pytest.fixture(scope="module")
def indexed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("search")
    model = make_model(root / "model")
    files = make_speakers(root / "lib", per_speaker=3)
    db = root / "s.db"
    r = run_audio("index", root / "lib", "--model", model, "--db", db)
    assert r.returncode == 0, r.stderr
    return {"root": root, "model": model, "files": files, "db": db}


def search(env: dict, *args, extra_env: dict | None = None):
    return run_audio("search", *args, "--model", env["model"], "--db", env["db"], env=extra_env)


def test_index_writes_the_vector_file_and_search_says_its_mode(indexed):
    assert list((indexed["root"] / "s.db.vectors").glob("*.vec"))
    query = indexed["files"][1][0]
    r = search(indexed, query, "--json")
    assert r.returncode == 0, r.stderr
    document = json.loads(r.stdout)  # one document, as before
    assert document["mode"] == "exact" and document["query"] == str(query)
    assert document["results"][0]["path"] == str(query)
    assert "audio: exact search over 12 vectors" in r.stderr
    text = search(indexed, query, "--top", "2")
    assert text.stdout.splitlines()[0].endswith(str(query)) and len(text.stdout.splitlines()) == 2


def test_many_queries_answer_as_each_single_query_does(indexed, tmp_path):
    queries = [indexed["files"][s][0] for s in range(4)]
    listing = tmp_path / "queries.txt"
    listing.write_text("".join(f"{q}\n" for q in queries[2:]))
    r = search(indexed, queries[0], queries[1], f"@{listing}", "--top", "4", "--json")
    assert r.returncode == 0, r.stderr
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["query"] for rec in records] == [str(q) for q in queries]
    for record, query in zip(records, queries, strict=True):
        single = json.loads(search(indexed, query, "--top", "4", "--json").stdout)
        assert [h["path"] for h in record["results"]] == [h["path"] for h in single["results"]]
        assert [h["score"] for h in record["results"]] == pytest.approx(
            [h["score"] for h in single["results"]], abs=1e-5)
    text = search(indexed, indexed["root"] / "lib", "--top", "1")  # a folder: every file
    blocks = text.stdout.strip().split("\n\n")
    assert len(blocks) == 12 and all(b.startswith("# ") and len(b.splitlines()) == 2
                                     for b in blocks)
    for block in blocks:  # each file is its own best match
        head, best = block.splitlines()
        assert best.endswith(head[2:])


def test_a_missing_query_among_many_fails_alone(indexed, tmp_path):
    r = search(indexed, indexed["files"][0][0], tmp_path / "gone.wav", "--json")
    assert r.returncode == 3
    assert len(r.stdout.splitlines()) == 1
    assert "gone.wav" in r.stderr and "audio: error:" in r.stderr


def test_a_vector_added_behind_the_files_back_is_found(indexed, tmp_path):
    db = tmp_path / "s.db"
    db.write_bytes(indexed["db"].read_bytes())
    env = {**indexed, "db": db}
    assert run_audio("index", indexed["root"] / "lib", "--model", indexed["model"],
                     "--db", db).returncode == 0  # this copy's own vector files
    query = indexed["files"][2][1]
    conn = sqlite3.connect(db)  # another writer that knows nothing of the vector files
    conn.execute("INSERT INTO recordings (path, size, mtime_ns, model_id, engine, duration, "
                 "created, vector) SELECT '/elsewhere/copy.wav', size, mtime_ns, model_id, "
                 "engine, duration, created, vector FROM recordings WHERE path = ?",
                 (str(query),))
    conn.execute("DELETE FROM recordings WHERE path = ?", (str(indexed["files"][2][2]),))
    conn.commit()
    conn.close()
    paths = [h["path"] for h in json.loads(search(env, query, "--top", "3", "--json").stdout)[
        "results"]]
    assert set(paths[:2]) == {str(query), "/elsewhere/copy.wav"}
    assert str(indexed["files"][2][2]) not in paths


@pytest.mark.skipif(importlib.util.find_spec("usearch") is None,
                    reason="usearch (optional, pip install 'audio[ann]') is not installed")
def test_approximate_mode_from_the_threshold_and_exact_on_request(indexed, tmp_path):
    db = tmp_path / "s.db"
    env = {**indexed, "db": db}
    small = {"AUDIO_ANN_MIN_ROWS": "4"}
    r = run_audio("index", indexed["root"] / "lib", "--model", indexed["model"], "--db", db,
                  env=small)
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "s.db.vectors").glob("*.usearch"))
    queries = [indexed["files"][s][1] for s in range(4)]
    approximate = search(env, *queries, "--json", extra_env=small)
    exact = search(env, *queries, "--json", "--exact", extra_env=small)
    assert "audio: approximate search over 12 vectors" in approximate.stderr
    assert "audio: exact search over 12 vectors" in exact.stderr
    a = [json.loads(line) for line in approximate.stdout.splitlines()]
    e = [json.loads(line) for line in exact.stdout.splitlines()]
    assert {rec["mode"] for rec in a} == {"approximate"} and {rec["mode"] for rec in e} == {
        "exact"}
    assert [rec["results"][0]["path"] for rec in a] == [rec["results"][0]["path"] for rec in e]
    bad = search(env, queries[0], extra_env={"AUDIO_ANN_MIN_ROWS": "many"})
    assert bad.returncode == 2 and bad.stderr.startswith("audio: error:")
