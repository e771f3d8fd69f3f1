"""Vector files beside the store: each model's indexed vectors, memory-mapped by search.

SQLite stays the source of truth. `<store>.vectors/` holds, per model digest, a chain of
immutable segment files `<digest>-<seq>.vec` (header, then int64 recording ids in ascending
order, then float32 vectors), each written under a scratch name and published in one step. The
first segment of a chain covers recording ids (0, hi]; each following one continues from its
predecessor's `hi`. Commands that write recordings call `sync`: new rows are appended as a new
segment; deleted or replaced vectors (listed by SQLite triggers in `vector_log`) or too many
segments make one new segment of everything; a chain that does not match SQLite is rebuilt.

Search (`open_vectors`) never trusts the files blindly: in one read transaction it takes the
rows beyond the chain's `hi` and the current vectors of rows logged since the chain was written
from SQLite, masks the logged rows out of the files, and checks the total against SQLite's row
count. A chain that does not add up, or a store without the tables (an older read-only one),
is not used: the vectors are then read from SQLite, as before the files existed.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audio_cli.store.db import Store
from engines.files import publish, scratch_file

MAGIC = b"AUDVEC1\n"
HEADER_BYTES = 4096
MAX_SEGMENTS = 8  # more than this many in a chain and the next sync merges them into one
IN_CHUNK = 500  # ids per `IN (...)` query


@dataclass
class Part:
    """Vectors to search: recording ids (ascending), their matrix, and which rows still count."""

    ids: np.ndarray
    matrix: np.ndarray
    keep: np.ndarray | None = None  # None: every row


@dataclass
class Vectors:
    """One model's vectors as one consistent view of the store."""

    parts: list[Part]
    source: str  # "file" (segments plus rows read from SQLite) or "sqlite"
    rows: int
    dim: int
    model: int  # the models row id
    log: int  # vector_log's last seq when this view was read (0 without the table)
    hi: int = 0  # the chain's highest recording id (0 without one)
    dirty: set[int] = field(default_factory=set)  # ids logged since the chain was written


@dataclass
class Segment:
    path: Path
    seq: int
    lo: int
    hi: int
    log: int
    ids: np.ndarray
    matrix: np.ndarray


def folder(store: Store) -> Path:
    """The folder of vector files beside a store file."""
    return store.path.with_name(store.path.name + ".vectors")


def store_state(conn: sqlite3.Connection) -> tuple[str, int] | None:
    """(token, last vector_log seq), or None for a store without those tables."""
    try:
        token = conn.execute("SELECT token FROM vector_state WHERE id = 1").fetchone()
        log = conn.execute("SELECT max(seq) FROM vector_log").fetchone()[0]
    except sqlite3.OperationalError:  # "no such table": schema 1, opened read-only
        return None
    return (None if token is None else (token[0], int(log or 0)))


