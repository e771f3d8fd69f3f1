"""`audio embed-speaker`: one recording gives a summary (or one JSON object); many, or
windows, give a table, JSON Lines and/or an --output file (cli/outcomes.py)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from audio_cli.cli import messages
from audio_cli.cli.errors import EXIT_OK
from audio_cli.cli.options import JsonOpt, check_inputs_exist, embedding_options, positive_seconds
from audio_cli.cli.outcomes import (
    JsonLinesSink,
    Outcome,
    Reporter,
    Sink,
    outcomes,
    render_summary,
    result_to_json,
    run,
)
from audio_cli.frontend.inputs import LIST_PREFIX, source_name
from audio_cli.pipeline.options import EmbedOptions
from audio_cli.pipeline.results import InputFailure
from engines.errors import UsageError

if TYPE_CHECKING:
    from audio_cli.cli.inputs import InputItem
    from audio_cli.pipeline.speaker import SpeakerEmbedder

# Registered on the root command by audio_cli.cli.main (LAZY_COMMANDS).
app = typer.Typer()

PROGRESS_GROUP_FILES = 4  # files embedded together while a progress bar is shown


@app.command("embed-speaker")
@embedding_options
def embed_speaker(
    files: Annotated[
        list[str], typer.Argument(help="Audio files (WAV, FLAC, OGG/Opus, MP3, ...), "
                                  "directories (searched recursively), @LIST files (one path "
                                  "a line), or - for stdin.", metavar="INPUT...",
                                  show_default=False)
    ],
    options: EmbedOptions,
    json_output: JsonOpt = False,
    output: Annotated[
        str | None, typer.Option("--output", "-o", metavar="FILE", help="Also write the "
                                 "vectors to a new .npz, .npy (+ .paths.txt), .jsonl or "
                                 ".parquet file.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --output file.")
                     ] = False,
    window: Annotated[
        float | None, typer.Option(metavar="SECONDS", callback=positive_seconds,
                                   help="One embedding per window of this many seconds.")
    ] = None,
    hop: Annotated[
        float | None, typer.Option(metavar="SECONDS", callback=positive_seconds,
                                   help="Seconds between window starts (default: --window).")
    ] = None,
    ray: Annotated[str | None, typer.Option(
        metavar="ADDRESS", help="Run on Ray (local, auto or ray://HOST:PORT) into --output "
        "DIR.parquet, a folder of shards; a rerun resumes.")] = None,
) -> None:
    """Embed the speaker of each recording as a unit vector (256-dim ResNet34, 192-dim CAM++)."""
    windows = check_windows(window, hop, options.min_duration)
    if ray is not None:  # the whole run on a Ray cluster (cli/distributed.py)
        from audio_cli.cli.distributed import embed_on_ray

        raise typer.Exit(embed_on_ray(ray, files, options, output=output, force=force,
                                      windows=windows, json_output=json_output))
    from audio_cli.pipeline.speaker import SpeakerEmbedder

    out_path = None
    if output:
        from audio_cli.cli.writers import OutputFile, check_output

        out_path = check_output(output, force)
    single = windows is None and is_single_file(files)
    if single:
        check_inputs_exist(files)  # before the model, which may need a download
    else:
        from audio_cli.cli.inputs import expand_inputs, mark_missing

        items = mark_missing(expand_inputs(files))
        if all(item.error is not None for item in items):  # nothing to load a model for
            status = report_unusable(items, json_output)
            if out_path is not None:
                messages.note(f"nothing embedded; {out_path} not written")
            raise typer.Exit(status)
    speaker = SpeakerEmbedder.from_options(options)  # --min-duration checked before output
    out = OutputFile.of(out_path, force, speaker) if out_path else None
    try:  # from the output's first scratch file on, a stopped run removes what it wrote
        if out is not None:
            out.start()
        if single:
            status = embed_one(speaker, files[0], options, json_output, out)
        else:
            status = embed_many(speaker, items, options, windows, json_output, out)
        if out is not None and out.count:
            out.commit()
            messages.note(f"wrote {messages.plural(out.count, 'embedding')} to {out_path}")
        elif out is not None:
            messages.note(f"nothing embedded; {out_path} not written")
    finally:
        if out is not None:
            out.discard()
    if status:
        raise typer.Exit(status)


def is_single_file(args: list[str]) -> bool:
    """True for the classic one-file call: one argument, neither a list nor a directory."""
    return (len(args) == 1 and not args[0].startswith(LIST_PREFIX)
            and not os.path.isdir(args[0]))


def check_windows(window: float | None, hop: float | None, min_duration: float
                  ) -> tuple[float, float] | None:
    """Validate --window/--hop before any work: (window, hop; the hop defaults to the
    window), or None without --window."""
    if window is None:
        if hop is not None:
            raise UsageError("--hop needs --window")
        return None
    hop = window if hop is None else hop  # both above 0: positive_seconds checked them
    if window < min_duration:
        raise UsageError(f"--window {window:g} s is shorter than --min-duration {min_duration:g} s")
    return window, hop


def report_unusable(items: list[InputItem], json_output: bool) -> int:
    """Report inputs that all failed before a model was needed; returns the exit status."""
    sinks: list[Sink] = [JsonLinesSink(sys.stdout, "", "")] if json_output else []
    return run((Outcome(source_name(i.path), error=i.error) for i in items), sinks,
               Reporter(len(items), show_progress=False))


def embed_one(speaker: SpeakerEmbedder, file: str, options: EmbedOptions, json_output: bool,
              out: Sink | None) -> int:
    """The one-file call: a summary (or one JSON object); an error stops it. Returns 0."""
    with messages.warnings_through(messages.line):
        (result,) = speaker.embed_sources([file], options.min_duration, options.vad)
    if isinstance(result, InputFailure):
        raise result.error
    if json_output:
        sys.stdout.write(result_to_json(result, speaker.model.digest) + "\n")
    elif out is None:
        render_summary(result, sys.stdout)
    if out is not None:
        out.add(Outcome(source_name(file), result=result))
    return EXIT_OK


def embed_many(speaker: SpeakerEmbedder, items: list[InputItem], options: EmbedOptions,
               windows: tuple[float, float] | None, json_output: bool, out: Sink | None
               ) -> int:
    """Many inputs (or windows) to JSON Lines, a table and/or `out`; returns the status."""
    from audio_cli.cli.table import TableSink

    sinks: list[Sink] = [out] if out is not None else []
    table = None
    if json_output:
        sinks.append(JsonLinesSink(sys.stdout, speaker.model_id, speaker.engine_name,
                                   speaker.model.digest))
    elif out is None:
        table = TableSink(windows=windows is not None)
        sinks.append(table)
    streaming_to_terminal = json_output and sys.stdout.isatty()
    progress = sys.stderr.isatty() and not streaming_to_terminal
    reporter = Reporter(len(items), progress)
    group = PROGRESS_GROUP_FILES if progress else None
    with messages.warnings_through(reporter.line):
        status = run(outcomes(speaker, items, options, windows, group), sinks, reporter)
    if table is not None:
        table.render(sys.stdout)
    return status
