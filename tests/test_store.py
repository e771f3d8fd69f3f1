"""The speaker store and its commands, on a random-weight model and synthesised voices."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_audio
from store_helpers import make_model, make_speakers

from audio_cli.evaluation.metrics import calibration_threshold
from audio_cli.store import ranking
from audio_cli.store.db import (
    APPLICATION_ID,
    SCHEMA_VERSION,
    SQLITE_HEADER,
    Store,
    StoreError,
    default_db_path,
)
from audio_cli.store.vectors import Part


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("store")
    return {"model": make_model(root / "model"), "other": make_model(root / "other", seed=1),
            "files": make_speakers(root / "audio"), "root": root}


def test_new_store_is_wal_versioned_and_marked(tmp_path):
    with Store(tmp_path / "sub" / "s.db") as store:
        conn = store.conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_default_path_follows_env_and_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("AUDIO_DB", str(tmp_path / "x.db"))
    assert default_db_path() == tmp_path / "x.db"
    monkeypatch.delenv("AUDIO_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    if os.name == "posix" and os.uname().sysname == "Linux":
        assert default_db_path() == tmp_path / "data" / "audio" / "store.sqlite3"


@pytest.mark.parametrize("kind", ["text", "foreign-sqlite", "corrupt", "newer"])
def test_bad_db_is_refused_and_left_untouched(tmp_path, kind):
    path = tmp_path / "x.db"
    if kind == "text":
        path.write_text("my notes\n")
    elif kind == "foreign-sqlite":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (t TEXT)")
        conn.commit()
        conn.close()
    elif kind == "corrupt":
        Store(path).close()
        data = bytearray(path.read_bytes())
        data[100:] = os.urandom(len(data) - 100)
        path.write_bytes(bytes(SQLITE_HEADER) + bytes(data[16:]))
    else:
        Store(path).close()
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
    before = path.read_bytes()
    with pytest.raises(StoreError):
        with Store(path) as store:  # a corrupt file may only fail at the first query
            with store.read() as conn:
                conn.execute("SELECT count(*) FROM speakers").fetchone()
    assert path.read_bytes() == before
    result = run_audio("speakers", "list", "--db", path)
    assert result.returncode == 6
    assert result.stdout == ""
    assert result.stderr.startswith("audio: error:") and len(result.stderr.splitlines()) == 1


def test_compare_exit_codes(env):
    same, other = env["files"][0], env["files"][3]
    ok = run_audio("compare", same[0], same[0], "--model", env["model"], "--threshold", "0.99",
                   "--json")
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert doc["same_speaker"] is True and doc["threshold_origin"] == "option"
    assert abs(doc["score"] - 1.0) < 1e-5
    diff = run_audio("compare", same[0], other[0], "--model", env["model"], "--threshold", "1")
    assert diff.returncode == 1, diff.stderr
    assert "different" in diff.stdout
    for args in (["--threshold", "1.5"], ["--model", env["root"] / "nope"]):
        bad = run_audio("compare", same[0], other[0], "--model", env["model"], *args)
        assert bad.returncode == 2 and bad.stdout == "", bad.stderr
    missing = run_audio("compare", same[0], env["root"] / "missing.wav", "--model", env["model"])
    assert missing.returncode == 2 and "no such file" in missing.stderr


@pytest.mark.slow
def test_enroll_identify_and_manage_speakers(env, tmp_path):
    db, files, model = tmp_path / "s.db", env["files"], env["model"]
    for s, name in enumerate(["ann", "bob", "cy", "dee"]):
        r = run_audio("enroll", name, files[s][0], files[s][1], "--model", model, "--db", db,
                      "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["exemplars"] == 2
    r = run_audio("identify", files[2][2], "--model", model, "--db", db, "--top", "4",
                  "--threshold", "-1", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    scores = [c["score"] for c in doc["candidates"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert doc["speaker"] == doc["candidates"][0]["name"]
    assert doc["margin"] == pytest.approx(scores[0] - scores[1])
    unknown = run_audio("identify", files[2][2], "--model", model, "--db", db, "--threshold", "1")
    assert unknown.returncode == 1 and unknown.stdout.startswith("unknown")
    # A bad file in an enrollment stores nothing.
    bad = run_audio("enroll", "eve", files[0][2], env["root"] / "missing.wav", "--model", model,
                    "--db", db)
    assert bad.returncode == 3
    assert run_audio("speakers", "rename", "bob", "rob", "--db", db).returncode == 0
    assert run_audio("speakers", "remove", "dee", "--db", db).returncode == 0
    listing = json.loads(run_audio("speakers", "list", "--db", db, "--json").stdout)
    assert [s["name"] for s in listing["speakers"]] == ["ann", "cy", "rob"]
    export = tmp_path / "speakers.json"
    assert run_audio("speakers", "export", export, "--db", db).returncode == 0
    again = run_audio("speakers", "export", export, "--db", db)
    assert again.returncode == 2 and "not overwriting" in again.stderr
    copy = tmp_path / "copy.db"
    r = run_audio("speakers", "import", export, "--db", copy, "--json")
    assert json.loads(r.stdout)["exemplars_added"] == 6
    with Store(db) as a, Store(copy) as b, a.read() as ca, b.read() as cb:
        query = "SELECT s.name, e.source, e.vector FROM exemplars e JOIN speakers s " \
                "ON s.id = e.speaker_id ORDER BY 1, 2"
        assert ca.execute(query).fetchall() == cb.execute(query).fetchall()


def test_vectors_of_two_models_are_never_compared(env, tmp_path):
    db, files = tmp_path / "s.db", env["files"]
    assert run_audio("enroll", "ann", files[0][0], "--model", env["model"], "--db", db
                     ).returncode == 0
    r = run_audio("identify", files[0][1], "--model", env["other"], "--db", db)
    assert r.returncode == 2 and "never compared" in r.stderr and r.stdout == ""
    assert run_audio("index", files[1][0], "--model", env["model"], "--db", db).returncode == 0
    r = run_audio("search", files[1][0], "--model", env["other"], "--db", db)
    assert r.returncode == 4 and "never compared" in r.stderr


def test_index_is_incremental_prunes_and_searches(env, tmp_path):
    db, model = tmp_path / "s.db", env["model"]
    folder = tmp_path / "lib"
    files = make_speakers(folder, per_speaker=2)
    (folder / "notes.txt").write_text("not audio")
    first = json.loads(run_audio("index", folder, "--model", model, "--db", db, "--json").stdout)
    assert (first["found"], first["added"], first["unchanged"]) == (8, 8, 0)
    os.utime(files[0][0], ns=(1, 1))
    files[3][1].unlink()
    second = run_audio("index", folder, "--prune", "--model", model, "--db", db, "--json")
    doc = json.loads(second.stdout)
    assert (doc["added"], doc["updated"], doc["unchanged"], doc["pruned"]) == (0, 1, 6, 1)
    r = run_audio("search", files[2][0], "--model", model, "--db", db, "--top", "3", "--json")
    hits = json.loads(r.stdout)["results"]
    assert len(hits) == 3 and hits[0]["path"] == str(files[2][0])
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    between = (hits[0]["score"] + hits[1]["score"]) / 2
    r = run_audio("search", files[2][0], "--model", model, "--db", db, "--min-score",
                  str(between), "--json")
    assert [h["path"] for h in json.loads(r.stdout)["results"]] == [str(files[2][0])]
    r = run_audio("search", files[2][0], "--model", model, "--db", db, "--min-score", "1.01")
    assert r.returncode == 2 and "--min-score" in r.stderr  # no cosine is above 1


def test_index_reports_unreadable_files_with_exit_3(env, tmp_path):
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "broken.wav").write_bytes(b"RIFF nonsense")
    make_speakers(folder / "ok", per_speaker=1)
    r = run_audio("index", folder, "--model", env["model"], "--db", tmp_path / "s.db", "--json")
    assert r.returncode == 3
    doc = json.loads(r.stdout)
    assert doc["added"] == 4 and [Path(f["file"]).name for f in doc["failed"]] == ["broken.wav"]
    assert "broken.wav" in r.stderr


def test_exact_ranking_matches_a_full_sort(monkeypatch):
    """Blocks across parts, rows a part drops, ties and order: as one sort of all scores."""
    monkeypatch.setattr(ranking, "BLOCK", 64)  # several blocks per part
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((500, 16)).astype(np.float32)
    queries = rng.standard_normal((3, 16)).astype(np.float32)
    keep = rng.random(200) > 0.3
    parts = [Part(np.arange(300), matrix[:300]), Part(np.arange(300, 500), matrix[300:], keep)]
    kept = np.concatenate([np.ones(300, bool), keep])
    best_ids, best_scores = ranking.exact(parts, queries, 7)
    for query, ids, scores in zip(queries, best_ids, best_scores, strict=True):
        ranked = ranking._ordered(ids, scores, 7, None)
        full = np.where(kept, matrix @ query, -np.inf)
        expected = np.argsort(-full, kind="stable")[:7]
        assert [i for i, _ in ranked] == list(expected)
        assert np.allclose([s for _, s in ranked], full[expected], rtol=1e-5)


def test_identify_scores_by_the_mean_or_the_best_exemplar(env, tmp_path):
    """mean: cosine with the re-normalised mean of a speaker's exemplars; max: the best
    exemplar's cosine. Expected from the exemplars' own vectors (`embed-speaker --json`)."""
    db, files, model = tmp_path / "s.db", env["files"], env["model"]
    enrolled = {"ann": [files[0][0], files[0][1], files[1][0]], "bob": [files[2][0], files[3][0]]}
    for name, paths in enrolled.items():
        assert run_audio("enroll", name, *paths, "--model", model, "--db", db).returncode == 0

    def vector(path) -> np.ndarray:
        r = run_audio("embed-speaker", path, "--model", model, "--json")
        assert r.returncode == 0, r.stderr
        return np.array(json.loads(r.stdout)["embedding"], dtype=np.float64)

    query = vector(files[0][2])
    expected = {"mean": {}, "max": {}}
    for name, paths in enrolled.items():
        exemplars = np.stack([vector(p) for p in paths])
        centroid = exemplars.mean(axis=0)
        expected["mean"][name] = float(centroid @ query / np.linalg.norm(centroid))
        expected["max"][name] = float(np.max(exemplars @ query))
        # the two scorings differ clearly here, so one cannot pass for the other
        assert abs(expected["mean"][name] - expected["max"][name]) > 1e-3
    for scoring in ("mean", "max"):
        r = run_audio("identify", files[0][2], "--scoring", scoring, "--top", "2",
                      "--threshold", "-1", "--model", model, "--db", db, "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["scoring"] == scoring
        scores = {c["name"]: c["score"] for c in doc["candidates"]}
        assert scores == pytest.approx(expected[scoring], abs=1e-5), scoring
        assert doc["score"] == pytest.approx(max(expected[scoring].values()), abs=1e-5)


def test_calibrated_threshold_is_used_by_compare(env, tmp_path):
    db, files, model = tmp_path / "s.db", env["files"], env["model"]
    for s in range(3):
        assert run_audio("enroll", f"s{s}", *files[s], "--model", model, "--db", db
                         ).returncode == 0
    r = run_audio("calibrate", "--model", model, "--db", db, "--json")
    assert r.returncode == 0, r.stderr
    calibrated = json.loads(r.stdout)
    assert (calibrated["same_pairs"], calibrated["different_pairs"]) == (9, 27)
    r = run_audio("compare", files[0][0], files[3][0], "--model", model, "--db", db, "--json")
    doc = json.loads(r.stdout)
    assert doc["threshold_origin"] == "store"
    assert doc["threshold"] == pytest.approx(calibrated["threshold"])
    assert r.returncode == (0 if doc["score"] >= doc["threshold"] else 1)


def test_listing_a_missing_store_creates_nothing(tmp_path):
    r = run_audio("speakers", "list", "--db", tmp_path / "none.db", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"speakers": []}
    assert not (tmp_path / "none.db").exists()


def test_calibration_threshold_sits_in_the_gap():
    threshold, eer = calibration_threshold(np.array([0.6, 0.7, 0.9]), np.array([0.1, 0.2, 0.4]))
    assert eer == 0.0 and threshold == pytest.approx(0.5)
    threshold, eer = calibration_threshold(np.array([0.3, 0.8]), np.array([0.1, 0.5]))
    assert eer == pytest.approx(0.5)
