"""The `audio` command line: thin typed commands over the library, errors turned into exit codes."""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from .app import app
from .errors import EXIT_INTERNAL, EXIT_USAGE, AudioCliError

DEBUG_ENV = "AUDIO_DEBUG"


@app.command("embed-speaker")
def embed_speaker(
    files: Annotated[
        list[str], typer.Argument(help="Audio files (WAV, FLAC, OGG/Opus, MP3, ...), "
                                  "directories (searched recursively), @LIST files (one path "
                                  "a line), or - for stdin.", metavar="INPUT",
                                  show_default=False)
    ],
    engine: Annotated[
        str, typer.Option(help="Inference engine: auto (MLX on Apple Silicon, else onnx), "
                          "onnx, mlx or coreml.")
    ] = "auto",
    model: Annotated[
        str, typer.Option(help="Hub repo id, known name, or local model directory.")
    ] = "aufklarer/WeSpeaker-ResNet34-LM-MLX",
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object with the full vector; with several "
                           "inputs or --window, JSON Lines (one record per input/window).")
    ] = False,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Also write the vectors to a new "
                                 ".npz, .npy (+ .paths.txt) or .jsonl file.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --output file.")] = False,
    window: Annotated[
        float | None, typer.Option(help="One embedding per window of this many seconds.")
    ] = None,
    hop: Annotated[
        float | None, typer.Option(help="Seconds between window starts (default: --window).")
    ] = None,
    min_duration: Annotated[
        float, typer.Option(help="Refuse audio shorter than this many seconds.")
    ] = 0.5,
    threads: Annotated[
        int | None, typer.Option(min=1, help="CPU threads for the engine (default: all).")
    ] = None,
) -> None:
    """Embed the speaker of each recording as a unit vector (256-dim ResNet34, 192-dim CAM++)."""
    from engines import resolve_engine_name

    from . import batch
    from .inputs import expand_inputs, is_single_file
    from .speaker import WeSpeaker
    from .writers import OutputFile, check_output

    resolve_engine_name(engine)
    out_path = check_output(output, force) if output else None
    hop = batch.check_windows(window, hop, min_duration)
    single = window is None and is_single_file(files)
    items = expand_inputs(files)
    speaker = WeSpeaker.load_from_hub(model, engine=engine, threads=threads)
    speaker.check_min_duration(min_duration)  # before any output
    out = OutputFile(out_path, force, speaker.model_id, speaker.engine_name) if out_path else None
    try:
        if single:
            status = batch.embed_one(speaker, files[0], min_duration, json_output, out)
        else:
            status = batch.embed_many(speaker, items, min_duration, window, hop, json_output,
                                      out)
        if out is not None and out.count:
            out.commit()
            sys.stderr.write(f"audio: wrote {out.count} embeddings to {out_path}\n")
        elif out is not None:
            sys.stderr.write(f"audio: nothing embedded; {out_path} not written\n")
    finally:
        if out is not None:
            out.discard()
    if status:
        raise typer.Exit(status)


@app.command("convert")
def convert(
    source: Annotated[Path, typer.Argument(help="pyannote pytorch_model.bin, wespeaker .pt "
                                                 "or 3D-Speaker campplus_cn_en_common.pt")],
    out_dir: Annotated[Path, typer.Argument(help="New directory for the hub-layout model.")],
) -> None:
    """Convert a PyTorch checkpoint into a model directory (no torch needed)."""
    from .convert import convert_checkpoint

    written = convert_checkpoint(source, out_dir)
    typer.echo(str(written))


@app.command("export-coreml")
def export_coreml_command(
    out: Annotated[Path, typer.Argument(help="New .mlpackage path to write.")],
    model: Annotated[
        str, typer.Option(help="Hub repo id, known name, or local model directory.")
    ] = "aufklarer/WeSpeaker-ResNet34-LM-MLX",
    precision: Annotated[str, typer.Option(help="float32 or float16.")] = "float32",
) -> None:
    """Export a model as a Core ML ML Program (.mlpackage) with a flexible length."""
    from engines.coreml_export import check_precision, export_coreml

    from .config import WEIGHTS_FILE, ModelConfig
    from .models import resolve_model
    from .weights import Weights

    check_precision(precision)
    model_id, directory = resolve_model(model)
    config = ModelConfig.load(directory)
    if not config.model_id:
        config = dataclasses.replace(config, model_id=model_id)
    written = export_coreml(config, Weights(directory / WEIGHTS_FILE), out, precision)
    typer.echo(str(written))


# Commands kept in modules of their own register themselves on `app` when imported here.
# (one import line per module: audio_cli/cli_<area>.py)
from . import cli_eval, cli_store  # noqa: E402,F401


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


def _fail(message: str, code: int) -> None:
    sys.stderr.write(f"audio: error: {message}\n")
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every known error into one line on stderr."""
    try:
        code = app(args=argv, prog_name="audio", standalone_mode=False)
    except USAGE_ERRORS as exc:
        hint = f" (see `{exc.ctx.command_path} --help`)" if exc.ctx else ""
        _fail(exc.format_message().replace("\n", " ") + hint, EXIT_USAGE)
    except ABORTS:
        _fail("interrupted", 130)
    except CLICK_ERRORS as exc:
        _fail(exc.format_message(), exc.exit_code)
    except AudioCliError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted", 130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_INTERNAL)
    except Exception as exc:  # noqa: BLE001 - last resort: one line unless debugging
        if os.environ.get(DEBUG_ENV):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for a traceback)",
              EXIT_INTERNAL)
    sys.exit(code or 0)
