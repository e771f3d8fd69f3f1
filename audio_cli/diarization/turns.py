"""Speaker turns and the two plain-text files diarization tools exchange: RTTM and UEM.

RTTM (NIST Rich Transcription Time Marked) has one line per turn:
`SPEAKER <uri> <channel> <start> <duration> <NA> <NA> <speaker> <NA> <NA>`, fields split by
white space, times in seconds. The uri names the recording (by convention the file's stem).
UEM has one line per scored region: `<uri> <channel> <start> <end>`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engines.errors import UsageError


@dataclass(frozen=True, order=True)
class Turn:
    """One speaker talking from `start` to `end` seconds in recording `uri`."""

    uri: str
    start: float
    end: float
    speaker: str

    @property
    def duration(self) -> float:
        return self.end - self.start


def _number(text: str, path: Path, line_number: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{path}:{line_number}: {what} {text!r} is not a time in seconds")
    return value


def _lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a text file (UTF-8)") from None
    except OSError as error:
        raise UsageError(f"{path}: cannot read: {error.strerror or error}") from None
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if fields and not fields[0].startswith((";", "#")):
            yield number, fields


def read_rttm(path: Path) -> dict[str, list[Turn]]:
    """The SPEAKER lines of an RTTM file, by uri, sorted by start (other line types skipped)."""
    turns: dict[str, list[Turn]] = {}
    for number, fields in _lines(path):
        if fields[0] != "SPEAKER":
            continue
        if len(fields) < 8:
            raise UsageError(f"{path}:{number}: an RTTM SPEAKER line has at least 8 fields")
        start = _number(fields[3], path, number, "start")
        duration = _number(fields[4], path, number, "duration")
        turns.setdefault(fields[1], []).append(Turn(fields[1], start, start + duration, fields[7]))
    return {uri: sorted(found) for uri, found in turns.items()}


def read_uem(path: Path) -> dict[str, list[tuple[float, float]]]:
    """The scored regions of a UEM file, by uri."""
    regions: dict[str, list[tuple[float, float]]] = {}
    for number, fields in _lines(path):
        if len(fields) < 4:
            raise UsageError(f"{path}:{number}: a UEM line has 4 fields: uri channel start end")
        start = _number(fields[2], path, number, "start")
        end = _number(fields[3], path, number, "end")
        if end < start:
            raise UsageError(f"{path}:{number}: the region ends before it starts")
        regions.setdefault(fields[0], []).append((start, end))
    return regions


def rttm_line(turn: Turn) -> str:
    """One turn as an RTTM SPEAKER line (millisecond times, as md-eval and pyannote write)."""
    uri = turn.uri.replace(" ", "_") or "unnamed"
    speaker = turn.speaker.replace(" ", "_")
    return (f"SPEAKER {uri} 1 {turn.start:.3f} {turn.duration:.3f} <NA> <NA> {speaker} "
            "<NA> <NA>\n")