def _read_segment(path: Path, token: str, digest: str, dim: int) -> Segment | None:
    """A segment file's header and memory maps, or None if it is not one of this store/model."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(HEADER_BYTES)
        size = path.stat().st_size
        if not head.startswith(MAGIC):
            return None
        meta = json.loads(head[len(MAGIC):].rstrip(b" \n\0"))
        rows = int(meta["rows"])
        if (meta["token"], meta["digest"], int(meta["dim"])) != (token, digest, dim) or \
                size != HEADER_BYTES + rows * (8 + 4 * dim):
            return None
        if rows == 0:
            ids, matrix = np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
        else:
            ids = np.memmap(path, dtype="<i8", mode="r", offset=HEADER_BYTES, shape=(rows,))
            matrix = np.memmap(path, dtype="<f4", mode="r", offset=HEADER_BYTES + 8 * rows,
                               shape=(rows, dim))
        return Segment(path=path, seq=int(meta["seq"]), lo=int(meta["lo"]),
                       hi=int(meta["hi"]), log=int(meta["log"]), ids=ids, matrix=matrix)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _files(store: Store, digest: str) -> list[tuple[int, Path]]:
    try:
        names = os.listdir(folder(store))
    except OSError:
        return []
    found = []
    for name in names:
        stem, dot, ext = name.rpartition(".")
        head, dash, seq = stem.rpartition("-")
        if ext == "vec" and dash and head == digest and seq.isdigit():
            found.append((int(seq), folder(store) / name))
    return sorted(found)


def chain(store: Store, token: str, digest: str, dim: int) -> list[Segment]:
    """The newest segment starting at 0 and the segments that continue it, in order."""
    segments = [s for _, p in _files(store, digest)
                if (s := _read_segment(p, token, digest, dim)) is not None]
    bases = [s for s in segments if s.lo == 0]
    if not bases:
        return []
    linked = [bases[-1]]
    for s in segments:
        if s.seq > linked[-1].seq and s.lo == linked[-1].hi:
            linked.append(s)
    return linked


def _rows(conn: sqlite3.Connection, sql: str, args: list, dim: int
          ) -> tuple[np.ndarray, np.ndarray]:
    rows = conn.execute(sql, args).fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
    if matrix.size != len(rows) * dim:
        from engines.errors import UsageError
        raise UsageError(f"stored vectors do not have {dim} values")
    order = np.argsort(ids, kind="stable")
    return ids[order], matrix.reshape(len(rows), dim)[order]


def _by_ids(conn: sqlite3.Connection, model: int, wanted: list[int], dim: int
            ) -> tuple[np.ndarray, np.ndarray]:
    parts = [_rows(conn, f"SELECT id, vector FROM recordings WHERE +model_id = ? AND id IN "
                         f"({','.join('?' * len(chunk))})", [model, *chunk], dim)
             for chunk in (wanted[i:i + IN_CHUNK] for i in range(0, len(wanted), IN_CHUNK))]
    if not parts:
        return np.zeros(0, np.int64), np.zeros((0, dim), np.float32)
    ids = np.concatenate([p[0] for p in parts])
    order = np.argsort(ids)
    return ids[order], np.concatenate([p[1] for p in parts])[order]


def from_sqlite(conn: sqlite3.Connection, model: int, dim: int, log: int) -> Vectors:
    """Every vector of the model read out of SQLite (no files)."""
    ids, matrix = _rows(conn, "SELECT id, vector FROM recordings WHERE model_id = ?", [model],
                        dim)
    return Vectors([Part(ids, matrix)], "sqlite", len(ids), dim, model, log)


def _from_chain(conn: sqlite3.Connection, segments: list[Segment], model: int, dim: int,
                log: int) -> Vectors | None:
    """The chain's vectors brought up to date from SQLite, or None if they do not add up."""
    since = min(s.log for s in segments)
    hi = segments[-1].hi
    if since > log:  # the files saw changes this store never had: another store's files
        return None
    dirty = {r[0] for r in conn.execute(
        "SELECT DISTINCT recording_id FROM vector_log WHERE seq > ? AND model_id = ?",
        (since, model))}
    parts = []
    for s in segments:
        keep = ~np.isin(s.ids, np.fromiter(dirty, np.int64, len(dirty))) if dirty else None
        parts.append(Part(s.ids, s.matrix, keep))
    redone = _by_ids(conn, model, sorted(i for i in dirty if i <= hi), dim)
    # `+model_id`: walk the rowids past `hi`, not the (model_id, path) index.
    tail = _rows(conn, "SELECT id, vector FROM recordings WHERE id > ? AND +model_id = ?",
                 [hi, model], dim)
    parts += [Part(*redone), Part(*tail)]
    rows = sum(len(p.ids) if p.keep is None else int(p.keep.sum()) for p in parts)
    count = conn.execute("SELECT rows FROM vector_counts WHERE model_id = ?",
                         (model,)).fetchone()
    if count is None or rows != count[0]:
        return None
    return Vectors(parts=parts, source="file", rows=rows, dim=dim, model=model, log=log, hi=hi,
                   dirty=dirty)


