"""The vector files beside the store and approximate search, on synthetic clustered vectors."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from audio_cli.store import ann
from audio_cli.store.db import Store, now, pack
from audio_cli.store.index import sync_files
from audio_cli.store.ranking import search_many
from audio_cli.store.vectors import folder, open_vectors, sync

DIM = 32


class FakeEmbedder:
    """The identity fields the store functions read."""

    name, digest, dim, frontend = "test/vectors", "ab" * 8, DIM, "{}"


def speakers(rng, count: int, per: int) -> np.ndarray:
    """Unit vectors around `count` speaker centroids (same-speaker cosine about 0.7)."""
    centres = rng.standard_normal((count, DIM))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((count * per, DIM))
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    x = np.sqrt(0.7) * np.repeat(centres, per, axis=0) + np.sqrt(0.3) * noise
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def add(store: Store, vectors: np.ndarray, start: int) -> None:
    with store.write() as conn:
        model = store.model_row(conn, FakeEmbedder.name, FakeEmbedder.digest, DIM, "{}")
        conn.executemany(
            "INSERT INTO recordings (path, size, mtime_ns, model_id, engine, duration, created, "
            "vector) VALUES (?, 0, 0, ?, 'x', 1.0, ?, ?)",
            ((f"/r/{start + i:05d}", model, now(), pack(v)) for i, v in enumerate(vectors)))


def brute(store: Store, queries: np.ndarray, k: int) -> list[list[str]]:
    """Top k paths per query, straight from SQLite by numpy."""
    conn = sqlite3.connect(store.path)
    rows = conn.execute("SELECT path, vector FROM recordings").fetchall()
    conn.close()
    paths = [r[0] for r in rows]
    matrix = np.stack([np.frombuffer(r[1], "<f4") for r in rows])
    scores = queries @ matrix.T
    return [[paths[i] for i in np.lexsort((paths, -s))[:k]] for s in scores]


def found(answer) -> list[list[str]]:
    return [[h.path for h in hits] for hits in answer.hits]


def view_of(store: Store):
    with store.read() as conn:
        model = store.find_model(conn, FakeEmbedder.digest)
        return open_vectors(conn, store, FakeEmbedder.digest, DIM, model)


def segments(store: Store) -> list[Path]:
    return sorted(folder(store).glob("*.vec"))


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    return speakers(rng, 40, 25), speakers(rng, 40, 1)  # 1000 stored, 40 queries


def test_file_is_written_used_appended_and_never_stale(tmp_path, data):
    vectors, queries = data
    with Store(tmp_path / "s.db") as store:
        add(store, vectors[:600], 0)
        assert view_of(store).source == "sqlite"  # no file yet
        sync(store, FakeEmbedder.digest, DIM)
        assert len(segments(store)) == 1 and view_of(store).source == "file"
        add(store, vectors[600:], 600)  # after the file: read from SQLite beyond it
        view = view_of(store)
        assert view.source == "file" and view.rows == 1000
        assert found(search_many(store, FakeEmbedder, queries, 5)) == brute(store, queries, 5)
        sync(store, FakeEmbedder.digest, DIM)
        assert len(segments(store)) == 2  # appended as a second segment
        assert len(view_of(store).parts[-1].ids) == 0  # nothing left to read from SQLite
        answer = search_many(store, FakeEmbedder, queries, 5)
        assert answer.mode == "exact" and answer.source == "file" and answer.vectors == 1000
        assert found(answer) == brute(store, queries, 5)


def test_deleted_and_replaced_vectors_are_respected(tmp_path, data):
    vectors, queries = data
    with Store(tmp_path / "s.db") as store:
        add(store, vectors, 0)
        sync(store, FakeEmbedder.digest, DIM)
        best = found(search_many(store, FakeEmbedder, queries[:1], 1))[0][0]
        far = found(search_many(store, FakeEmbedder, -queries[:1], 1))[0][0]
        with store.write() as conn:
            conn.execute("DELETE FROM recordings WHERE path = ?", (best,))
            conn.execute("UPDATE recordings SET vector = ? WHERE path = ?",
                         (pack(queries[0]), far))
        answer = search_many(store, FakeEmbedder, queries, 5)
        assert answer.source == "file"
        assert found(answer) == brute(store, queries, 5)
        assert found(answer)[0][0] == far and best not in found(answer)[0]
        sync(store, FakeEmbedder.digest, DIM)  # merged into one new segment
        assert len(segments(store)) == 1 and not view_of(store).dirty
        assert found(search_many(store, FakeEmbedder, queries, 5)) == brute(store, queries, 5)


def test_files_that_do_not_match_the_store_are_not_used_and_rebuilt(tmp_path, data):
    vectors, queries = data
    with Store(tmp_path / "s.db") as store:
        add(store, vectors, 0)
        sync(store, FakeEmbedder.digest, DIM)
        (segment,) = segments(store)
        segment.write_bytes(segment.read_bytes()[:-4])  # truncated
        assert view_of(store).source == "sqlite"
        assert found(search_many(store, FakeEmbedder, queries, 5)) == brute(store, queries, 5)
        sync(store, FakeEmbedder.digest, DIM)
        assert view_of(store).source == "file"
    # Another store at the same path (new token), with other vectors: the old file is ignored.
    for path in tmp_path.glob("s.db*"):
        if path.is_file():
            path.unlink()
    with Store(tmp_path / "s.db") as store:
        add(store, vectors[::-1].copy(), 0)
        assert view_of(store).source == "sqlite"
        assert found(search_many(store, FakeEmbedder, queries, 5)) == brute(store, queries, 5)
        sync(store, FakeEmbedder.digest, DIM)
        assert view_of(store).source == "file"
        assert found(search_many(store, FakeEmbedder, queries, 5)) == brute(store, queries, 5)


def test_read_only_store_searches_without_writing(tmp_path, data):
    vectors, queries = data
    with Store(tmp_path / "s.db") as store:
        add(store, vectors, 0)
    with Store(tmp_path / "s.db", readonly=True) as store:
        assert sync(store, FakeEmbedder.digest, DIM) is None
        assert found(search_many(store, FakeEmbedder, queries, 5)) == brute(store, queries, 5)
        assert not folder(store).exists()


def test_store_of_schema_1_is_searched_read_only(tmp_path, data):
    vectors, queries = data
    with Store(tmp_path / "s.db") as store:
        add(store, vectors, 0)
    conn = sqlite3.connect(tmp_path / "s.db")
    for statement in ("DROP TRIGGER recordings_deleted", "DROP TRIGGER recordings_changed",
                      "DROP TABLE vector_log", "DROP TABLE vector_state",
                      "PRAGMA user_version = 1"):
        conn.execute(statement)
    conn.commit()
    conn.close()
    with Store(tmp_path / "s.db", readonly=True) as store:
        answer = search_many(store, FakeEmbedder, queries, 5)
        assert answer.source == "sqlite" and found(answer) == brute(store, queries, 5)


needs_usearch = pytest.mark.skipif(importlib.util.find_spec("usearch") is None,
                                   reason="usearch (optional, pip install 'audio[ann]') missing")


@needs_usearch
def test_a_graph_opened_for_search_uses_the_expansion_it_was_tuned_for(tmp_path, data,
                                                                     monkeypatch):
    """usearch's file keeps no search expansion: reopened at its default (64), the 10^6
    benchmark's recall@10 fell to 0.975."""
    from audio_cli.store.ranking import Searcher

    vectors, _ = data
    monkeypatch.setenv(ann.MIN_ROWS_ENV, "500")
    with Store(tmp_path / "s.db") as store:
        add(store, vectors[:600], 0)
        sync_files(store, FakeEmbedder.digest, DIM)
        with store.read() as conn:
            searcher = Searcher(conn, store, FakeEmbedder)
            assert searcher.mode == "approximate"
            assert searcher.graph.index.expansion_search == ann.EXPANSION_SEARCH


