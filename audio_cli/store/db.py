"""The speaker store: one SQLite file (WAL, busy timeout, versioned schema) holding vectors.

Every vector row points at a `models` row (name, weights digest, dimension, front-end), so
vectors of different models are never mixed, and records how it was made (`vad`, `precision`;
the rules for mixing them are in store/settings.py). Writes run in short `BEGIN IMMEDIATE`
transactions: a killed process loses at most the transaction it was in.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from engines.errors import AudioCliError, DiskError

DB_ENV = "AUDIO_DB"
DB_FILE = "store.sqlite3"
APPLICATION_ID = 0x41554443  # "AUDC": marks the file as an audio store
BUSY_TIMEOUT_S = 60.0
SQLITE_HEADER = b"SQLite format 3\x00"
# Files SQLite keeps beside a store (WAL mode and rollback journal).
SIDE_FILES = ("-wal", "-shm", "-journal")
# SQLite's primary result codes for a full disk and a failed read or write
# (https://www.sqlite.org/rescode.html): the user's condition, said like an OSError's.
SQLITE_DISK_ERRORS = {13: errno.ENOSPC, 10: errno.EIO}
NEARLY_FULL = 1 << 20  # bytes: an I/O error with less free than this is the full disk

# Trigger bodies keeping vector_settings (schema 3) in step with a table's rows.
_SETTINGS_ADD = """INSERT INTO vector_settings (kind, model_id, vad, precision, rows)
                SELECT '{table}', new.model_id, coalesce(new.vad, -1), new.precision, 0
                WHERE NOT EXISTS (SELECT 1 FROM vector_settings WHERE kind = '{table}'
                    AND model_id = new.model_id AND vad = coalesce(new.vad, -1)
                    AND precision = new.precision);
                UPDATE vector_settings SET rows = rows + 1 WHERE kind = '{table}'
                    AND model_id = new.model_id AND vad = coalesce(new.vad, -1)
                    AND precision = new.precision;"""
_SETTINGS_DROP = """UPDATE vector_settings SET rows = rows - 1 WHERE kind = '{table}'
                    AND model_id = old.model_id AND vad = coalesce(old.vad, -1)
                    AND precision = old.precision;
                DELETE FROM vector_settings WHERE rows <= 0;"""

# Schema migrations: MIGRATIONS[v] takes a store from user_version v to v + 1.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE models (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL,
            digest TEXT NOT NULL UNIQUE,
            dim INTEGER NOT NULL,
            frontend TEXT NOT NULL)""",
        """CREATE TABLE speakers (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created TEXT NOT NULL)""",
        """CREATE TABLE exemplars (
            id INTEGER PRIMARY KEY,
            speaker_id INTEGER NOT NULL REFERENCES speakers(id) ON DELETE CASCADE,
            model_id INTEGER NOT NULL REFERENCES models(id),
            engine TEXT NOT NULL,
            source TEXT NOT NULL,
            duration REAL NOT NULL,
            created TEXT NOT NULL,
            vector BLOB NOT NULL,
            UNIQUE (speaker_id, model_id, source))""",
        """CREATE TABLE recordings (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            model_id INTEGER NOT NULL REFERENCES models(id),
            engine TEXT NOT NULL,
            duration REAL NOT NULL,
            created TEXT NOT NULL,
            vector BLOB NOT NULL,
            UNIQUE (model_id, path))""",
        """CREATE TABLE thresholds (
            model_id INTEGER PRIMARY KEY REFERENCES models(id),
            value REAL NOT NULL,
            method TEXT NOT NULL,
            created TEXT NOT NULL)""",
    ],
    # The vector files beside the store (store/vectors.py) trust SQLite through these: a token
    # naming this store, a log of every recording whose vector was deleted or replaced, and
    # each model's row count (kept by triggers, so any writer keeps them right; no OR IGNORE in
    # them: an outer statement's conflict policy would override it).
    [
        """CREATE TABLE vector_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            token TEXT NOT NULL)""",
        "INSERT INTO vector_state (id, token) VALUES (1, lower(hex(randomblob(16))))",
        """CREATE TABLE vector_log (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            model_id INTEGER NOT NULL,
            recording_id INTEGER NOT NULL)""",
        """CREATE TABLE vector_counts (
            model_id INTEGER PRIMARY KEY,
            rows INTEGER NOT NULL)""",
        """INSERT INTO vector_counts (model_id, rows)
            SELECT model_id, count(*) FROM recordings GROUP BY model_id""",
        """CREATE TRIGGER recordings_added AFTER INSERT ON recordings BEGIN
            INSERT INTO vector_counts (model_id, rows) SELECT new.model_id, 0
                WHERE NOT EXISTS (SELECT 1 FROM vector_counts WHERE model_id = new.model_id);
            UPDATE vector_counts SET rows = rows + 1 WHERE model_id = new.model_id;
            END""",
        """CREATE TRIGGER recordings_deleted AFTER DELETE ON recordings BEGIN
            INSERT INTO vector_log (model_id, recording_id) VALUES (old.model_id, old.id);
            UPDATE vector_counts SET rows = rows - 1 WHERE model_id = old.model_id;
            END""",
        """CREATE TRIGGER recordings_changed AFTER UPDATE OF id, model_id, vector ON recordings
            BEGIN
            INSERT INTO vector_log (model_id, recording_id) VALUES (old.model_id, old.id);
            INSERT INTO vector_log (model_id, recording_id) SELECT new.model_id, new.id
                WHERE new.model_id != old.model_id OR new.id != old.id;
            UPDATE vector_counts SET rows = rows - 1 WHERE model_id = old.model_id;
            INSERT INTO vector_counts (model_id, rows) SELECT new.model_id, 0
                WHERE NOT EXISTS (SELECT 1 FROM vector_counts WHERE model_id = new.model_id);
            UPDATE vector_counts SET rows = rows + 1 WHERE model_id = new.model_id;
            END""",
    ],
    # How each vector was made: `vad` 0 without voice-activity detection, with it the VAD
    # rule's version (1 up to issue 27, then frontend.vad.RULE_VERSION), NULL not
    # recorded (exemplars enrolled before schema 3, when enroll already took --vad; index did
    # not, so older recordings are 0); `precision` of the network, float32 before schema 3.
    # vector_settings counts the rows of each (table, model, vad, precision), kept by
    # triggers like vector_counts, so a command reads a store's settings without a scan.
    [
        "ALTER TABLE exemplars ADD COLUMN vad INTEGER",
        "ALTER TABLE exemplars ADD COLUMN precision TEXT NOT NULL DEFAULT 'float32'",
        "ALTER TABLE recordings ADD COLUMN vad INTEGER DEFAULT 0",
        "ALTER TABLE recordings ADD COLUMN precision TEXT NOT NULL DEFAULT 'float32'",
        """CREATE TABLE vector_settings (
            kind TEXT NOT NULL,
            model_id INTEGER NOT NULL,
            vad INTEGER NOT NULL,
            precision TEXT NOT NULL,
            rows INTEGER NOT NULL,
            PRIMARY KEY (kind, model_id, vad, precision))""",
        *(statement for table in ("exemplars", "recordings") for statement in (
            f"""INSERT INTO vector_settings (kind, model_id, vad, precision, rows)
                SELECT '{table}', model_id, coalesce(vad, -1), precision, count(*)
                FROM {table} GROUP BY model_id, coalesce(vad, -1), precision""",
            f"""CREATE TRIGGER {table}_settings_added AFTER INSERT ON {table} BEGIN
                {_SETTINGS_ADD.format(table=table)}
                END""",
            f"""CREATE TRIGGER {table}_settings_deleted AFTER DELETE ON {table} BEGIN
                {_SETTINGS_DROP.format(table=table)}
                END""",
            f"""CREATE TRIGGER {table}_settings_changed
                AFTER UPDATE OF model_id, vad, precision ON {table} BEGIN
                {_SETTINGS_DROP.format(table=table)}
                {_SETTINGS_ADD.format(table=table)}
                END""")),
    ],
]
# A read-only store of an older schema that only lacks these tables is still read (search then
# reads its vectors from SQLite).
READABLE_VERSIONS = (1, 2, 3)
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(AudioCliError):
    """The speaker store (--db) cannot be used: foreign, corrupt, newer schema, locked."""

    kind = "store"