def open_vectors(conn: sqlite3.Connection, store: Store, digest: str, dim: int, model: int
                 ) -> Vectors:
    """This model's current vectors: from its vector files where they can be trusted (inside a
    read transaction, so SQLite and the view agree)."""
    state = store_state(conn)
    if state is None:
        return from_sqlite(conn, model, dim, 0)
    token, log = state
    segments = chain(store, token, digest, dim)
    view = _from_chain(conn, segments, model, dim, log) if segments else None
    return view if view is not None else from_sqlite(conn, model, dim, log)


def _write_segment(store: Store, digest: str, seq: int, token: str, *, lo: int, hi: int,
                   log: int, ids: np.ndarray, matrix: np.ndarray) -> Path | None:
    """Publish one segment file; None if another process published that name first."""
    target = folder(store) / f"{digest}-{seq:08d}.vec"
    meta = {"token": token, "digest": digest, "dim": int(matrix.shape[1]), "seq": seq,
            "lo": lo, "hi": hi, "log": log, "rows": len(ids)}
    head = MAGIC + json.dumps(meta).encode()
    scratch = scratch_file(target)
    try:
        with open(scratch, "wb") as handle:
            handle.write(head + b" " * (HEADER_BYTES - len(head) - 1) + b"\n")
            handle.write(np.ascontiguousarray(ids, dtype="<i8").tobytes())
            for start in range(0, len(matrix), 65536):
                handle.write(np.ascontiguousarray(matrix[start:start + 65536],
                                                  dtype="<f4").tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        publish(scratch, target, replace=False)
    except FileExistsError:
        return None
    finally:
        scratch.unlink(missing_ok=True)
    return target


def _merged(view: Vectors) -> tuple[np.ndarray, np.ndarray]:
    ids = np.concatenate([p.ids if p.keep is None else p.ids[p.keep] for p in view.parts])
    matrix = np.concatenate([p.matrix if p.keep is None else p.matrix[p.keep]
                             for p in view.parts])
    order = np.argsort(ids, kind="stable")
    return ids[order], matrix[order]


def sync(store: Store, digest: str, dim: int) -> Vectors | None:
    """Bring this model's vector files in step with SQLite (writers call this after their
    commit); returns the view it wrote from, or None (read-only store, no such model, no
    tables, or a folder that cannot be written: search then reads SQLite)."""
    if store.readonly:
        return None
    with store.read() as conn:
        state = store_state(conn)
        model = store.find_model(conn, digest)
        if state is None or model is None:
            return None
        token, log = state
        segments = chain(store, token, digest, dim)
        view = _from_chain(conn, segments, model, dim, log) if segments else None
        if view is None:
            view, segments = from_sqlite(conn, model, dim, log), []
        tail = view.parts[-1]
        if segments and not view.dirty and not len(tail.ids) and len(segments) <= MAX_SEGMENTS:
            return view  # already in step
        seq = max([s for s, _ in _files(store, digest)], default=0) + 1
        try:
            folder(store).mkdir(exist_ok=True)
            if segments and not view.dirty and len(segments) < MAX_SEGMENTS:
                top = int(tail.ids[-1])
                _write_segment(store, digest, seq, token, lo=view.hi, hi=top, log=log,
                               ids=tail.ids, matrix=tail.matrix)
                view.hi = top
            else:
                ids, matrix = _merged(view)
                top = int(ids[-1]) if len(ids) else 0
                if _write_segment(store, digest, seq, token, lo=0, hi=top, log=log, ids=ids,
                                  matrix=matrix):
                    view = Vectors(parts=[Part(ids, matrix)], source="file", rows=len(ids),
                                   dim=dim, model=model, log=log, hi=top)
                    _remove_older(store, digest, seq)
        except OSError:
            return None
    return view


def _remove_older(store: Store, digest: str, seq: int) -> None:
    """Delete the segments a new base segment replaces (readers that mapped them keep them)."""
    for other, path in _files(store, digest):
        if other < seq:
            try:
                path.unlink()
            except OSError:
                pass  # still mapped on a system that cannot delete it: removed next time