@needs_usearch
def test_approximate_search_agrees_with_exact_and_stays_current(tmp_path, data, monkeypatch):
    vectors, queries = data
    monkeypatch.setenv(ann.MIN_ROWS_ENV, "500")
    with Store(tmp_path / "s.db") as store:
        add(store, vectors[:900], 0)
        sync_files(store, FakeEmbedder.digest, DIM)
        assert len(list(folder(store).glob("*.usearch"))) == 1
        approximate = search_many(store, FakeEmbedder, queries, 10)
        exact = search_many(store, FakeEmbedder, queries, 10, force_exact=True)
        assert approximate.mode == "approximate" and exact.mode == "exact"
        assert found(exact) == brute(store, queries, 10)
        assert [f[0] for f in found(approximate)] == [f[0] for f in found(exact)]
        recall = np.mean([len(set(a) & set(e)) / 10
                          for a, e in zip(found(approximate), found(exact), strict=True)])
        assert recall >= 0.9
        # Added and deleted after the graph was written: still right.
        add(store, vectors[900:], 900)
        best = found(exact)[0][0]
        with store.write() as conn:
            conn.execute("DELETE FROM recordings WHERE path = ?", (best,))
        approximate = search_many(store, FakeEmbedder, queries, 10)
        assert approximate.mode == "approximate"
        truth = brute(store, queries, 10)
        assert [f[0] for f in found(approximate)] == [t[0] for t in truth]
        assert best not in {p for f in found(approximate) for p in f}
        sync_files(store, FakeEmbedder.digest, DIM)  # the graph follows incrementally
        assert len(list(folder(store).glob("*.usearch"))) == 1
        approximate = search_many(store, FakeEmbedder, queries, 10)
        assert [f[0] for f in found(approximate)] == [t[0] for t in truth]


