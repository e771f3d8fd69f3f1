"""`audio eval`: speaker-verification EER and minDCF over a labelled dataset."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from .app import app


@app.command("eval")
def eval_command(
    dataset: Annotated[Path, typer.Argument(
        help="Folder with one sub-folder per speaker, or a manifest CSV (speaker,file) / a "
             "folder holding manifest.csv, which then takes precedence.")],
    model: Annotated[
        str, typer.Option(help="Hub repo id, known name, or local model directory.")
    ] = "aufklarer/WeSpeaker-ResNet34-LM-MLX",
    engine: Annotated[
        str, typer.Option(help="Inference engine: auto, onnx, mlx or coreml.")
    ] = "auto",
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for the engine (default: all).")
    ] = None,
    impostors: Annotated[
        Path | None, typer.Option(help="Folder of extra one-file speakers: each file is scored "
                                  "against every dataset file as a non-target trial.")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object.")
    ] = False,
    min_duration: Annotated[
        float, typer.Option(help="Leave out audio shorter than this many seconds.")
    ] = 0.5,
) -> None:
    """Score every same- and different-speaker pair: trials, EER, minDCF, mean scores."""
    from engines import resolve_engine_name

    from .batch import Reporter, exit_status
    from .datasets import check_unique, load_dataset, load_impostors
    from .eval_report import render_report, report_to_json
    from .eval_run import check_trials, run_evaluation
    from .speaker import WeSpeaker

    resolve_engine_name(engine)
    data = load_dataset(dataset)
    extra = load_impostors(impostors) if impostors is not None else []
    check_unique([u.path for u in data.utterances] + extra)
    check_trials([u.speaker for u in data.utterances], len(extra))
    speaker = WeSpeaker.load_from_hub(model, engine=engine, threads=threads)
    reporter = Reporter(len(data.utterances) + len(extra), show_progress=sys.stderr.isatty())
    try:
        report = run_evaluation(speaker, data, extra, min_duration,
                                lambda failure: reporter.outcome(_outcome(failure)))
    finally:
        reporter.close()
    if json_output:
        sys.stdout.write(report_to_json(report) + "\n")
    else:
        from rich.console import Console

        render_report(report, Console())
    if report.failures:
        sys.stdout.flush()
        total = report.files + report.impostor_files
        sys.stderr.write(f"audio: {len(report.failures)} of {total} files could not be embedded "
                         "and were left out of the trials above\n")
        raise typer.Exit(exit_status({f.error.exit_code for f in report.failures}))


def _outcome(failure):
    """A finished file as the many-input reporter sees it (an Outcome without a vector)."""
    from .batch import Outcome

    if failure is None:
        return Outcome("")
    return Outcome(failure.file, error=failure.error)
