"""`audio diarize`: who spoke when in each recording; a table of turns per file, JSON Lines
(--json) and/or one --output file (.rttm, .jsonl, .parquet) for all inputs, written at the
end, atomically (never over an existing file without --force). With --ray the run goes to a
Ray cluster instead (cli/diarize_ray.py); the per-input outcomes and rows: cli/turn_rows.py."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Annotated, TextIO

import typer

from audio_cli.cli import messages
from audio_cli.cli.naming import NamesDbOpt
from audio_cli.cli.options import EngineOpt, JsonOpt, MaxDurOpt, ModelOpt, ThreadsOpt
from audio_cli.cli.outcomes import Outcome, Reporter, run
from audio_cli.cli.turn_rows import json_records, outcomes, records, turn_schema, turn_table, uri_of
from audio_cli.diarization.turns import Turn, rttm_line
from audio_cli.pipeline.options import DEFAULT_MAX_DURATION, default_model

# Registered on the root command by audio_cli.cli.main (LAZY_COMMANDS).
app = typer.Typer()

FORMATS = (".rttm", ".jsonl", ".parquet")


class Collected(list):
    """The outcomes of a run, kept for the --output file written at its end."""

    add = list.append


@app.command("diarize")
def diarize(
    ctx: typer.Context,
    files: Annotated[list[str], typer.Argument(
        help="Audio files, directories (searched recursively), @LIST files or - for stdin.",
        metavar="INPUT...", show_default=False)],
    model: ModelOpt = None,
    segmentation: Annotated[str | None, typer.Option(
        "--segmentation", metavar="MODEL|none",
        help="Segmentation model (pyannote segmentation-3.0: a local folder or file); none: "
        "voice-activity detection and windows only (no overlapping speech).")] = None,
    speakers: Annotated[int | None, typer.Option(
        "--speakers", metavar="N", min=1, help="Exactly N speakers.")] = None,
    min_speakers: Annotated[int | None, typer.Option(
        "--min-speakers", metavar="A", min=1, help="At least A speakers.")] = None,
    max_speakers: Annotated[int | None, typer.Option(
        "--max-speakers", metavar="B", min=1, help="At most B speakers.")] = None,
    exclusive: Annotated[bool, typer.Option(
        "--exclusive", help="At most one speaker at any time (the most likely one where "
        "several speak).")] = False,
    clustering: Annotated[str, typer.Option(
        "--clustering", metavar="METHOD",
        help="auto (spectral from 60 embeddings on, else ahc), ahc (agglomerative, "
        "calibrated threshold) or spectral (eigengap).")] = "auto",
    output: Annotated[str | None, typer.Option(
        "--output", "-o", metavar="FILE",
        help="Also write all turns to a new .rttm, .jsonl or .parquet file.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace an existing --output (or --plot) file.")] = False,
    plot: Annotated[str | None, typer.Option(
        "--plot", metavar="FILE.png|.svg", help="Also draw the timeline of the one INPUT to a "
        "new picture: a lane per speaker (needs matplotlib).")] = None,
    reference: Annotated[Path | None, typer.Option(
        "--reference", metavar="REF.rttm", help="With --plot: draw the reference turns of the "
        "INPUT's uri (its file name's stem) beside, with the DER in the title.")] = None,
    json_output: JsonOpt = False,
    db: NamesDbOpt = None,
    threads: ThreadsOpt = None,
    engine: EngineOpt = "auto",
    max_duration: MaxDurOpt = DEFAULT_MAX_DURATION,
    ray: Annotated[str | None, typer.Option(
        metavar="ADDRESS", help="Run on Ray (local, auto or ray://HOST:PORT) into --output "
        "DIR.parquet, a folder of shards, one input per task; a rerun resumes.")] = None,
) -> None:
    """Who spoke when: speaker turns of each recording, overlapping speech included."""
    from audio_cli.cli.inputs import expand_inputs, mark_missing
    from audio_cli.diarization.clustering import METHODS, SpeakerCount
    from audio_cli.diarization.pipeline import DiarizeOptions, Diarizer
    from engines.errors import UsageError

    count = SpeakerCount.of(speakers, min_speakers, max_speakers)
    if clustering not in METHODS:
        raise UsageError(f"--clustering {clustering}: choose one of {', '.join(METHODS)}")
    options = DiarizeOptions(model=model or default_model(), engine=engine, threads=threads,
                             segmentation=segmentation, count=count, exclusive=exclusive,
                             clustering=clustering)
    if ray is not None:  # the whole run on a Ray cluster (cli/diarize_ray.py)
        from audio_cli.cli.diarize_ray import diarize_on_ray

        if db is not None or plot or reference:
            raise UsageError("--ray writes the turns to --output only; --db, --plot and "
                             "--reference are not available with it")
        raise typer.Exit(diarize_on_ray(ray, files, options, output=output, force=force,
                                        json_output=json_output, max_duration=max_duration))
    out_path = None
    if output:
        from audio_cli.cli.writers import check_output

        out_path = check_output(output, force, FORMATS)
    items = mark_missing(expand_inputs(files))
    namer = None
    if db is not None:  # named speakers: the store's model and rules (cli/naming.py)
        from audio_cli.cli.naming import store_namer

        model, namer = store_namer(ctx, options.model, db)
        options = dataclasses.replace(options, model=model)  # the store's model
    plotting = plot_setup(plot, reference, force, items) if plot or reference else None
    diarizer = engines = None
    progress = sys.stderr.isatty() and not (json_output and sys.stdout.isatty())
    bar = ChunkBar() if progress and len(items) == 1 else None  # one (long) input's chunks
    if any(item.error is None for item in items):  # a model only for something to read
        diarizer = engines = Diarizer(options)
        diarizer.progress = bar
        if namer is not None:
            from audio_cli.store.naming import NamedDiarizer

            diarizer = NamedDiarizer(diarizer, namer)
    done = Collected()
    reporter = Reporter(len(items), progress and len(items) > 1, "diarizing")
    sink = StdoutSink(json_output)
    with messages.warnings_through(reporter.line):
        try:
            status = run(outcomes(diarizer, items, reporter, max_duration), [sink, done],
                         reporter)
        finally:
            if bar is not None:
                bar.close()
            if engines is not None:
                engines.close()
    if out_path is not None:
        write_output(out_path, done, force, named=namer is not None)
    if plotting is not None and done and done[0].error is None:
        draw_timeline(done[0].turns, plotting, force)
    raise typer.Exit(status)


def plot_setup(plot: str | None, reference: Path | None, force: bool, items
               ) -> tuple[Path, list[Turn] | None]:
    """Before any work: the --plot path and the reference turns of the one input's uri."""
    from audio_cli.plots.figure import check_plot_path
    from engines.errors import UsageError

    if plot is None:
        raise UsageError("--reference goes with --plot")
    if len(items) != 1:
        raise UsageError(f"--plot draws one recording; {messages.plural(len(items), 'input')} "
                         "given (run once per file)")
    path = check_plot_path(plot, force)
    if reference is None:
        return path, None
    from audio_cli.diarization.turns import read_rttm

    uri = uri_of(items[0].path)
    turns = read_rttm(reference)
    if uri not in turns:
        raise UsageError(f"--reference {reference}: no turns of {uri} (it has "
                         f"{', '.join(sorted(turns)[:5]) or 'none'})")
    return path, turns[uri]


