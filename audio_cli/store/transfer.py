"""Export enrolled speakers to a JSON file and import them back (merging by name)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from audio_cli.frontend.vad import RULE_VERSION
from audio_cli.store.checks import vector_problem
from audio_cli.store.db import Store, now, pack, unpack
from audio_cli.store.speakers import check_name
from engines.errors import UsageError
from engines.files import TargetExists, disk_errors, write_new

EXPORT_FORMAT = "audio-speakers"
EXPORT_VERSION = 1


def export_speakers(store: Store, out: Path) -> dict:
    """Write every speaker, exemplar (with how it was made: `vad`, null if not recorded, with
    VAD the rule's version `vad_rule`, and `precision`) and model identity to a new JSON
    file (never overwrites)."""
    if out.exists():
        raise UsageError(f"{out} exists; not overwriting it")
    with store.read() as conn:
        models = {row[0]: {"name": row[1], "digest": row[2], "dim": row[3],
                           "frontend": json.loads(row[4])}
                  for row in conn.execute("SELECT id, name, digest, dim, frontend FROM models")}
        speakers = conn.execute("SELECT id, name, created FROM speakers ORDER BY name").fetchall()
        settings = "vad, precision" if _has_settings(conn) else "NULL, 'float32'"
        exemplars = conn.execute("SELECT speaker_id, model_id, engine, source, duration, created,"
                                 f" vector, {settings} FROM exemplars ORDER BY id").fetchall()
    by_speaker: dict[int, list] = {}
    for sid, mid, engine, source, duration, created, blob, vad, precision in exemplars:
        vector = unpack(blob, models[mid]["dim"])
        by_speaker.setdefault(sid, []).append({
            "model": models[mid]["digest"], "engine": engine, "source": source,
            "duration": duration, "created": created,
            "vad": None if vad is None else bool(vad), **({"vad_rule": vad} if vad else {}),
            "precision": precision,
            "vector": [float(v) for v in vector]})
    document = {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "exported": now(),
        "models": list(models.values()),
        "speakers": [{"name": name, "created": created, "exemplars": by_speaker.get(sid, [])}
                     for sid, name, created in speakers],
    }
    _write_new(out, json.dumps(document, indent=1) + "\n")
    return {"file": str(out), "speakers": len(speakers), "exemplars": len(exemplars)}


def _has_settings(conn) -> bool:
    """True for a store of schema 3 or later (exemplars record vad and precision)."""
    return any(row[1] == "vad" for row in conn.execute("PRAGMA table_info(exemplars)"))


def _write_new(out: Path, text: str) -> None:
    """Write a complete file, linked into place only if nothing is there yet."""
    try:
        with disk_errors(out):  # a full disk: one line naming the file; nothing half-written
            write_new(out, text)
    except TargetExists:
        raise UsageError(f"{out} exists; not overwriting it") from None


def _load_document(path: Path) -> dict:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a speaker export ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != EXPORT_FORMAT:
        raise UsageError(f"{path}: not a speaker export (no \"format\": \"{EXPORT_FORMAT}\")")
    if document.get("version") != EXPORT_VERSION:
        raise UsageError(f"{path}: export version {document.get('version')!r} is not supported")
    return document


def import_speakers(store: Store, path: Path) -> dict:
    """Merge an export into the store in one transaction (same name = same speaker). An
    exemplar without `vad`/`precision` (an older export) is recorded as not known / float32,
    one with `vad` but no `vad_rule` as made by VAD rule 1 (the only one before rules).
    A speaker is created only with at least one exemplar that goes in (or if the export lists
    none for it): one whose every exemplar is refused is not added."""
    document = _load_document(path)
    try:
        models = {m["digest"]: m for m in document["models"]}
        speakers = [(check_name(s["name"]), s.get("created") or now(), s["exemplars"])
                    for s in document["speakers"]]
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{path}: malformed speaker export ({exc})") from None
    added = 0
    refused: list[str] = []
    with store.write() as conn:
        model_ids: dict[str, int] = {}
        for name, created, exemplars in speakers:
            sid = store.speaker_row(conn, name, created) if not exemplars else None
            for ex in exemplars:
                try:
                    model = models[ex["model"]]
                    vector = np.asarray(ex["vector"], dtype=np.float32)
                    vad, precision = ex.get("vad"), ex.get("precision", "float32")
                    rule = ex.get("vad_rule", 1) if vad else 0  # exports before rules: 1
                    if (vad not in (None, True, False) or precision not in ("float32", "int8")
                            or (vad and rule not in range(1, RULE_VERSION + 1))):
                        raise ValueError(f"vad {vad!r}, vad_rule {rule!r}, precision "
                                         f"{precision!r}")
                    values = (str(ex["engine"]), str(ex["source"]), float(ex["duration"]),
                              str(ex["created"]), pack(vector),
                              None if vad is None else rule, precision)
                    dim = int(model["dim"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise UsageError(f"{path}: malformed exemplar of {name!r} ({exc})") from None
                problem = vector_problem(vector, dim)
                if problem is not None:  # refused; the good exemplars still go in
                    refused.append(f"{path}: an exemplar of {name!r} ({ex['source']}) holds "
                                   f"{problem}; refused")
                    continue
                if ex["model"] not in model_ids:
                    model_ids[ex["model"]] = store.model_row(
                        conn, model["name"], model["digest"], dim,
                        json.dumps(model["frontend"], sort_keys=True))
                if sid is None:
                    sid = store.speaker_row(conn, name, created)
                row = (sid, model_ids[ex["model"]], *values)
                added += conn.execute(
                    "INSERT OR IGNORE INTO exemplars (speaker_id, model_id, engine, source, "
                    "duration, created, vector, vad, precision) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                    "?)", row).rowcount
    return {"file": str(path), "speakers": len(speakers), "exemplars_added": added,
            "refused": refused}