def default_db_path() -> Path:
    """$AUDIO_DB, else `audio/store.sqlite3` in the platform's per-user data directory."""
    if os.environ.get(DB_ENV):
        return Path(os.environ[DB_ENV]).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    else:
        xdg = os.environ.get("XDG_DATA_HOME", "")
        base = Path(xdg) if os.path.isabs(xdg) else home / ".local" / "share"
    return base / "audio" / DB_FILE


def now() -> str:
    """The current UTC time as ISO 8601 (seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pack(vector: np.ndarray) -> bytes:
    """A vector as little-endian float32 bytes."""
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def unpack(blob: bytes, dim: int) -> np.ndarray:
    """Bytes from `pack` back to a (dim,) float32 vector; refuses a wrong length."""
    vector = np.frombuffer(blob, dtype="<f4")
    if vector.shape != (dim,):
        raise StoreError(f"a stored vector has {vector.size} values, expected {dim}")
    return vector


def _nearly_full(folder: Path) -> bool:
    """True if the file system of `folder` has less than NEARLY_FULL bytes free for us."""
    try:
        st = os.statvfs(folder)
    except (AttributeError, OSError):  # no statvfs (Windows)
        return False
    return st.f_bavail * st.f_frsize < NEARLY_FULL


def _check_file(path: Path) -> None:
    """Refuse a path that is not a (possibly empty) SQLite file, before SQLite touches it."""
    if path.is_dir():
        raise StoreError(f"{path}: is a directory, not an audio store")
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StoreError(f"{path}: cannot read the store ({exc.strerror})") from None
    if header != SQLITE_HEADER:
        raise StoreError(f"{path}: not an audio store (not an SQLite database); left untouched")


class Store:
    """An open store. Use `read()` / `write()` as context managers around queries.

    `readonly` opens an existing store without ever writing to it (no WAL switch, no schema
    upgrade, no -shm file created), so it can be read from a read-only file, folder or file
    system; `write()` on it is refused.
    """

    def __init__(self, path: str | os.PathLike | None = None, create: bool = True,
                 readonly: bool = False):
        self.path = Path(path).expanduser() if path is not None else default_db_path()
        self.readonly = readonly
        _check_file(self.path)
        # A store this command creates: removed again if the command fails before it holds
        # anything (`discard_if_new`), so a failed run leaves no empty store behind.
        self.created = not self.path.exists()
        self._folders_before = {p for p in self._beside() if p.exists()}
        if self.created:
            if readonly or not create:
                raise StoreError(f"{self.path}: no such store (enroll or index something first)")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.path.parent}: cannot create ({exc.strerror})") from None
        try:
            self._open()
        except BaseException:
            self.discard_if_new()
            raise

    def _open(self) -> None:
        readonly = self.readonly
        self.conn = None
        self.conn = self._connect("mode=ro") if readonly else self._connect()
        if readonly and not self._readable():
            # A WAL store whose -shm file is missing in a folder that cannot be written:
            # SQLite can read only the main file then (immutable), not the -wal.
            self.conn.close()
            self.conn = self._connect("immutable=1")
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists() and wal.stat().st_size:
                warnings.warn(f"{self.path} is read-only here and {wal.name} cannot be read "
                              "with it; the latest changes may be missing", stacklevel=2)
        with self._errors():
            self.conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            self._check_identity()
            if readonly:
                version = self.conn.execute("PRAGMA user_version").fetchone()[0]
                if version not in READABLE_VERSIONS:
                    raise StoreError(f"{self.path}: an older store that must be upgraded by a "
                                     "command that writes to it, which cannot run here")
                return
            if self.conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                self.conn.execute("PRAGMA journal_mode = WAL")
            self._migrate()
            self.conn.execute("PRAGMA foreign_keys = ON")
            # A row an INSERT OR REPLACE displaces then fires the delete trigger (vector_log).
            self.conn.execute("PRAGMA recursive_triggers = ON")

    def _connect(self, uri_mode: str | None = None) -> sqlite3.Connection:
        try:
            if uri_mode is None:
                return sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            uri = f"{self.path.absolute().as_uri()}?{uri_mode}"
            return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the store ({exc})") from None

    def _readable(self) -> bool:
        try:
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.DatabaseError as exc:
            return "unable to open" not in str(exc)  # others: said by the checks that follow
        return True

    def close(self) -> None:
        """Close the connection (a WAL checkpoint happens when the last one closes)."""
        if self.conn is not None:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, kind, error, trace) -> None:
        if kind is None:
            self.close()
        else:
            self.discard_if_new()

    def _beside(self) -> list[Path]:
        """The files and folder a store keeps beside its file (SQLite's, vector files)."""
        return [*(self.path.with_name(self.path.name + s) for s in SIDE_FILES),
                self.path.with_name(self.path.name + ".vectors")]

    def _holds_nothing(self) -> bool:
        """True if no speaker, exemplar or recording is in the store (or it cannot be read)."""
        try:
            return not self.conn.execute(
                "SELECT EXISTS (SELECT 1 FROM speakers) OR EXISTS (SELECT 1 FROM recordings)"
            ).fetchone()[0]
        except (sqlite3.Error, AttributeError):  # no tables yet, a broken file, no connection
            return True

    def discard_if_new(self) -> None:
        """Close; and if this command created the store and it still holds nothing (a command
        that failed before committing anything), remove it with its side files, so a failed
        command leaves no new store behind. A store that existed before is never removed: its
        open transaction was rolled back by `write()`."""
        empty = self.created and self._holds_nothing()
        self.close()
        if not empty:
            return
        for path in [self.path, *self._beside()]:
            if path in self._folders_before:
                continue
            try:
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            except OSError:
                pass  # best effort: the failure itself has been said

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            message = str(exc)
            code = SQLITE_DISK_ERRORS.get(getattr(exc, "sqlite_errorcode", -1) & 0xFF)
            if code is None:  # Pythons before 3.11 do not give the result code
                code = {"database or disk is full": errno.ENOSPC,
                        "disk I/O error": errno.EIO}.get(message)
            if code == errno.EIO and _nearly_full(self.path.parent):
                code = errno.ENOSPC  # SQLite says I/O error when its -shm cannot grow
            if code is not None:
                raise DiskError(f"{self.path}: {os.strerror(code).lower()}; the unfinished "
                                "change was rolled back") from None
            if "malformed" in message or "not a database" in message:
                message = f"the store is corrupt ({message}); left untouched"
            elif "readonly" in message or "unable to open" in message:
                message = (f"the store cannot be written here ({message}: the file, its folder "
                           "or the file system is read-only); commands that only read it work")
            raise StoreError(f"{self.path}: {message}") from None

    def _check_identity(self) -> None:
        app_id = self.conn.execute("PRAGMA application_id").fetchone()[0]
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        tables = self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if app_id != APPLICATION_ID and (app_id != 0 or version != 0 or tables):
            raise StoreError(f"{self.path}: an SQLite database of another program, not an audio "
                             "store; left untouched")
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: written by a newer version of audio (schema "
                             f"{version}, this one knows {SCHEMA_VERSION}); upgrade audio")

    def _migrate(self) -> None:
        if self.conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION:
            return
        with self.write() as conn:
            self._check_identity()  # another process may have created it meanwhile
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for step in MIGRATIONS[version:]:
                for statement in step:
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT); rolled back on any error."""
        if self.readonly:
            raise StoreError(f"{self.path}: opened read-only; this command cannot change it")
        with self._errors():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                # SQLite may have rolled back already (a full disk or I/O error can end the
                # transaction: https://www.sqlite.org/lang_transaction.html).
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: a consistent snapshot of the store."""
        with self._errors():
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                self.conn.execute("COMMIT")

    def model_row(self, conn: sqlite3.Connection, name: str, digest: str, dim: int,
                  frontend: str) -> int:
        """The id of the models row for this digest, created if new (inside a write)."""
        row = conn.execute("SELECT id, dim FROM models WHERE digest = ?", (digest,)).fetchone()
        if row is not None:
            if row[1] != dim:
                raise StoreError(f"model {name}: stored with dimension {row[1]}, now {dim}")
            return int(row[0])
        cursor = conn.execute(
            "INSERT INTO models (name, digest, dim, frontend) VALUES (?, ?, ?, ?)",
            (name, digest, dim, frontend))
        return int(cursor.lastrowid)

    def speaker_row(self, conn: sqlite3.Connection, name: str, created: str) -> int:
        """The id of the speaker named `name`, created (with `created`) if new (inside a write)."""
        conn.execute("INSERT OR IGNORE INTO speakers (name, created) VALUES (?, ?)",
                     (name, created))
        return int(conn.execute("SELECT id FROM speakers WHERE name = ?", (name,)).fetchone()[0])

    def find_model(self, conn: sqlite3.Connection, digest: str) -> int | None:
        """The id of the models row for this digest, or None if the store never saw it."""
        row = conn.execute("SELECT id FROM models WHERE digest = ?", (digest,)).fetchone()
        return None if row is None else int(row[0])

    def models_of(self, kind: str) -> list[tuple[str, str]]:
        """(name, weights digest) of every model with vectors in `kind` ("exemplars" or
        "recordings"), by name."""
        if kind not in ("exemplars", "recordings"):
            raise ValueError(kind)
        with self.read() as conn:
            return [(str(n), str(d)) for n, d in conn.execute(
                f"SELECT name, digest FROM models AS m WHERE EXISTS (SELECT 1 FROM {kind} "
                "WHERE model_id = m.id) ORDER BY name, digest")]
