"""How each stored vector was made (VAD, precision): schema 3's migration keeps every row,
the counts stay right through every kind of write, and enroll/index/identify/search follow
the rules (VAD mismatch on a write: exit 2; precision mismatch: a warning; a query made
otherwise: a warning)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_audio

from audio_cli.store.db import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, Store
from audio_cli.store.settings import Made, check_adding, query_warning, recorded
from engines.errors import UsageError

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
SPEECH = sorted(str(p) for p in SAMPLES.glob("*.flac"))
DIM = 4


def old_store(path: Path, version: int) -> None:
    """A store of an older schema, written by that schema's statements, with rows in it."""
    conn = sqlite3.connect(path, isolation_level=None)
    for step in MIGRATIONS[:version]:
        for statement in step:
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("INSERT INTO models VALUES (1, 'm', 'digest-m', ?, '{}')", (DIM,))
    conn.execute("INSERT INTO speakers VALUES (1, 'ann', 'then')")
    rng = np.random.default_rng(0)
    for i in range(3):
        conn.execute("INSERT INTO exemplars (speaker_id, model_id, engine, source, duration, "
                     "created, vector) VALUES (1, 1, 'onnx', ?, 1.0, 'then', ?)",
                     (f"a{i}.wav", rng.standard_normal(DIM).astype("<f4").tobytes()))
    for i in range(5):
        conn.execute("INSERT INTO recordings (path, size, mtime_ns, model_id, engine, duration, "
                     "created, vector) VALUES (?, 1, 1, 1, 'onnx', 2.0, 'then', ?)",
                     (f"/r{i}.wav", rng.standard_normal(DIM).astype("<f4").tobytes()))
    conn.close()


def dump(path: Path) -> dict:
    conn = sqlite3.connect(path)
    tables = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
              for t in ("models", "speakers", "exemplars", "recordings")}
    conn.close()
    return tables


def counts_by_scan(conn: sqlite3.Connection) -> set:
    """vector_settings as it must be: a GROUP BY over the two tables."""
    return {(kind, *row) for kind in ("exemplars", "recordings") for row in conn.execute(
        f"SELECT model_id, coalesce(vad, -1), precision, count(*) FROM {kind} "
        "GROUP BY 1, 2, 3")}


def counts(conn: sqlite3.Connection) -> set:
    return set(conn.execute("SELECT kind, model_id, vad, precision, rows FROM vector_settings"))


@pytest.mark.parametrize("version", [1, 2])
def test_migration_keeps_every_row_and_records_what_is_known(tmp_path, version):
    path = tmp_path / "s.db"
    old_store(path, version)
    before = dump(path)
    with Store(path) as store:
        conn = store.conn
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
        after = dump(path)
        for table, rows in before.items():  # every old column of every row, unchanged
            assert [r[:len(rows[0])] for r in after[table]] == rows, table
        # index never took --vad before schema 3, enroll did: not known for exemplars
        assert set(conn.execute("SELECT vad, precision FROM recordings")) == {(0, "float32")}
        assert set(conn.execute("SELECT vad, precision FROM exemplars")) == {(None, "float32")}
        assert counts(conn) == counts_by_scan(conn) == {("exemplars", 1, -1, "float32", 3),
                                                        ("recordings", 1, 0, "float32", 5)}
        with store.read() as c:
            assert recorded(c, "recordings", 1) == recorded(c, "recordings", 1)
            assert recorded(c, "recordings", 1).vad == {False}
            assert recorded(c, "exemplars", 1).vad == frozenset()  # unknown: no rule applies
            assert query_warning(c, "exemplars", 1, "m", Made(vad=True)) is None


def test_a_read_only_older_store_is_read_without_settings(tmp_path):
    path = tmp_path / "s.db"
    old_store(path, 2)
    with Store(path, readonly=True) as store, store.read() as conn:
        assert recorded(conn, "recordings", 1).rows == 0
        assert query_warning(conn, "recordings", 1, "m", Made(True, "int8")) is None
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == 2


