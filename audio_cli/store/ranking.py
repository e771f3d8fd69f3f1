"""Rank indexed recordings against one or many query vectors: exact (one matrix product per
block of stored vectors, all queries at once) or approximate (HNSW candidates rescored)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np

from audio_cli.store import ann
from audio_cli.store.db import Store
from audio_cli.store.vectors import Part, open_vectors, store_state
from engines.errors import UsageError

BLOCK = 65536  # stored vectors scored at a time (a (queries, BLOCK) score matrix)
QUERY_BLOCK = 256  # queries ranked together (their score block: 64 MB)


@dataclass(frozen=True)
class Hit:
    """One indexed recording ranked by cosine with the query."""

    path: str
    score: float
    duration: float


@dataclass
class Answer:
    """The hits of each query, which mode found them, and why not the other."""

    hits: list[list[Hit]]
    mode: str  # "exact" or "approximate"
    vectors: int  # how many vectors of the model were searched
    source: str  # "file" (vector files + SQLite rows past them) or "sqlite"
    note: str | None = None  # why a store this large was searched exactly


def _best(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k largest scores of each row (unordered)."""
    n = scores.shape[1]
    if n <= k:
        return np.broadcast_to(np.arange(n), scores.shape)
    return np.argpartition(scores, n - k, axis=1)[:, n - k:]


def exact(parts: list[Part], queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, scores), each (queries, <= k): the k best rows of `parts` per query, unordered;
    rows a part does not keep score -inf."""
    m = len(queries)
    best_ids, best = np.zeros((m, 0), np.int64), np.zeros((m, 0), np.float32)
    for p in parts:
        for start in range(0, len(p.ids), BLOCK):
            scores = queries @ np.asarray(p.matrix[start:start + BLOCK], dtype=np.float32).T
            if p.keep is not None:
                scores[:, ~p.keep[start:start + BLOCK]] = -np.inf
            top = _best(scores, k)
            ids = np.concatenate([best_ids, np.asarray(p.ids[start:start + BLOCK])[top]], axis=1)
            scores = np.concatenate([best, np.take_along_axis(scores, top, 1)], axis=1)
            top = _best(scores, k)
            best_ids, best = np.take_along_axis(ids, top, 1), np.take_along_axis(scores, top, 1)
    return best_ids, best


def _nothing_indexed(conn: sqlite3.Connection, store: Store, identity) -> Exception:
    from audio_cli.store.speakers import mismatch_error  # only on this error path

    if conn.execute("SELECT count(*) FROM recordings").fetchone()[0]:
        return mismatch_error(conn, "recordings", identity)
    return UsageError(f"{store.path}: nothing indexed yet (use `audio index PATH`)")


class Searcher:
    """One model's vectors opened for ranking, exact or approximate (inside a read of the
    store: the view and the connection must stay in that transaction)."""

    def __init__(self, conn: sqlite3.Connection, store: Store, identity,
                 force_exact: bool = False):
        self.conn = conn
        model = store.find_model(conn, identity.digest)
        if model is None:
            raise _nothing_indexed(conn, store, identity)
        self.view = open_vectors(conn, store, identity.digest, identity.dim, model)
        if self.view.rows == 0:
            raise _nothing_indexed(conn, store, identity)
        self.graph, self.note = None, None
        if not force_exact and self.view.rows >= ann.min_rows():
            state, graph = store_state(conn), None
            if not ann.available():
                self.note = "usearch is not installed (pip install 'audio[ann]')"
            elif self.view.source != "file" or state is None or \
                    (graph := ann.find(store, state[0], identity.digest)) is None:
                self.note = "no approximate-search graph yet (`audio index` writes it)"
            else:
                self.graph = ann.open_graph(conn, self.view, graph)
        self.mode = "exact" if self.graph is None else "approximate"

    def rank(self, queries: np.ndarray, k: int, min_score: float | None = None
             ) -> list[list[tuple[int, float]]]:
        """Per query, the k best (recording id, cosine), best first."""
        if k < 1:
            raise UsageError("--top must be at least 1")
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if self.graph is None:
            ranked = []
            for first in range(0, len(queries), QUERY_BLOCK):
                ids, scores = exact(self.view.parts, queries[first:first + QUERY_BLOCK], k)
                ranked += [_ordered(i, s, k, min_score) for i, s in zip(ids, scores, strict=True)]
            return ranked
        proposed, uncovered = ann.candidates(self.graph, self.view, queries, k)
        ids, scores = exact(uncovered, queries, k)
        ranked = []
        for q, found, e_ids, e_scores in zip(queries, proposed, ids, scores, strict=True):
            c_ids, c_vectors = ann.lookup(self.view, np.unique(found))
            scores_q = np.concatenate([c_vectors @ q, e_scores])
            ranked.append(_ordered(np.concatenate([c_ids, e_ids]), scores_q, k, min_score))
        return ranked

    def hits(self, ranked: list[list[tuple[int, float]]]) -> list[list[Hit]]:
        """The ranked ids as paths and durations, best first (ties by path)."""
        info = _details(self.conn, sorted({i for r in ranked for i, _ in r}))
        return [sorted((Hit(info[i][0], s, info[i][1]) for i, s in r),
                       key=lambda h: (-h.score, h.path)) for r in ranked]


def search_many(store: Store, identity, queries: np.ndarray, k: int = 10,
                min_score: float | None = None, force_exact: bool = False) -> Answer:
    """The k indexed recordings closest to each query (rows of `queries`), best first."""
    if k < 1:
        raise UsageError("--top must be at least 1")
    with store.read() as conn:
        searcher = Searcher(conn, store, identity, force_exact)
        hits = searcher.hits(searcher.rank(queries, k, min_score))
    return Answer(hits, searcher.mode, searcher.view.rows, searcher.view.source, searcher.note)


def _ordered(ids: np.ndarray, scores: np.ndarray, k: int, min_score: float | None
             ) -> list[tuple[int, float]]:
    """The k best distinct (id, score), best first, finite and at least `min_score`."""
    seen: dict[int, float] = {}
    for i in np.lexsort((ids, -scores)):
        score = float(scores[i])
        if not np.isfinite(score) or (min_score is not None and score < min_score):
            continue
        seen.setdefault(int(ids[i]), score)
        if len(seen) == k:
            break
    return list(seen.items())


def _details(conn: sqlite3.Connection, ids: list[int]) -> dict[int, tuple[str, float]]:
    info = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        info.update({i: (p, d) for i, p, d in conn.execute(
            "SELECT id, path, duration FROM recordings WHERE id IN "
            f"({','.join('?' * len(chunk))})", chunk)})
    return info
