"""Enrolled speakers: enroll exemplars, identify a voice, list/rename/remove, calibrate."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

import numpy as np

from audio_cli.evaluation.metrics import calibration_threshold, trial_scores
from audio_cli.models.registry import default_threshold
from audio_cli.pipeline.handle import ModelHandle
from audio_cli.pipeline.results import EmbeddingResult
from audio_cli.store.checks import vector_problem
from audio_cli.store.db import Store, StoreError, now, pack, unpack
from audio_cli.store.settings import Made, check_adding
from engines.errors import InputAudioError, ModelError, UsageError

SCORINGS = ("mean", "max")


@dataclass(frozen=True)
class Candidate:
    """One enrolled speaker scored against a query."""

    name: str
    score: float  # raw cosine in [-1, 1]
    exemplars: int


@dataclass
class Identification:
    """Speakers ranked by score, and those skipped for having no vector of this model."""

    ranked: list[Candidate]
    skipped: list[str] = field(default_factory=list)


def check_name(name: str) -> str:
    """A speaker name: non-empty, no surrounding spaces, no control characters."""
    if not name or name != name.strip() or any(ord(c) < 32 for c in name):
        raise UsageError(f"invalid speaker name {name!r}")
    return name


def check_enroll(store: Store, identity: ModelHandle, made: Made) -> str | None:
    """Before embedding: refuse exemplars whose VAD setting differs from the stored ones of
    this model; a warning if their precision differs (store.settings)."""
    with store.read() as conn:
        model = store.find_model(conn, identity.digest)
        if model is None:
            return None
        return check_adding(conn, "exemplars", model, identity.name, made, "enroll")


def enroll(store: Store, identity: ModelHandle, name: str, results: list[EmbeddingResult],
           made: Made) -> int:
    """Add exemplars to a speaker (created if new) in one transaction; returns its total.
    Each records `vad` and the identity's precision; a VAD setting other than the stored
    exemplars' of this model is refused (store.settings.check_adding)."""
    check_name(name)
    for r in results:  # all or none, as for a bad file
        problem = vector_problem(r.embedding, identity.dim)
        if problem is not None:
            raise InputAudioError(f"{r.file}: its vector holds {problem}; nothing enrolled")
    with store.write() as conn:
        model = store.model_row(conn, identity.name, identity.digest, identity.dim,
                                identity.frontend)
        check_adding(conn, "exemplars", model, identity.name, made, "enroll")
        speaker = store.speaker_row(conn, name, now())
        for r in results:
            conn.execute(
                "INSERT OR REPLACE INTO exemplars (speaker_id, model_id, engine, source, duration,"
                " created, vector, vad, precision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (speaker, model, r.engine, r.file, r.duration, now(), pack(r.embedding),
                 made.vad_column, made.precision))
        return conn.execute("SELECT count(*) FROM exemplars WHERE speaker_id = ?",
                            (speaker,)).fetchone()[0]


def mismatch_error(conn: sqlite3.Connection, table: str, identity: ModelHandle) -> ModelError:
    """The error for a store whose vectors in `table` all come from other models."""
    names = [r[0] for r in conn.execute(
        f"SELECT DISTINCT m.name FROM {table} t JOIN models m ON m.id = t.model_id")]
    return ModelError(
        f"the store's {table} were embedded with {', '.join(names)}, not with "
        f"{identity.name} (weights {identity.digest}); vectors of different models are never "
        "compared: use the same --model, or embed again with this one")


def exemplar_vectors(store: Store, identity: ModelHandle
                     ) -> tuple[dict[str, np.ndarray], list[str]]:
    """Speaker name -> (k, dim) exemplars of this model; names with none of this model."""
    with store.read() as conn:
        if conn.execute("SELECT count(*) FROM exemplars").fetchone()[0] == 0:
            raise StoreError(f"{store.path}: no speakers enrolled (use `audio enroll`)")
        model = store.find_model(conn, identity.digest)
        rows = [] if model is None else conn.execute(
            "SELECT s.name, e.vector FROM exemplars e JOIN speakers s ON s.id = e.speaker_id "
            "WHERE e.model_id = ? ORDER BY s.name, e.id", (model,)).fetchall()
        if not rows:
            raise mismatch_error(conn, "exemplars", identity)
        everyone = [r[0] for r in conn.execute("SELECT name FROM speakers ORDER BY name")]
    groups: dict[str, list[np.ndarray]] = {}
    for name, blob in rows:
        groups.setdefault(name, []).append(unpack(blob, identity.dim))
    vectors = {name: np.stack(v) for name, v in groups.items()}
    return vectors, [n for n in everyone if n not in vectors]


