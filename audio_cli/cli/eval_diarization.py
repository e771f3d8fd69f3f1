"""`audio eval-diarization`: a hypothesis RTTM scored against a reference RTTM (DER, JER)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from audio_cli.cli.options import JsonOpt

if TYPE_CHECKING:
    from audio_cli.diarization.scoring import FileScores, Score

# Registered on the root command by audio_cli.cli.main (LAZY_COMMANDS).
app = typer.Typer()

HEADER = ("file", "speech s", "missed %", "false alarm %", "confusion %", "DER %", "JER %",
          "speakers ref/hyp")


@app.command("eval-diarization")
def eval_diarization_command(
    reference: Annotated[Path, typer.Argument(
        metavar="REF.rttm", help="The reference turns (RTTM SPEAKER lines).")],
    hypothesis: Annotated[Path, typer.Argument(
        metavar="HYP.rttm", help="The turns to score (RTTM SPEAKER lines).")],
    uem: Annotated[Path | None, typer.Option(
        "--uem", metavar="U.uem", help="Score only these regions (UEM: uri channel start "
        "end); without it, each recording from its first to its last turn.")] = None,
    json_output: JsonOpt = False,
) -> None:
    """DER (missed, false alarm, confusion) and JER per recording and in total, full and fair."""
    from audio_cli.diarization.scoring import score_files
    from audio_cli.diarization.turns import read_rttm, read_uem
    from engines.errors import UsageError

    ref_turns = read_rttm(reference)
    if not ref_turns:
        raise UsageError(f"{reference}: no SPEAKER lines: nothing to score against")
    hyp_turns = read_rttm(hypothesis)
    regions = read_uem(uem) if uem is not None else None
    files = score_files(ref_turns, hyp_turns, regions)
    if json_output:
        for record in records(files):
            sys.stdout.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False)
                             + "\n")
    else:
        render(files, sys.stdout)


def _fields(score: Score) -> dict:
    """A score as JSON fields: times in seconds, rates as fractions."""
    return {
        "speech": score.speech,
        "missed": score.missed,
        "false_alarm": score.false_alarm,
        "confusion": score.confusion,
        "missed_rate": score.rate(score.missed),
        "false_alarm_rate": score.rate(score.false_alarm),
        "confusion_rate": score.rate(score.confusion),
        "der": score.der,
        "jer": score.jer,
        "ref_speakers": score.ref_speakers,
        "hyp_speakers": score.hyp_speakers,
    }


def records(files: list[FileScores]) -> list[dict]:
    """The `--json` records: one per recording, then the total (`file` null, `total` true)
    with each convention's `mean_der` (the plain mean of per-recording DER)."""
    from audio_cli.diarization.scoring import CONVENTIONS, mean_der, total

    out = [{"file": f.uri, "total": False,
            **{c.name: {"collar": c.collar, **_fields(f.scores[c.name])} for c in CONVENTIONS}}
           for f in files]
    out.append({"file": None, "total": True, "files": len(files),
                **{c.name: {"collar": c.collar, **_fields(total(files, c.name)),
                            "mean_der": mean_der(files, c.name)} for c in CONVENTIONS}})
    return out


def _row(name: str, score: Score) -> tuple[str, ...]:
    return (name, f"{score.speech:.2f}", f"{100 * score.rate(score.missed):.2f}",
            f"{100 * score.rate(score.false_alarm):.2f}",
            f"{100 * score.rate(score.confusion):.2f}", f"{100 * score.der:.2f}",
            f"{100 * score.jer:.2f}", f"{score.ref_speakers}/{score.hyp_speakers}")


def render(files: list[FileScores], stream: TextIO) -> None:
    """One table per convention: a row per recording, the total, and the mean of per-file DER.

    Plain text: the file column first, padded; numbers right-aligned."""
    from audio_cli.cli.table import aligned
    from audio_cli.diarization.scoring import CONVENTIONS, mean_der, total

    for index, convention in enumerate(CONVENTIONS):
        if index:
            stream.write("\n")
        stream.write(f"{convention.name}: {convention.description}\n")
        rows = [HEADER, *(_row(f.uri, f.scores[convention.name]) for f in files),
                _row("total", total(files, convention.name))]
        stream.write(aligned(rows, "l" + "r" * (len(HEADER) - 2)))
        mean = mean_der(files, convention.name)
        if mean is not None:
            stream.write(f"mean of per-file DER: {100 * mean:.2f} %\n")
