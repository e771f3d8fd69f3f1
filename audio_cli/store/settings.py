"""How a store's vectors were made (voice-activity detection, precision) and the rules for
adding or querying vectors made otherwise.

Each exemplar and recording row records `vad` (0 without voice-activity detection; with it,
the version of the rule that made the speech regions, frontend.vad.RULE_VERSION: 1 up to
issue 27, 2 since; NULL: not recorded, exemplars enrolled before schema 3) and `precision`
(float32 or int8); vector_settings counts them per model. Rules, per model and table:
- VAD: vectors with and without voice-activity detection embed different input (the pauses
  and noise, or not), so `enroll`/`index` refuse to add one kind where the other is stored
  (UsageError, exit 2); a query made the other way is answered with a warning.
- VAD rule: vectors made with an earlier rule embed the same speech less its quiet onsets and
  endings (rule 1 kept a median 78 % of an utterance, the current rule all of it), so adding
  or querying with the current rule where earlier ones are stored is allowed, with a warning
  that says how to bring the store up to date.
- precision: int8 and float32 vectors of one model embed the same input and agree to about
  0.99 cosine, so adding or querying across them is allowed, with a warning.
"""

from __future__ import annotations

import sqlite3
import warnings
from dataclasses import dataclass

from audio_cli.frontend.vad import RULE_VERSION
from engines.errors import UsageError

KINDS = ("exemplars", "recordings")


@dataclass(frozen=True)
class Made:
    """How a vector is made: with voice-activity detection or not, at which precision."""

    vad: bool = False
    precision: str = "float32"

    @property
    def vad_column(self) -> int:
        """The value of the `vad` column for a vector made so: 0, or the VAD rule version."""
        return RULE_VERSION if self.vad else 0


@dataclass(frozen=True)
class Recorded:
    """The settings a store holds for one model's vectors in one table."""

    vad: frozenset[bool]  # the VAD settings recorded (unrecorded rows are left out)
    precision: frozenset[str]
    rows: int
    rules: frozenset[int] = frozenset()  # the VAD rule versions of the rows made with VAD

    def older_rules(self) -> frozenset[int]:
        """The VAD rule versions recorded other than the current one."""
        return self.rules - {RULE_VERSION}

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
                    frozenset(p for _, p, _ in rows), sum(n for _, _, n in rows),
                    frozenset(v for v, _, _ in rows if v > 0))


def rule_warning(store: Recorded, kind: str, model_name: str, made: Made,
                 command: str) -> str | None:
    """A warning when `made` uses the current VAD rule and the store holds vectors of an
    earlier one (None otherwise), saying how to replace them."""
    older = store.older_rules()
    if not made.vad or not older:
        return None
    versions = ", ".join(str(v) for v in sorted(older))
    return (f"some of the store's {kind} of {model_name} were made with an earlier "
            f"voice-activity rule (version {versions}, which dropped quiet onsets and "
            f"endings), this {command} uses version {RULE_VERSION}; scores across "
            f"them differ slightly: {UPDATE[kind]}")


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
    said = [rule_warning(store, kind, model_name, made, command)]
    if store.precision and made.precision not in store.precision:
        said.append(f"the store's {kind} of {model_name} are {store.precision_text()}, these "
                    f"{made.precision}; int8 and float32 vectors of one model agree to about "
                    "0.99 cosine, so scores across them differ slightly")
    said = [w for w in said if w]
    return "; ".join(said) if said else None


# How a store's vectors of an earlier VAD rule are replaced, per table.
UPDATE = {"exemplars": "remove the speakers (audio speakers remove NAME) and enroll their "
                       "files again with --vad to update them",
          "recordings": "index the files again with --vad to update them (it re-embeds them)"}


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
    elif made.vad and store.older_rules():
        differs.append(("rule", "with an earlier voice-activity rule",
                        f"with rule {RULE_VERSION}"))
    if store.precision and store.precision != {made.precision}:
        differs.append(("precision", f"at {store.precision_text()}", f"at {made.precision}"))
    if not differs:
        return None
    stored = ", ".join(s for _, s, _ in differs)
    query = ", ".join(q for _, _, q in differs)
    why = {"vad": "voice-activity detection changes what is embedded, so scores are not those "
                  "of vectors made alike",
           "rule": "the earlier rule dropped quiet onsets and endings, so scores differ "
                   f"slightly; {UPDATE[kind]}",
           "precision": "int8 and float32 vectors agree to about 0.99 cosine"}[differs[0][0]]
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
