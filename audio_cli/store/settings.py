"""How a store's vectors were made (voice-activity detection, precision) and the rules for
adding or querying vectors made otherwise.

Each exemplar and recording row records `vad` (1, 0, or NULL: not recorded, exemplars enrolled
before schema 3) and `precision` (float32 or int8); vector_settings counts them per model.
Rules, per model and table:
- VAD: vectors with and without voice-activity detection embed different input (the pauses
  and noise, or not), so `enroll`/`index` refuse to add one kind where the other is stored
  (UsageError, exit 2); a query made the other way is answered with a warning.
- precision: int8 and float32 vectors of one model embed the same input and agree to about
  0.99 cosine, so adding or querying across them is allowed, with a warning.
"""

from __future__ import annotations

import sqlite3
import warnings
from dataclasses import dataclass

from engines.errors import UsageError

KINDS = ("exemplars", "recordings")


@dataclass(frozen=True)
class Made:
    """How a vector is made: with voice-activity detection or not, at which precision."""

    vad: bool = False
    precision: str = "float32"


@dataclass(frozen=True)
class Recorded:
    """The settings a store holds for one model's vectors in one table."""

    vad: frozenset[bool]  # the VAD settings recorded (unrecorded rows are left out)
    precision: frozenset[str]
    rows: int

    def vad_text(self) -> str:
        return " and ".join(vad_flag(v) for v in sorted(self.vad))

    def precision_text(self) -> str:
        return " and ".join(sorted(self.precision))


def vad_flag(vad: bool) -> str:
    return "with --vad" if vad else "without --vad"


def recorded(conn: sqlite3.Connection, kind: str, model_id: int | None) -> Recorded:
    """What the store records for `model_id`'s vectors in `kind` (none for a store of schema
    1 or 2 opened read-only: it has no vector_settings)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}")
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                             "name = 'vector_settings'").fetchone()
    rows = [] if model_id is None or not has_table else conn.execute(
        "SELECT vad, precision, rows FROM vector_settings WHERE kind = ? AND model_id = ? "
        "AND rows > 0", (kind, model_id)).fetchall()
    return Recorded(frozenset(bool(v) for v, _, _ in rows if v >= 0),
                    frozenset(p for _, p, _ in rows), sum(n for _, _, n in rows))


def check_adding(conn: sqlite3.Connection, kind: str, model_id: int, model_name: str,
                 made: Made, command: str) -> str | None:
    """Refuse (UsageError) vectors whose VAD setting differs from the stored ones of this
    model; returns a warning when their precision differs, else None."""
    store = recorded(conn, kind, model_id)
    if store.vad and made.vad not in store.vad:
        raise UsageError(
            f"the store's {kind} of {model_name} were made {store.vad_text()}, this {command} "
            f"runs {vad_flag(made.vad)}; vectors with and without voice-activity detection "
            f"are not mixed: {command} {vad_flag(store_vad(store))}, or use another --db")
    if store.precision and made.precision not in store.precision:
        return (f"the store's {kind} of {model_name} are {store.precision_text()}, these "
                f"{made.precision}; int8 and float32 vectors of one model agree to about 0.99 "
                "cosine, so scores across them differ slightly")
    return None


def store_vad(store: Recorded) -> bool:
    """The one VAD setting a store's vectors share (they are never mixed)."""
    return next(iter(store.vad))


def query_warning(conn: sqlite3.Connection, kind: str, model_id: int | None, model_name: str,
                  made: Made) -> str | None:
    """A one-line warning when a query is made otherwise than the stored vectors, else None."""
    store = recorded(conn, kind, model_id)
    differs = []
    if store.vad and made.vad not in store.vad:
        differs.append(("vad", store.vad_text(), vad_flag(made.vad)))
    if store.precision and store.precision != {made.precision}:
        differs.append(("precision", f"at {store.precision_text()}", f"at {made.precision}"))
    if not differs:
        return None
    stored = ", ".join(s for _, s, _ in differs)
    query = ", ".join(q for _, _, q in differs)
    why = ("voice-activity detection changes what is embedded, so scores are not those of "
           "vectors made alike" if differs[0][0] == "vad" else
           "int8 and float32 vectors agree to about 0.99 cosine")
    return f"the store's {kind} of {model_name} were made {stored}, this query {query}; {why}"


def warn_query(store, kind: str, digest: str, model_name: str, made: Made) -> None:
    """query_warning for a store (store.db.Store) and model digest, said on stderr."""
    with store.read() as conn:
        warn(query_warning(conn, kind, store.find_model(conn, digest), model_name, made))


def warn(warning: str | None) -> None:
    """Issue a settings warning (check_adding's, query_warning's), if there is one (the
    command line says it as one `audio: warning:` line)."""
    if warning:
        warnings.warn(warning, stacklevel=2)