def draw_timeline(turns: list[Turn], plotting: tuple[Path, list[Turn] | None], force: bool
                  ) -> None:
    from audio_cli.plots.timeline import timeline

    path, reference = plotting
    timeline(turns, path, reference, force=force)
    messages.note(f"wrote the timeline to {path}")


class StdoutSink:
    """The turns of each input on stdout as it finishes: a table, or JSON Lines."""

    def __init__(self, json_output: bool):
        self.json_output = json_output
        self.first = True

    def add(self, outcome: Outcome) -> None:
        if self.json_output:
            sys.stdout.write(json_records(outcome))
        elif outcome.error is None:
            if not self.first:
                sys.stdout.write("\n")
            render_table(outcome, sys.stdout)
            self.first = False
        sys.stdout.flush()


class ChunkBar:
    """A transient progress bar of one recording's chunks on stderr, drawn from the first
    call `bar(done, total)` (Diarizer.progress) until `close()`."""

    def __init__(self) -> None:
        self._progress = None

    def __call__(self, done: int, total: int) -> None:
        if self._progress is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn("diarizing"), BarColumn(),
                                      MofNCompleteColumn(), TimeRemainingColumn(),
                                      console=Console(stderr=True), transient=True,
                                      redirect_stdout=False, redirect_stderr=False)
            self._task = self._progress.add_task("diarizing", total=total)
            self._progress.start()
        self._progress.update(self._task, completed=done, total=total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def render_table(outcome: Outcome, stream: TextIO) -> None:
    """`FILE: N speakers` then one `start end speaker` row per turn."""
    turns = outcome.turns
    count = len({t.speaker for t in turns})
    stream.write(f"{outcome.file}: {messages.plural(count, 'speaker')}, "
                 f"{messages.plural(len(turns), 'turn')}\n")
    if not turns:
        return
    from audio_cli.cli.table import aligned

    stream.write(aligned([("start", "end", "speaker"),
                          *((f"{t.start:.2f}", f"{t.end:.2f}", t.speaker) for t in turns)], "rr"))

def write_output(path: Path, done: list[Outcome], force: bool, named: bool = False) -> None:
    """All inputs' turns to one new file (atomically; --force replaces). A full or failing
    disk is one line naming the file (engines.files.disk_errors), as for embed-speaker.
    `named` (--db): Parquet has a `score` column, even when every input failed."""
    from engines.errors import UsageError
    from engines.files import TargetExists, disk_errors, new_file, write_new

    kind = path.suffix.lower()
    turns = sum(len(o.turns) for o in done if o.error is None)
    try:
        with disk_errors(path):
            if kind == ".rttm":
                write_new(path, "".join(rttm_line(t) for o in done if o.error is None
                                        for t in o.turns), replace=force)
            elif kind == ".jsonl":
                write_new(path, "".join(json_records(o) for o in done), replace=force)
            else:
                import pyarrow.parquet as pq

                rows = [r for o in done for r in records(o)]
                table = turn_table(rows, turn_schema(named))  # --db: the match scores
                with new_file(path, force) as draft:
                    pq.write_table(table, draft.path)
    except TargetExists:
        raise UsageError(f"--output: {path} appeared during the run; not overwriting it "
                         "(pass --force)") from None
    messages.note(f"wrote {messages.plural(turns, 'turn')} to {path}")