def speaker_score(exemplars: np.ndarray, query: np.ndarray, scoring: str) -> float:
    """`mean`: cosine with the re-normalised mean of the exemplars; `max`: best exemplar."""
    q = query.astype(np.float64)
    if scoring == "max":
        return float(np.max(exemplars.astype(np.float64) @ q))
    centroid = exemplars.astype(np.float64).mean(axis=0)
    return float(centroid @ q / np.linalg.norm(centroid))


def identify(store: Store, identity: ModelHandle, query: np.ndarray, scoring: str = "mean"
             ) -> Identification:
    """Every enrolled speaker of this model, best first."""
    if scoring not in SCORINGS:
        raise UsageError(f"unknown scoring {scoring!r}; choose one of: {', '.join(SCORINGS)}")
    vectors, skipped = exemplar_vectors(store, identity)
    ranked = [Candidate(name, speaker_score(v, query, scoring), len(v))
              for name, v in vectors.items()]
    ranked.sort(key=lambda c: (-c.score, c.name))
    return Identification(ranked, skipped)


def list_speakers(store: Store) -> list[dict]:
    """Each speaker with its exemplar count per model."""
    with store.read() as conn:
        rows = conn.execute(
            "SELECT s.name, s.created, m.name, count(e.id) FROM speakers s "
            "LEFT JOIN exemplars e ON e.speaker_id = s.id LEFT JOIN models m ON m.id = e.model_id "
            "GROUP BY s.id, m.id ORDER BY s.name, m.name").fetchall()
    speakers: dict[str, dict] = {}
    for name, created, model, count in rows:
        entry = speakers.setdefault(name, {"name": name, "created": created, "exemplars": {}})
        if model is not None:
            entry["exemplars"][model] = count
    return list(speakers.values())


def remove_speaker(store: Store, name: str) -> int:
    """Delete a speaker and its exemplars; returns how many exemplars went."""
    with store.write() as conn:
        row = conn.execute("SELECT id FROM speakers WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UsageError(f"no speaker named {name!r}")
        count = conn.execute("SELECT count(*) FROM exemplars WHERE speaker_id = ?",
                             (row[0],)).fetchone()[0]
        conn.execute("DELETE FROM speakers WHERE id = ?", (row[0],))
        return count


def rename_speaker(store: Store, old: str, new: str) -> None:
    """Rename a speaker; the new name must be free."""
    check_name(new)
    with store.write() as conn:
        if conn.execute("SELECT 1 FROM speakers WHERE name = ?", (new,)).fetchone():
            raise UsageError(f"a speaker named {new!r} already exists")
        if conn.execute("UPDATE speakers SET name = ? WHERE name = ?", (new, old)).rowcount == 0:
            raise UsageError(f"no speaker named {old!r}")


def stored_threshold(store: Store, identity: ModelHandle) -> float | None:
    """The calibrated threshold this store holds for the model, if any."""
    with store.read() as conn:
        row = conn.execute("SELECT t.value FROM thresholds t JOIN models m ON m.id = t.model_id "
                           "WHERE m.digest = ?", (identity.digest,)).fetchone()
    return None if row is None else float(row[0])


def calibrate(store: Store, identity: ModelHandle) -> dict:
    """Equal-error threshold from pairs of enrolled exemplars of this model; stored."""
    vectors, _ = exemplar_vectors(store, identity)
    labels = [name for name, exemplars in vectors.items() for _ in exemplars]
    trials = trial_scores(np.concatenate(list(vectors.values())), labels)
    if len(vectors) < 2 or trials.target.size == 0:
        raise UsageError("calibration needs at least two speakers and one speaker with two or "
                         "more exemplars of this model")
    value, eer = calibration_threshold(trials.target, trials.nontarget)
    with store.write() as conn:
        model = store.model_row(conn, identity.name, identity.digest, identity.dim,
                                identity.frontend)
        conn.execute("INSERT OR REPLACE INTO thresholds (model_id, value, method, created) "
                     "VALUES (?, ?, ?, ?)", (model, value, "equal error rate, exemplar pairs",
                                             now()))
    return {"model": identity.name, "threshold": value, "eer": eer,
            "same_pairs": int(trials.target.size), "different_pairs": int(trials.nontarget.size)}


@dataclass(frozen=True)
class Threshold:
    """A decision threshold and where it came from (option, store or model default)."""

    value: float
    origin: str  # "option", "store", "default"


def check_threshold(value: float) -> float:
    """A threshold must be a cosine: in [-1, 1]."""
    if not -1.0 <= value <= 1.0:
        raise UsageError(f"--threshold must be in [-1, 1] (a raw cosine), got {value:g}")
    return value


def pick_threshold(option: float | None, stored: float | None, model_type: str) -> Threshold:
    """--threshold, else the store's calibrated value, else the model's default."""
    if option is not None:
        return Threshold(check_threshold(option), "option")
    if stored is not None:
        return Threshold(stored, "store")
    return Threshold(default_threshold(model_type), "default")

