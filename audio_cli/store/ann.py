"""Approximate search for large stores: an HNSW graph (usearch, optional) beside the vector files.

The graph file `<digest>.<token>.<hi>.<log>.usearch` holds the vectors (float16) of recording
ids up to `hi` as of vector_log seq `log`, keyed by recording id. Search asks it for a few
times more candidates than wanted, drops ids logged since `log`, scores the rest exactly on the
float32 vector files, and searches exactly the rows it does not cover (ids above `hi`, rows
logged since): an answer never misses a vector added after the graph was written.
"""

from __future__ import annotations

import importlib.util
import os
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio_cli.store.db import Store
from audio_cli.store.vectors import Part, Vectors, folder
from engines.errors import UsageError
from engines.files import new_file

MIN_ROWS_ENV = "AUDIO_ANN_MIN_ROWS"
# Exact search up to this many vectors of a model (~150 ms a query at 10^6, 256-dim);
# approximate beyond, when usearch is installed.
DEFAULT_MIN_ROWS = 1_000_000
CONNECTIVITY = 16
EXPANSION_ADD = 128
# Measured at 10^6 clustered vectors (bench/store_scaling.py data, top 10 of 40 candidates
# rescored): recall@10 0.9945 at 128, 0.9995 at 256 (1.4 ms a query) and at 512 (2.9 ms).
EXPANSION_SEARCH = 256
ADD_BLOCK = 1 << 20  # vectors handed to usearch per call (its threads share one call)


@dataclass(frozen=True)
class Graph:
    path: Path
    hi: int
    log: int


def min_rows() -> int:
    """The size from which search is approximate: $AUDIO_ANN_MIN_ROWS, else the default."""
    raw = os.environ.get(MIN_ROWS_ENV, "")
    if not raw:
        return DEFAULT_MIN_ROWS
    try:
        value = int(raw)
        if value < 0:
            raise ValueError
    except ValueError:
        raise UsageError(f"${MIN_ROWS_ENV} must be a whole number of vectors (0 or more), "
                         f"got {raw!r}") from None
    return value


def available() -> bool:
    """Whether usearch is installed (pip install 'audio[ann]')."""
    return importlib.util.find_spec("usearch") is not None


def find(store: Store, token: str, digest: str) -> Graph | None:
    """The newest graph file of this store and model."""
    best = None
    try:
        names = os.listdir(folder(store))
    except OSError:
        return None
    for name in names:
        bits = name.split(".")
        if len(bits) == 5 and bits[0] == digest and bits[1] == token[:8] and \
                bits[4] == "usearch" and bits[2].isdigit() and bits[3].isdigit():
            graph = Graph(folder(store) / name, int(bits[2]), int(bits[3]))
            if best is None or (graph.log, graph.hi) > (best.log, best.hi):
                best = graph
    return best


def _logged(conn: sqlite3.Connection, model: int, since: int) -> np.ndarray:
    return np.array(sorted(r[0] for r in conn.execute(
        "SELECT DISTINCT recording_id FROM vector_log WHERE seq > ? AND model_id = ?",
        (since, model))), dtype=np.int64)


def _uncovered(view: Vectors, hi: int, logged: np.ndarray) -> list[Part]:
    """The rows of the view a graph covering ids up to `hi`, minus `logged`, lacks (each part's
    ids ascend: found by bisection, not by a pass over all ids)."""
    parts = []
    for p in view.parts:
        at = np.searchsorted(p.ids, logged)
        inside = at < len(p.ids)
        at = at[inside][np.asarray(p.ids[at[inside]]) == logged[inside]]
        rows = np.union1d(at, np.arange(np.searchsorted(p.ids, hi, side="right"), len(p.ids)))
        if p.keep is not None and len(rows):
            rows = rows[p.keep[rows]]
        if len(rows):
            parts.append(Part(np.asarray(p.ids[rows]), np.asarray(p.matrix[rows])))
    return parts


def _tuned(index):
    """A restored graph with this module's expansions: usearch's file keeps neither (a restored
    index searched at its default 64, which gave recall@10 0.975 at 10^6 against 0.9995)."""
    index.expansion_add, index.expansion_search = EXPANSION_ADD, EXPANSION_SEARCH
    return index


