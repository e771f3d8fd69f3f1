"""The `audio` command line: the app, its one-file commands, and errors turned into exit codes.

`embed-speaker`, `convert` and `export-coreml` are defined here. The store and evaluation
commands live in `cli/store.py` and `cli/eval.py`, which are imported only when one of their
commands runs (or help lists them), so `audio embed-speaker` never loads them.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from audio_cli import __version__
from audio_cli.cli import options
from audio_cli.models.registry import DEFAULT_MODEL
from engines.errors import DEBUG_ENV, EXIT_INTERNAL, EXIT_USAGE, AudioCliError, UsageError

APP_HELP = "Speaker embeddings (WeSpeaker ResNet34-LM, CAM++) from the command line."
# Commands defined in other modules: name -> module holding a Typer `app` that defines it.
LAZY_COMMANDS = {
    "compare": "audio_cli.cli.store",
    "enroll": "audio_cli.cli.store",
    "identify": "audio_cli.cli.store",
    "calibrate": "audio_cli.cli.store",
    "speakers": "audio_cli.cli.store",
    "index": "audio_cli.cli.store",
    "search": "audio_cli.cli.store",
    "eval": "audio_cli.cli.eval",
}


class _LazyGroup(TyperGroup):
    """The root command group: commands of LAZY_COMMANDS are imported when first asked for."""

    def list_commands(self, ctx) -> list[str]:
        return [*super().list_commands(ctx), *LAZY_COMMANDS]

    def get_command(self, ctx, name: str):
        if name in LAZY_COMMANDS:
            module = importlib.import_module(LAZY_COMMANDS[name])
            return typer.main.get_group(module.app).get_command(ctx, name)
        return super().get_command(ctx, name)


app = typer.Typer(
    name="audio",
    cls=_LazyGroup,
    help=APP_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"audio {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    """Speaker embeddings (WeSpeaker ResNet34-LM, CAM++) from the command line."""


ModelOpt = Annotated[str, typer.Option(
    metavar="MODEL", help="Hub repo id, known name, or local model directory.")]
ThreadsOpt = Annotated[int | None, typer.Option(
    metavar="N", callback=options.threads,
    help="CPU threads for the engine (default: all; capped at the CPUs here).")]


@app.command("embed-speaker")
def embed_speaker(
    files: Annotated[
        list[str], typer.Argument(help="Audio files (WAV, FLAC, OGG/Opus, MP3, ...), "
                                  "directories (searched recursively), @LIST files (one path "
                                  "a line), or - for stdin.", metavar="INPUT...",
                                  show_default=False)
    ],
    engine: Annotated[
        str, typer.Option(metavar="ENGINE", help="Inference engine: auto (MLX on Apple "
                          "Silicon, else onnx), onnx, mlx or coreml.")
    ] = "auto",
    model: ModelOpt = DEFAULT_MODEL,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object with the full vector; with several "
                           "inputs or --window, JSON Lines (one record per input/window).")
    ] = False,
    output: Annotated[
        str | None, typer.Option("--output", "-o", metavar="FILE", help="Also write the "
                                 "vectors to a new .npz, .npy (+ .paths.txt) or .jsonl file.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --output file.")] = False,
    window: Annotated[
        float | None, typer.Option(metavar="SECONDS", callback=options.positive_seconds,
                                   help="One embedding per window of this many seconds.")
    ] = None,
    hop: Annotated[
        float | None, typer.Option(metavar="SECONDS", callback=options.positive_seconds,
                                   help="Seconds between window starts (default: --window).")
    ] = None,
    min_duration: Annotated[
        float, typer.Option(metavar="SECONDS", callback=options.min_seconds,
                            help="Refuse audio shorter than this many seconds.")
    ] = 0.5,
    threads: ThreadsOpt = None,
) -> None:
    """Embed the speaker of each recording as a unit vector (256-dim ResNet34, 192-dim CAM++)."""
    from audio_cli.cli import embed as batch
    from audio_cli.models.registry import resolve_model
    from audio_cli.pipeline.speaker import WeSpeaker
    from engines import resolve_engine_name

    resolve_engine_name(engine)
    out_path = None
    if output:
        from audio_cli.cli.writers import OutputFile, check_output

        out_path = check_output(output, force)
    hop = batch.check_windows(window, hop, min_duration)
    single = window is None and batch.is_single_file(files)
    if single:
        options.check_inputs_exist(files)  # before the model, which may need a download
    else:
        from audio_cli.cli.inputs import expand_inputs

        items = batch.mark_missing(expand_inputs(files))
        if all(item.error is not None for item in items):  # nothing to load a model for
            status = batch.report_unusable(items, json_output)
            if out_path is not None:
                sys.stderr.write(f"audio: nothing embedded; {out_path} not written\n")
            raise typer.Exit(status)
    _, directory = resolve_model(model, engine)
    speaker = WeSpeaker.from_directory(directory, options.model_name(model), engine, threads)
    speaker.check_min_duration(min_duration)  # before any output
    digest = ""
    if json_output or out_path:  # the model's identity, as the store records it
        from engines.files import model_digest

        digest = model_digest(directory)
    out = (OutputFile(out_path, force, speaker.model_id, speaker.engine_name, digest)
           if out_path else None)
    try:  # from the output's first scratch file on, a stopped run removes what it wrote
        if out is not None:
            out.start()
        if single:
            status = batch.embed_one(speaker, files[0], min_duration, json_output, out, digest)
        else:
            status = batch.embed_many(speaker, items, min_duration, window, hop, json_output,
                                      out, digest)
        if out is not None and out.count:
            out.commit()
            sys.stderr.write(f"audio: wrote {options.plural(out.count, 'embedding')} to "
                             f"{out_path}\n")
        elif out is not None:
            sys.stderr.write(f"audio: nothing embedded; {out_path} not written\n")
    finally:
        if out is not None:
            out.discard()
    if status:
        raise typer.Exit(status)


@app.command("convert")
def convert(
    source: Annotated[Path, typer.Argument(
        metavar="CHECKPOINT", help="pyannote pytorch_model.bin, wespeaker .pt or 3D-Speaker "
        "campplus_cn_en_common.pt")],
    out_dir: Annotated[Path, typer.Argument(
        metavar="DIR", help="New directory for the hub-layout model.")],
) -> None:
    """Convert a PyTorch checkpoint into a model directory (no torch needed)."""
    from audio_cli.models.convert import convert_checkpoint

    written = convert_checkpoint(source, out_dir)
    typer.echo(str(written))


@app.command("export-coreml")
def export_coreml_command(
    out: Annotated[Path, typer.Argument(metavar="PATH", help="New .mlpackage path to write.")],
    model: ModelOpt = DEFAULT_MODEL,
    precision: Annotated[str, typer.Option(metavar="float32|float16",
                                           help="Weights' precision.")] = "float32",
) -> None:
    """Export a model as a Core ML ML Program (.mlpackage) with a flexible length."""
    from audio_cli.models.registry import resolve_model
    from engines.coreml_export import check_precision, export_coreml
    from engines.model import WEIGHTS_FILE, ModelConfig, Weights

    check_precision(precision)
    if out.exists() or out.is_symlink():  # a usage error, as for --output, before any work
        raise UsageError(f"{out} exists; not overwriting it")
    model_id, directory = resolve_model(model, "coreml")
    config = ModelConfig.load(directory)
    if not config.model_id:
        config = dataclasses.replace(config, model_id=model_id)
    written = export_coreml(config, Weights(directory / WEIGHTS_FILE), out, precision)
    typer.echo(str(written))


def _click_exception_modules() -> list:
    """Click's exception modules: typer's vendored copy (newer typer) and/or click itself."""
    modules = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            pass
    return modules


_CLICK = _click_exception_modules()
USAGE_ERRORS = tuple(m.UsageError for m in _CLICK)
ABORTS = (typer.Abort, *(m.Abort for m in _CLICK if hasattr(m, "Abort")))
CLICK_ERRORS = tuple(m.ClickException for m in _CLICK)
NO_ARGS_HELP = tuple(m.NoArgsIsHelpError for m in _CLICK if hasattr(m, "NoArgsIsHelpError"))


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"audio: error: {message}\n")
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every known error into one line on stderr."""
    options.catch_signals()
    options.plain_help()
    try:
        code = app(args=argv, prog_name="audio", standalone_mode=False)
    except NO_ARGS_HELP as exc:  # `audio` or `audio speakers` alone: the help, then status 2
        if exc.format_message():  # help not printed yet (click without rich)
            sys.stderr.write(exc.format_message() + "\n")
        sys.exit(EXIT_USAGE)
    except USAGE_ERRORS as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        _fail(exc.format_message().replace("\n", " ") + hint, EXIT_USAGE)
    except ABORTS:
        _fail(*options.interrupted())
    except CLICK_ERRORS as exc:
        _fail(exc.format_message(), exc.exit_code)
    except AudioCliError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail(*options.interrupted())
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_INTERNAL)
    except Exception as exc:  # noqa: BLE001 - last resort: one line unless debugging
        if os.environ.get(DEBUG_ENV):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for a traceback)",
              EXIT_INTERNAL)
    if options.received:  # typer turns the KeyboardInterrupt into a bare status 130
        _fail(*options.interrupted())
    sys.exit(code or 0)