def test_counts_follow_inserts_upserts_replaces_updates_and_deletes(tmp_path):
    rng = np.random.default_rng(1)
    with Store(tmp_path / "s.db") as store:
        with store.write() as conn:
            for mid in (1, 2):
                store.model_row(conn, f"m{mid}", f"d{mid}", DIM, "{}")
            store.speaker_row(conn, "ann", "now")
            store.speaker_row(conn, "bob", "now")
        for step in range(300):
            vad = [None, 0, 1][rng.integers(3)]
            precision = ["float32", "int8"][rng.integers(2)]
            model, i = int(rng.integers(1, 3)), int(rng.integers(12))
            blob = rng.standard_normal(DIM).astype("<f4").tobytes()
            op = rng.integers(5)
            with store.write() as conn:
                if op == 0:
                    conn.execute(
                        "INSERT INTO recordings (path, size, mtime_ns, model_id, engine, "
                        "duration, created, vector, vad, precision) VALUES (?, 1, 1, ?, 'x', 1,"
                        " 'now', ?, ?, ?) ON CONFLICT (model_id, path) DO UPDATE SET "
                        "vector = excluded.vector, vad = excluded.vad, "
                        "precision = excluded.precision",
                        (f"/f{i}", model, blob, vad, precision))
                elif op == 1:
                    conn.execute(
                        "INSERT OR REPLACE INTO exemplars (speaker_id, model_id, engine, "
                        "source, duration, created, vector, vad, precision) VALUES "
                        "((SELECT id FROM speakers WHERE name = ?), ?, 'x', ?, 1, 'now', ?, ?, ?)",
                        (["ann", "bob"][i % 2], model, f"s{i}", blob, vad, precision))
                elif op == 2:
                    conn.execute("DELETE FROM recordings WHERE path = ?", (f"/f{i}",))
                elif op == 3:
                    column, value = [("vad", vad), ("precision", precision)][i % 2]
                    conn.execute(f"UPDATE exemplars SET {column} = ? WHERE source = ?",
                                 (value, f"s{i}"))
                else:
                    conn.execute("DELETE FROM speakers WHERE name = ?", ("ann",))  # cascades
                    store.speaker_row(conn, "ann", "now")
            if step % 50 == 49:
                assert counts(store.conn) == counts_by_scan(store.conn), step
        assert counts(store.conn) == counts_by_scan(store.conn)
        assert counts(store.conn)  # the sequence did leave rows


def test_the_rules(tmp_path):
    with Store(tmp_path / "s.db") as store:
        with store.write() as conn:
            model = store.model_row(conn, "m", "d", DIM, "{}")
            assert check_adding(conn, "recordings", model, "m", Made(True), "index") is None
            conn.execute("INSERT INTO recordings (path, size, mtime_ns, model_id, engine, "
                         "duration, created, vector, vad, precision) VALUES "
                         "('/a', 1, 1, ?, 'x', 1, 'now', x'00', 0, 'float32')", (model,))
            with pytest.raises(UsageError, match="made without --vad, this index runs with "
                               "--vad.*index without --vad"):
                check_adding(conn, "recordings", model, "m", Made(True), "index")
            assert "float32, these int8" in check_adding(conn, "recordings", model, "m",
                                                         Made(False, "int8"), "index")
            assert check_adding(conn, "recordings", model, "m", Made(), "index") is None
            # exemplars are another table: their own rules
            assert check_adding(conn, "exemplars", model, "m", Made(True), "enroll") is None
            assert query_warning(conn, "recordings", model, "m", Made()) is None
            warning = query_warning(conn, "recordings", model, "m", Made(True, "int8"))
            assert "made without --vad, at float32, this query with --vad, at int8" in warning
            assert query_warning(conn, "recordings", None, "m", Made(True)) is None


# ---------------------------------------------------------------- the commands


@pytest.fixture()
def model(small_model_dir, tmp_path) -> Path:
    """A private copy of the small random ResNet whose int8 cache starts empty (without the
    builds that other tests may have left beside the shared model's weights)."""
    from engines.onnx_engine import CACHE_KIND

    return Path(shutil.copytree(small_model_dir, tmp_path / "model",
                                ignore=shutil.ignore_patterns(CACHE_KIND)))


def audio(*args) -> tuple[int, str, list[str]]:
    proc = run_audio(*map(str, args))
    return proc.returncode, proc.stdout, proc.stderr.splitlines()


def rows(db: Path, table: str) -> list[tuple]:
    conn = sqlite3.connect(db)
    out = conn.execute(f"SELECT vad, precision FROM {table} ORDER BY id").fetchall()
    conn.close()
    return out


def test_index_records_vad_and_precision_and_refuses_mixing_vad(model, tmp_path):
    db = tmp_path / "s.db"
    common = ("--model", model, "--db", db)
    code, out, err = audio("index", SPEECH[0], SPEECH[1], *common, "--vad")
    assert code == 0, err
    assert rows(db, "recordings") == [(2, "float32")] * 2
    before = dump(db)
    code, out, err = audio("index", SPEECH[2], *common)
    assert (code, out) == (2, "")
    assert err == [f"audio: error: the store's recordings of {model} were made with --vad, "
                   "this index runs without --vad; vectors with and without voice-activity "
                   "detection are not mixed: index with --vad, or use another --db"]
    assert dump(db) == before
    code, out, err = audio("index", SPEECH[2], *common, "--vad", "--precision", "int8", "--json")
    assert code == 0, err
    assert json.loads(out)["added"] == 1
    assert len(err) == 2 and err[0].startswith("onnx: building the int8 network (first use)")
    assert err[1].startswith(
        f"audio: warning: the store's recordings of {model} are float32, these int8;")
    assert rows(db, "recordings") == [(2, "float32")] * 2 + [(2, "int8")]


