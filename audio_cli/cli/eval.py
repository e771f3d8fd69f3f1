"""`audio eval`: speaker-verification EER and minDCF over a labelled dataset, and its report."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from audio_cli.cli import messages
from audio_cli.cli.options import JsonOpt, embedding_options
from audio_cli.evaluation.metrics import Trials
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
    trial_scores: Annotated[bool, typer.Option(
        "--trial-scores", help="With --json: also every trial's score (target_scores, "
        "nontarget_scores), for a later --compare.")] = False,
    plot: Annotated[str | None, typer.Option(
        "--plot", metavar="FILE.png|.svg", help="Also draw the DET curve and the score "
        "histograms to a new picture (needs matplotlib).")] = None,
    compare: Annotated[list[Path] | None, typer.Option(
        "--compare", metavar="RUN.json", help="With --plot: also draw the curve of an earlier "
        "`audio eval --json --trial-scores` run (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --plot file.")
                     ] = False,
) -> None:
    """Score every same- and different-speaker pair: trials, EER, minDCF, mean scores."""
    from audio_cli.cli.errors import combined_status
    from audio_cli.cli.outcomes import Reporter
    from audio_cli.evaluation.datasets import check_unique, load_dataset, load_impostors
    from audio_cli.evaluation.run import check_trials, run_evaluation
    from audio_cli.pipeline.speaker import SpeakerEmbedder
    from engines.errors import UsageError

    if trial_scores and not json_output:
        raise UsageError("--trial-scores goes with --json")
    if compare and plot is None:
        raise UsageError("--compare goes with --plot")
    earlier = [load_run(path) for path in compare or ()]
    if plot is not None:
        from audio_cli.plots.figure import check_plot_path

        plot_path = check_plot_path(plot, force)
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
        document = report_to_dict(report, speaker.model.digest)
        document.update(precision=options.precision, vad=options.vad)
        if trial_scores:
            document.update(target_scores=report.trials.target.tolist(),
                            nontarget_scores=report.trials.nontarget.tolist())
        sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
    else:
        from rich.console import Console

        render_report(report, Console())
    if plot is not None:
        from audio_cli.plots.det import det_figure, det_run
        from audio_cli.plots.figure import save

        label = run_label(report.model, options.precision, options.vad)
        runs = [det_run(label, report.trials), *(det_run(*run) for run in earlier)]
        save(det_figure(runs), plot_path, force)
        messages.note(f"wrote the DET curve{'s' if len(runs) > 1 else ''} to {plot_path}")
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


def run_label(model: str, precision: str, vad: bool) -> str:
    """How a run is named on a plot: its model (a folder by its name), precision and VAD."""
    return f"{Path(model).name or model} {precision}" + (" + VAD" if vad else "")


def load_run(path: Path) -> tuple[str, Trials]:
    """(label, trials) of an earlier `audio eval --json --trial-scores` output; a UsageError
    for a file that is not one."""
    from engines.errors import UsageError

    try:
        document = json.loads(path.read_text(encoding="utf-8").strip().splitlines()[0])
        target = np.asarray(document["target_scores"], dtype=np.float64)
        nontarget = np.asarray(document["nontarget_scores"], dtype=np.float64)
        label = run_label(document["model"], document.get("precision", "float32"),
                          bool(document.get("vad", False)))
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--compare {path}: cannot read it ({exc.strerror or exc})") from None
    except (ValueError, IndexError, TypeError, KeyError, AttributeError):
        raise UsageError(f"--compare {path}: not the output of `audio eval --json "
                         "--trial-scores` (no trial scores in it)") from None
    if (target.ndim != 1 or nontarget.ndim != 1 or not target.size or not nontarget.size
            or not np.isfinite(target).all() or not np.isfinite(nontarget).all()):
        raise UsageError(f"--compare {path}: its trial scores are empty or not finite")
    return label, Trials(target, nontarget)


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