def _new_index(dim: int):
    from usearch.index import Index

    return Index(ndim=dim, metric="ip", dtype="f16", connectivity=CONNECTIVITY,
                 expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)


def update(conn: sqlite3.Connection, store: Store, token: str, digest: str, view: Vectors
           ) -> Graph | None:
    """Build or extend the graph to cover `view` (inside the read transaction it came from)."""
    if not available() or view.rows < min_rows():
        return None
    from usearch.index import Index

    old = find(store, token, digest)
    if old is not None and old.log <= view.log:
        if (old.hi, old.log) == (max(view.hi, _top(view)), view.log):
            return old
        index = _tuned(Index.restore(str(old.path)))
        logged = _logged(conn, view.model, old.log)
        gone = [int(i) for i in logged if index.contains(int(i))]
        if gone:
            index.remove(np.array(gone, dtype=np.uint64))
        parts = _uncovered(view, old.hi, logged)
    else:
        old, index, parts = None, _new_index(view.dim), [
            Part(p.ids if p.keep is None else p.ids[p.keep],
                 p.matrix if p.keep is None else p.matrix[p.keep]) for p in view.parts]
    total = sum(len(p.ids) for p in parts)
    if total > ADD_BLOCK:
        sys.stderr.write(f"audio: building the approximate-search graph ({total:,} vectors)\n")
    for p in parts:
        for start in range(0, len(p.ids), ADD_BLOCK):
            index.add(p.ids[start:start + ADD_BLOCK].astype(np.uint64),
                      np.asarray(p.matrix[start:start + ADD_BLOCK], dtype=np.float32))
    hi = max(view.hi, _top(view))
    target = folder(store) / f"{digest}.{token[:8]}.{hi}.{view.log}.usearch"
    with new_file(target, replace=True) as draft:
        index.save(str(draft.path))
    for name in os.listdir(folder(store)):
        path = folder(store) / name
        if name.startswith(digest + ".") and name.endswith(".usearch") and path != target:
            try:
                path.unlink()
            except OSError:
                pass
    return Graph(target, hi, view.log)


def _top(view: Vectors) -> int:
    return max((int(p.ids[-1]) for p in view.parts if len(p.ids)), default=0)


def lookup(view: Vectors, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The current vectors of these recording ids (ids no longer there are left out)."""
    found_ids, found = [], []
    for p in view.parts:
        if not len(p.ids) or not len(ids):
            continue
        at = np.clip(np.searchsorted(p.ids, ids), 0, len(p.ids) - 1)
        hit = p.ids[at] == ids
        if p.keep is not None:
            hit &= p.keep[at]
        rows = at[hit]
        if len(rows):
            order = np.argsort(rows)
            found_ids.append(ids[hit][order])
            found.append(np.asarray(p.matrix[rows[order]]))
    if not found:
        return np.zeros(0, np.int64), np.zeros((0, view.dim), np.float32)
    return np.concatenate(found_ids), np.concatenate(found)


@dataclass
class Opened:
    """A graph mapped for search, and the ids logged since it was written."""

    graph: Graph
    index: object
    logged: np.ndarray
    uncovered: list[Part]  # rows of the view the graph lacks


def open_graph(conn: sqlite3.Connection, view: Vectors, graph: Graph) -> Opened:
    """Map the graph file (not read into memory) and list what changed since (in a read)."""
    from usearch.index import Index

    logged = _logged(conn, view.model, graph.log)
    return Opened(graph, _tuned(Index.restore(str(graph.path), view=True)), logged,
                  _uncovered(view, graph.hi, logged))


def candidates(opened: Opened, view: Vectors, queries: np.ndarray, k: int
               ) -> tuple[list[np.ndarray], list[Part]]:
    """Per query, the recording ids the graph proposes (still current), and the parts of the
    view the graph does not cover, to be searched exactly."""
    matches = opened.index.search(queries, max(4 * k, 40) + len(opened.logged), threads=1)
    keys = np.atleast_2d(matches.keys).astype(np.int64)
    # One query gives a Matches (its keys are the found ones), many a BatchMatches.
    counts = np.atleast_1d(getattr(matches, "counts", keys.shape[1]))
    proposed = []
    for row, count in zip(keys, counts, strict=True):
        ids = row[:count]
        proposed.append(ids[~np.isin(ids, opened.logged)])
    return proposed, opened.uncovered
