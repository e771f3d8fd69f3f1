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
from engines.files import new_file

MAGIC = b"AUDVEC1\n"
HEADER_BYTES = 4096
MAX_SEGMENTS = 8  # more than this many in a chain and the next sync merges them into one
IN_CHUNK = 500  # ids per `IN (...)` query
STREAM_ROWS = 8192  # rows copied at a time from SQLite into a new segment


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
    tail_rows: int = 0  # rows beyond the chain counted but not read (sync streams them)


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
                log: int, tail: bool = True) -> Vectors | None:
    """The chain's vectors brought up to date from SQLite, or None if they do not add up.
    Without `tail`, the rows beyond the chain are counted, not read (view.parts ends with an
    empty part; `tail_rows` says how many there are)."""
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
    if tail:
        rest = _rows(conn, "SELECT id, vector FROM recordings WHERE id > ? AND +model_id = ?",
                     [hi, model], dim)
        beyond = 0
    else:
        rest = (np.zeros(0, np.int64), np.zeros((0, dim), np.float32))
        beyond = _tail_rows(conn, model, hi)
    parts += [Part(*redone), Part(*rest)]
    rows = sum(len(p.ids) if p.keep is None else int(p.keep.sum()) for p in parts) + beyond
    count = conn.execute("SELECT rows FROM vector_counts WHERE model_id = ?",
                         (model,)).fetchone()
    if count is None or rows != count[0]:
        return None
    return Vectors(parts=parts, source="file", rows=rows, dim=dim, model=model, log=log, hi=hi,
                   dirty=dirty, tail_rows=beyond)


def _tail_rows(conn: sqlite3.Connection, model: int, hi: int) -> int:
    """How many of the model's recordings have an id above `hi` (beyond a chain)."""
    return int(conn.execute("SELECT count(*) FROM recordings WHERE id > ? AND +model_id = ?",
                            (hi, model)).fetchone()[0])


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
    try:
        with new_file(target) as draft, open(draft.path, "wb") as handle:
            handle.write(_header(meta))
            handle.write(np.ascontiguousarray(ids, dtype="<i8").tobytes())
            for start in range(0, len(matrix), 65536):
                handle.write(np.ascontiguousarray(matrix[start:start + 65536],
                                                  dtype="<f4").tobytes())
            _sync(handle)
    except FileExistsError:
        return None
    return target


def _sync(handle) -> None:
    handle.flush()
    os.fsync(handle.fileno())


def _header(meta: dict) -> bytes:
    head = MAGIC + json.dumps(meta).encode()
    return head + b" " * (HEADER_BYTES - len(head) - 1) + b"\n"


def _stream_segment(conn: sqlite3.Connection, store: Store, digest: str, seq: int,
                    token: str, *, lo: int, log: int, model: int, rows: int,
                    dim: int) -> Path | None:
    """Publish one segment of the model's recordings with ids above `lo`, copied from SQLite
    a block at a time (memory does not grow with the rows); None if the rows are not `rows`
    (SQLite changed under a caller outside a transaction) or another process published that
    name first."""
    target = folder(store) / f"{digest}-{seq:08d}.vec"
    vectors_at = HEADER_BYTES + 8 * rows
    written, hi = 0, lo
    try:
        with new_file(target) as draft, open(draft.path, "wb") as handle:
            cursor = conn.execute("SELECT id, vector FROM recordings WHERE id > ? AND "
                                  "+model_id = ? ORDER BY id", (lo, model))
            while block := cursor.fetchmany(STREAM_ROWS):
                if written + len(block) > rows:
                    draft.abandon()
                    return None
                ids = np.fromiter((r[0] for r in block), dtype="<i8", count=len(block))
                matrix = b"".join(r[1] for r in block)
                if len(matrix) != len(block) * 4 * dim:
                    from engines.errors import UsageError
                    raise UsageError(f"stored vectors do not have {dim} values")
                handle.seek(HEADER_BYTES + 8 * written)
                handle.write(ids.tobytes())
                handle.seek(vectors_at + 4 * dim * written)
                handle.write(matrix)
                written, hi = written + len(block), int(ids[-1])
            if written != rows:
                draft.abandon()
                return None
            handle.seek(0)
            handle.write(_header({"token": token, "digest": digest, "dim": dim, "seq": seq,
                                  "lo": lo, "hi": hi, "log": log, "rows": rows}))
            _sync(handle)
    except FileExistsError:
        return None
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
        streamed = _stream(conn, store, digest, dim, model=model, state=state,
                           segments=segments)
        if streamed is not None:
            return streamed
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


def _stream(conn: sqlite3.Connection, store: Store, digest: str, dim: int, *, model: int,
            state: tuple[str, int], segments: list[Segment]) -> Vectors | None:
    """The two common cases of `sync`, copied from SQLite a block at a time instead of read
    into memory (a bulk load of 10^6 rows would otherwise hold them all): no chain yet (a new
    store: one base segment of everything), or new rows beyond an unchanged chain with room
    for one more segment. None for the other cases (changed rows, a merge), which `sync` does
    in memory, or when the files cannot be written."""
    token, log = state
    view = _from_chain(conn, segments, model, dim, log, tail=False) if segments else None
    if segments and (view is None or view.dirty or not view.tail_rows
                     or len(segments) >= MAX_SEGMENTS):
        return None
    lo = view.hi if view is not None else 0
    rows = view.tail_rows if view is not None else _tail_rows(conn, model, 0)
    seq = max([s for s, _ in _files(store, digest)], default=0) + 1
    try:
        folder(store).mkdir(exist_ok=True)
        path = _stream_segment(conn, store, digest, seq, token, lo=lo, log=log, model=model,
                               rows=rows, dim=dim)
    except OSError:
        return None
    written = path and _read_segment(path, token, digest, dim)
    if not written:
        return None
    if view is None:  # a new base: older files of this model are replaced
        _remove_older(store, digest, seq)
        return Vectors(parts=[Part(written.ids, written.matrix)], source="file", rows=rows,
                       dim=dim, model=model, log=log, hi=written.hi)
    view.parts[-1] = Part(written.ids, written.matrix)
    view.hi, view.tail_rows = written.hi, 0
    return view


def _remove_older(store: Store, digest: str, seq: int) -> None:
    """Delete the segments a new base segment replaces (readers that mapped them keep them)."""
    for other, path in _files(store, digest):
        if other < seq:
            try:
                path.unlink()
            except OSError:
                pass  # still mapped on a system that cannot delete it: removed next time