def test_search_warns_when_the_query_is_made_otherwise(model, tmp_path):
    db = tmp_path / "s.db"
    common = ("--model", model, "--db", db)
    assert audio("index", *SPEECH, *common)[0] == 0
    code, same, err = audio("search", SPEECH[0], *common)
    assert code == 0 and not [line for line in err if "warning" in line]
    code, out, err = audio("search", SPEECH[0], *common, "--vad")
    assert code == 0
    warnings = [line for line in err if "warning" in line]
    assert warnings == [f"audio: warning: the store's recordings of {model} were made without "
                        "--vad, this query with --vad; voice-activity detection changes what is "
                        "embedded, so scores are not those of vectors made alike"]
    assert sorted(out.split()[1::2]) == sorted(same.split()[1::2])  # all are still listed
    code, out, err = audio("search", SPEECH[0], *common, "--precision", "int8")
    assert code == 0
    assert [line for line in err if "warning" in line] == [
        f"audio: warning: the store's recordings of {model} were made at float32, this query "
        "at int8; int8 and float32 vectors agree to about 0.99 cosine"]


def test_enroll_and_identify_follow_the_same_rules(model, tmp_path):
    db = tmp_path / "s.db"
    common = ("--model", model, "--db", db)
    assert audio("enroll", "ann", SPEECH[0], *common, "--vad")[0] == 0
    assert audio("enroll", "bob", SPEECH[2], *common, "--vad")[0] == 0
    code, out, err = audio("enroll", "ann", SPEECH[1], *common)
    assert (code, out) == (2, "")
    assert err == [f"audio: error: the store's exemplars of {model} were made with --vad, "
                   "this enroll runs without --vad; vectors with and without voice-activity "
                   "detection are not mixed: enroll with --vad, or use another --db"]
    assert rows(db, "exemplars") == [(2, "float32")] * 2
    code, out, err = audio("identify", SPEECH[1], *common, "--vad", "--json")
    assert code in (0, 1) and json.loads(out)["candidates"]
    assert not [line for line in err if "warning" in line]
    code, out, err = audio("identify", SPEECH[1], *common, "--json")
    assert code in (0, 1) and json.loads(out)["candidates"]
    assert [line for line in err if "warning" in line] == [
        f"audio: warning: the store's exemplars of {model} were made with --vad, this query "
        "without --vad; voice-activity detection changes what is embedded, so scores are not "
        "those of vectors made alike"]


def test_export_and_import_carry_how_exemplars_were_made(model, tmp_path):
    db, copy = tmp_path / "s.db", tmp_path / "t.db"
    assert audio("enroll", "ann", SPEECH[0], "--model", model, "--db", db, "--vad",
                 "--precision", "int8")[0] == 0
    assert audio("speakers", "export", tmp_path / "x.json", "--db", db)[0] == 0
    (exemplar,) = json.loads((tmp_path / "x.json").read_text())["speakers"][0]["exemplars"]
    assert (exemplar["vad"], exemplar["precision"]) == (True, "int8")
    assert audio("speakers", "import", tmp_path / "x.json", "--db", copy)[0] == 0
    assert rows(copy, "exemplars") == [(2, "int8")]


def test_index_checks_again_when_it_writes(small_model_dir, tmp_path):
    """Another process indexing the other way between the first check and a commit."""
    from store_helpers import make_speakers

    from audio_cli import EmbedOptions, SpeakerEmbedder
    from audio_cli.store.index import index_paths

    files = [str(p) for p in make_speakers(tmp_path / "audio", per_speaker=1)[0]]
    embedder = SpeakerEmbedder.from_pretrained(str(small_model_dir))
    db = tmp_path / "s.db"

    def other_process(done: int, total: int) -> None:
        if done == 1:
            conn = sqlite3.connect(db, isolation_level=None)
            conn.execute("INSERT INTO recordings (path, size, mtime_ns, model_id, engine, "
                         "duration, created, vector, vad) SELECT '/x', 1, 1, id, 'x', 1, 'now',"
                         " x'00', 1 FROM models")
            conn.close()

    with Store(db) as store:
        with pytest.raises(UsageError, match="made with --vad, this index runs without"):
            index_paths(store, embedder, files, EmbedOptions(), progress=other_process)
        with store.read() as conn:
            assert conn.execute("SELECT path FROM recordings").fetchall() == [("/x",)]