def test_below_the_threshold_search_is_exact(tmp_path, data, monkeypatch):
    vectors, queries = data
    monkeypatch.setenv(ann.MIN_ROWS_ENV, "5000")
    with Store(tmp_path / "s.db") as store:
        add(store, vectors, 0)
        sync_files(store, FakeEmbedder.digest, DIM)
        assert not list(folder(store).glob("*.usearch"))
        answer = search_many(store, FakeEmbedder, queries, 3)
        assert answer.mode == "exact" and answer.note is None


@pytest.mark.parametrize("how", ["upsert", "replace", "move"])
def test_every_kind_of_write_keeps_the_files_trustworthy(tmp_path, data, how):
    vectors, queries = data
    with Store(tmp_path / "s.db") as store:
        add(store, vectors, 0)
        sync(store, FakeEmbedder.digest, DIM)
        target = found(search_many(store, FakeEmbedder, -queries[:1], 1))[0][0]
        nearest = found(search_many(store, FakeEmbedder, queries[:1], 1))[0][0]
        with store.write() as conn:
            model = store.find_model(conn, FakeEmbedder.digest)
            if how == "upsert":  # as `audio index` re-embeds a changed file
                conn.execute("INSERT INTO recordings (path, size, mtime_ns, model_id, engine, "
                             "duration, created, vector) VALUES (?, 1, 1, ?, 'x', 1.0, ?, ?) "
                             "ON CONFLICT (model_id, path) DO UPDATE SET vector = "
                             "excluded.vector", (target, model, now(), pack(queries[0])))
            elif how == "replace":
                conn.execute("INSERT OR REPLACE INTO recordings (path, size, mtime_ns, model_id, "
                             "engine, duration, created, vector) VALUES (?, 1, 1, ?, 'x', 1.0, "
                             "?, ?)", (target, model, now(), pack(queries[0])))
            else:  # the row goes to another model
                other = store.model_row(conn, "other", "cd" * 8, DIM, "{}")
                conn.execute("UPDATE recordings SET model_id = ? WHERE path = ?", (other, nearest))
        view = view_of(store)
        assert view.source == "file" and view.rows == (999 if how == "move" else 1000)
        assert found(search_many(store, FakeEmbedder, queries, 5)) == brute_of_model(
            store, queries, 5)
        best = found(search_many(store, FakeEmbedder, queries[:1], 1))[0][0]
        assert best != nearest if how == "move" else best == target
        sync(store, FakeEmbedder.digest, DIM)
        assert view_of(store).source == "file" and view_of(store).rows == view.rows


def brute_of_model(store: Store, queries: np.ndarray, k: int) -> list[list[str]]:
    """Top k paths per query among this model's rows, straight from SQLite."""
    conn = sqlite3.connect(store.path)
    rows = conn.execute("SELECT r.path, r.vector FROM recordings r JOIN models m ON "
                        "m.id = r.model_id WHERE m.digest = ?", (FakeEmbedder.digest,)).fetchall()
    conn.close()
    paths = [r[0] for r in rows]
    matrix = np.stack([np.frombuffer(r[1], "<f4") for r in rows])
    return [[paths[i] for i in np.lexsort((paths, -s))[:k]] for s in queries @ matrix.T]
