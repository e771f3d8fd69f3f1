"""`audio eval`: speaker-verification EER and minDCF over a labelled dataset, and its report."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from audio_cli.cli import messages
from audio_cli.cli.options import JsonOpt, embedding_options
from audio_cli.evaluation.run import EvalReport
from audio_cli.pipeline.options import EmbedOptions

if TYPE_CHECKING:
    from rich.console import Console

# Registered on the root command by audio_cli.cli.main (LAZY_COMMANDS).
app = typer.Typer()


@app.command("eval")
@embedding_options
def eval_command(
    dataset: Annotated[Path, typer.Argument(
        metavar="DATASET",
        help="Folder with one sub-folder per speaker, or a manifest CSV (speaker,file) / a "
             "folder holding manifest.csv, which then takes precedence.")],
    options: EmbedOptions,
    impostors: Annotated[
        Path | None, typer.Option(metavar="FOLDER", help="Folder of extra one-file speakers: "
                                  "each file is scored against every dataset file as a "
                                  "non-target trial.")
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Score every same- and different-speaker pair: trials, EER, minDCF, mean scores."""
    from audio_cli.cli.errors import combined_status
    from audio_cli.cli.outcomes import Reporter
    from audio_cli.evaluation.datasets import check_unique, load_dataset, load_impostors
    from audio_cli.evaluation.run import check_trials, run_evaluation
    from audio_cli.pipeline.speaker import SpeakerEmbedder

    data = load_dataset(dataset)
    skipped = list(data.skipped)  # not regular files (FIFOs, dangling links...): never opened
    extra = load_impostors(impostors, skipped) if impostors is not None else []
    for error in skipped:
        messages.error(str(error))
    check_unique([u.path for u in data.utterances] + extra)
    check_trials([u.speaker for u in data.utterances], len(extra))
    speaker = SpeakerEmbedder.from_options(options)
    reporter = Reporter(len(data.utterances) + len(extra), show_progress=sys.stderr.isatty())
    try:
        report = run_evaluation(speaker, data, extra, options,
                                lambda failure: reporter.outcome(_outcome(failure)))
    finally:
        reporter.close()
    if json_output:
        sys.stdout.write(report_to_json(report, speaker.model.digest) + "\n")
    else:
        from rich.console import Console

        render_report(report, Console())
    if report.failures:
        sys.stdout.flush()
        total = report.files + report.impostor_files
        messages.note(f"{len(report.failures)} of {total} files could not be embedded and were "
                      "left out of the trials above")
    if report.failures or skipped:
        raise typer.Exit(combined_status([*(f.error for f in report.failures), *skipped]))


def _outcome(failure):
    """A finished file as the many-input reporter sees it (an Outcome without a vector)."""
    from audio_cli.cli.outcomes import Outcome

    if failure is None:
        return Outcome("")
    return Outcome(failure.file, error=failure.error)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def report_to_dict(report: EvalReport, digest: str = "") -> dict:
    """The `--json` payload (rates as fractions; a threshold of +inf, i.e. reject all, is null;
    `model_digest`: the model's identity, as the store records it)."""
    m = report.metrics
    return {
        "dataset": str(report.dataset.source),
        "layout": report.dataset.layout,
        "speakers": report.speakers,
        "files": report.files,
        "impostor_files": report.impostor_files,
        "embedded": report.files + report.impostor_files - len(report.failures),
        "failed": len(report.failures),
        "trials": m.target_trials + m.nontarget_trials,
        "target_trials": m.target_trials,
        "nontarget_trials": m.nontarget_trials,
        "eer": m.eer,
        "eer_threshold": m.eer_threshold,
        "min_dcf": m.min_dcf,
        "min_dcf_threshold": _finite(m.min_dcf_threshold),
        "p_target": m.p_target,
        "mean_target_score": m.mean_target,
        "mean_nontarget_score": m.mean_nontarget,
        "model": report.model,
        "model_digest": digest,
        "engine": report.engine,
        "elapsed": round(report.elapsed, 3),
    }


def report_to_json(report: EvalReport, digest: str = "") -> str:
    """One line of JSON for a report."""
    return json.dumps(report_to_dict(report, digest), separators=(",", ":"))


def render_report(report: EvalReport, console: Console) -> None:
    """Print the evaluation as a two-column table."""
    from rich.table import Table  # only the text path pays for importing rich

    m = report.metrics
    d = report_to_dict(report)
    dcf_threshold = "reject all" if d["min_dcf_threshold"] is None else f"{m.min_dcf_threshold:.4f}"
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("dataset", f"{d['dataset']} ({d['layout']})")
    table.add_row("files", f"{d['files']} ({report.speakers} speakers)"
                  + (f" + {d['impostor_files']} impostors" if d["impostor_files"] else "")
                  + (f", {d['failed']} failed" if d["failed"] else ""))
    table.add_row("trials", f"{d['trials']:,} ({m.target_trials:,} target, "
                  f"{m.nontarget_trials:,} non-target)")
    table.add_row("EER", f"{m.eer * 100:.2f} % (threshold {m.eer_threshold:.4f})")
    table.add_row(f"minDCF (p={m.p_target:g})", f"{m.min_dcf:.4f} (threshold {dcf_threshold})")
    table.add_row("mean score", f"target {m.mean_target:.4f}, non-target {m.mean_nontarget:.4f}")
    table.add_row("model", f"{report.model} ({report.engine})")
    table.add_row("time", f"{report.elapsed:.1f} s to embed")
    console.print(table)
