"""Issue 26: store commands without --model use the store's model when it holds exactly one
(identify, search, enroll and index into an existing store, calibrate); --model typed wins; a
store of several models, none of them the default, is one line listing them (exit 2)."""

from __future__ import annotations

import json

import pytest
from cli_run import run_audio
from store_helpers import make_model, make_speakers


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("storemodel")
    speakers = make_speakers(root / "audio")
    models = {"one": make_model(root / "one"), "two": make_model(root / "two", seed=3)}
    db = root / "s.db"
    for name, files in zip(("ann", "bob"), speakers, strict=False):
        proc = run_audio("enroll", name, *files[:2], "--model", models["one"], "--db", db)
        assert proc.returncode == 0, proc.stderr
    proc = run_audio("index", root / "audio", "--model", models["one"], "--db", db)
    assert proc.returncode == 0, proc.stderr
    return {"root": root, "speakers": speakers, "models": models, "db": db}


def test_identify_without_model_uses_the_stores_one_model(env):
    proc = run_audio("identify", env["speakers"][1][2], "--db", env["db"], "--json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert (document["speaker"], document["model"]) == ("bob", str(env["models"]["one"]))


def test_search_without_model_uses_the_stores_one_model(env):
    query = env["speakers"][2][0]
    proc = run_audio("search", query, "--db", env["db"], "--top", "1", "--json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    assert document["model"] == str(env["models"]["one"])
    assert document["results"][0]["path"] == str(query)  # itself, indexed


def test_enroll_into_the_store_without_model_uses_its_model(env, tmp_path):
    db = tmp_path / "s.db"
    assert run_audio("enroll", "ann", *env["speakers"][0][:2], "--model", env["models"]["one"],
                     "--db", db).returncode == 0
    proc = run_audio("enroll", "cy", env["speakers"][2][0], "--db", db, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == str(env["models"]["one"])


def test_a_typed_model_wins_over_the_stores(env, tmp_path):
    db = tmp_path / "s.db"
    assert run_audio("enroll", "ann", *env["speakers"][0][:2], "--model", env["models"]["one"],
                     "--db", db).returncode == 0
    proc = run_audio("identify", env["speakers"][0][2], "--db", db, "--model",
                     env["models"]["two"], "--json")
    assert proc.returncode == 2, proc.stderr  # no exemplar of that model: an error, as before
    assert str(env["models"]["two"]) in proc.stderr


def test_a_store_of_two_models_without_model_is_one_line_listing_them(env, tmp_path):
    db = tmp_path / "s.db"
    for name, model in (("ann", "one"), ("bob", "two")):
        assert run_audio("enroll", name, env["speakers"][0][0], "--model", env["models"][model],
                         "--db", db).returncode == 0
    proc = run_audio("identify", env["speakers"][0][2], "--db", db)
    assert proc.returncode == 2
    one, two = sorted([str(env["models"]["one"]), str(env["models"]["two"])])
    assert proc.stderr.splitlines() == [
        f"audio: error: {db}: its exemplars are of 2 models ({one}, {two}); pass --model"]


def test_the_stores_model_moved_away_is_a_model_error(env, tmp_path):
    """The store names a model by what was typed; another folder there is other weights."""
    db = tmp_path / "s.db"
    folder = tmp_path / "m"
    make_model(folder)
    assert run_audio("enroll", "ann", env["speakers"][0][0], "--model", "m", "--db", db,
                     cwd=tmp_path).returncode == 0
    elsewhere = tmp_path / "other"
    make_model(elsewhere / "m", seed=7)
    proc = run_audio("calibrate", "--db", db, cwd=elsewhere)
    assert proc.returncode == 4, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and "pass --model" in proc.stderr
