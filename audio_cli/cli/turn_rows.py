"""An input's diarization and its records, shared by `audio diarize` on one machine
(cli/diarize.py) and on Ray (cli/diarize_ray.py): the outcome of each input, its JSON
records, and the Arrow schema of the turn rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from audio_cli.cli import messages
from audio_cli.cli.outcomes import Outcome, Reporter
from audio_cli.diarization.activity import overlapped
from audio_cli.diarization.turns import Turn
from audio_cli.frontend.inputs import STDIN, source_name
from engines.errors import EngineError, InputAudioError

if TYPE_CHECKING:
    from audio_cli.diarization.pipeline import Diarizer


@dataclass(frozen=True)
class Diarized(Outcome):
    """An input's outcome with its turns (None for a failed input)."""

    turns: list[Turn] | None = None
    scores: dict[str, float | None] | None = None  # with --db: each label's match score


def outcomes(diarizer: Diarizer | None, items, reporter: Reporter, max_duration: float):
    """One Outcome (with `turns`) per input, in order, each decoded as it is diarized; a
    file without speech warns, one longer than `max_duration` seconds fails."""
    from audio_cli.frontend.audio import open_audio

    for item in items:
        name = source_name(item.path)
        if item.error is not None:
            yield Diarized(name, error=item.error)
            continue
        try:
            source = open_audio(item.path, diarizer.sample_rate, max_duration)
            result = diarizer.diarize(source, uri_of(item.path))
        except (InputAudioError, EngineError) as exc:
            yield Diarized(name, error=exc)
            continue
        if not result.turns:
            messages.warning(f"{name}: no speech found; no turns", reporter.line)
        yield Diarized(name, turns=result.turns, scores=result.scores)


def uri_of(path: str) -> str:
    """The recording's name in RTTM: the file's stem (`stdin` for -)."""
    return "stdin" if path == STDIN else Path(path).stem


def records(outcome: Outcome) -> list[dict]:
    """The JSON records of an input: one per turn (file, start, end, speaker, overlap; with
    --db the score of the speaker's match, null for one left anonymous), or its error."""
    if outcome.error is not None:
        return [{"file": outcome.file, "error": outcome.message}]
    flags = overlapped(outcome.turns)
    rows = [{"file": outcome.file, "start": t.start, "end": t.end, "speaker": t.speaker,
             "overlap": flag} for t, flag in zip(outcome.turns, flags, strict=True)]
    if outcome.scores is not None:
        for row in rows:
            row["score"] = outcome.scores.get(row["speaker"])
    return rows


def json_records(outcome: Outcome) -> str:
    return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records(outcome))


RAY_KEYS = ("size", "mtime_ns", "settings")  # columns of --ray rows (cli/diarize_ray.py)


def turn_schema(scores: bool = False, keys: bool = False):
    """The Arrow schema of turn rows: file, start, end, speaker, overlap, [score with --db],
    error; with `keys` (--ray) also the file's size and mtime_ns and the settings digest."""
    import pyarrow as pa

    schema = pa.schema([("file", pa.string()), ("start", pa.float64()), ("end", pa.float64()),
                        ("speaker", pa.string()), ("overlap", pa.bool_()),
                        ("error", pa.string())])
    if scores:
        schema = schema.insert(5, pa.field("score", pa.float64()))
    if keys:
        for name, kind in zip(RAY_KEYS, (pa.int64(), pa.int64(), pa.string()), strict=True):
            schema = schema.append(pa.field(name, kind))
    return schema


def turn_table(rows: list[dict], schema):
    """Rows (`records`' dicts) as an Arrow table of `schema` (a missing column is null)."""
    import pyarrow as pa

    return pa.table({name: [r.get(name) for r in rows] for name in schema.names},
                    schema=schema)
