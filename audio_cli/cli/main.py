"""The `audio` command line: the app, its one-file commands, and errors turned into exit codes.

`embed-speaker` and the checks shared by every command's options are defined here. The
other commands live in `cli/convert.py`, `cli/store.py` and `cli/eval.py`, which are imported
only when one of their commands runs (or help lists them), so `audio embed-speaker` never
loads them.
"""

from __future__ import annotations

import importlib
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from audio_cli import __version__
from audio_cli.models.registry import DEFAULT_MODEL
from engines.errors import DEBUG_ENV, EXIT_INTERNAL, EXIT_USAGE, AudioCliError, InputAudioError
from engines.files import catch_signals, interrupted, received

APP_HELP = "Speaker embeddings (WeSpeaker ResNet34-LM, CAM++) from the command line."
# Commands defined in other modules: name -> module holding a Typer `app` that defines it.
LAZY_COMMANDS = {
    "convert": "audio_cli.cli.convert",
    "export-coreml": "audio_cli.cli.convert",
    "quantize": "audio_cli.cli.convert",
    "compare": "audio_cli.cli.store",
    "enroll": "audio_cli.cli.store",
    "identify": "audio_cli.cli.store",
    "calibrate": "audio_cli.cli.store",
    "speakers": "audio_cli.cli.store",
    "index": "audio_cli.cli.store",
    "search": "audio_cli.cli.search",
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


# ---------------------------------------------------------------- option checks
# Number options are checked while the command line is parsed, before any file or model is
# touched: NaN and infinities are refused everywhere (float() accepts "nan" and "inf").

MAX_SECONDS = 86400.0  # a day: the longest window, hop or minimum duration accepted


def _bad(value, rule: str):
    raise typer.BadParameter(f"{value!s}: {rule}")


def positive_seconds(value: float | None) -> float | None:
    """--window, --hop: a finite number of seconds above 0 and at most a day."""
    if value is not None and not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        _bad(value, f"must be a number of seconds above 0 and at most {MAX_SECONDS:g}")
    return value


def min_seconds(value: float) -> float:
    """--min-duration: a finite number of seconds from 0 to a day."""
    if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        _bad(value, f"must be a number of seconds from 0 to {MAX_SECONDS:g}")
    return value


def cosine(value: float | None) -> float | None:
    """--threshold, --min-score: a raw cosine, finite and in [-1, 1]."""
    if value is not None and not (math.isfinite(value) and -1.0 <= value <= 1.0):
        _bad(value, "must be a cosine from -1 to 1")
    return value


def db_folder(value: Path | None) -> Path | None:
    """--db: its folder must exist (as for --output); the store file itself may be new."""
    if value is not None and not value.expanduser().parent.is_dir():
        _bad(value, f"the folder {value.expanduser().parent} does not exist")
    return value


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the platform tells, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def precision(value: str) -> str:
    """--precision: float32 or int8."""
    if value not in ("float32", "int8"):
        _bad(value, "must be one of float32, int8")
    return value


def threads(value: int | None) -> int | None:
    """--threads: at least 1; more than the usable CPUs is capped with a warning.

    Engine threads beyond the CPUs only wait for each other (1000 threads on 2 CPUs ran 65x
    slower), so the request is honoured as far as the machine allows and the cap is said
    once on stderr, as encoders such as ffmpeg do with thread counts they cannot use.
    """
    if value is None:
        return None
    if value < 1:
        _bad(value, "must be at least 1")
    cpus = usable_cpus()
    if value > cpus:
        sys.stderr.write(f"audio: warning: --threads {value} is more than the {cpus} CPUs "
                         f"here; using {cpus}\n")
        return cpus
    return value


def model_name(typed: str) -> str:
    """What every command calls a model: the registry's short name for a known model (by
    name or hub id), else what the user typed for --model."""
    from audio_cli.models.registry import known_model

    known = known_model(typed)
    return known.name if known is not None else typed


def plain_help() -> None:
    """Help without typer's type labels (`--json <bool>`, `{INPUT}...`, `<list[str]>`).

    Flags show no value, arguments show their metavar (INPUT...), options their metavar or
    their name in capitals. Applies to typer versions whose parameters have
    `display_type_rich` (older ones print click's plain metavars already).
    """
    core = typer.core
    option, argument = getattr(core, "TyperOption", None), getattr(core, "TyperArgument", None)
    if not (hasattr(option, "display_type_rich") and hasattr(argument, "display_type_rich")):
        return

    def option_value(self, ctx):
        if self.is_flag or self.count:
            return None
        return self.metavar or (self.name or "value").upper()

    def argument_usage(self):
        name = self.metavar or (self.name or "arg").upper()
        dots = "..." if self.nargs != 1 and not name.endswith("...") else ""
        return (name if self.required else f"[{name}]") + dots

    option.display_type_rich = option_value
    argument.display_type_rich = lambda self, ctx: None
    if hasattr(argument, "_usage_display_name"):
        argument._usage_display_name = argument_usage


def check_inputs_exist(paths: list[str]) -> None:
    """Exit 3 for a named file that is not there, before any model is resolved (which may
    need a download): `-` (stdin) and existing paths pass; the loader checks the rest."""
    missing = [p for p in paths if p != "-" and not os.path.lexists(p)]
    if missing:
        raise InputAudioError("; ".join(f"{p}: no such file" for p in missing))


ModelOpt = Annotated[str, typer.Option(
    metavar="MODEL", show_default=model_name(DEFAULT_MODEL),
    help="Hub repo id, known name, local model directory or NeMo .nemo file.")]
EngineOpt = Annotated[str, typer.Option(
    metavar="ENGINE", help="Inference engine: auto (MLX on Apple Silicon, else onnx), onnx, "
    "mlx or coreml.")]
MinDurOpt = Annotated[float, typer.Option(
    metavar="SECONDS", callback=min_seconds, help="Refuse audio shorter than this many seconds.")]
ThreadsOpt = Annotated[int | None, typer.Option(
    metavar="N", callback=threads,
    help="CPU threads for the engine (default: all; capped at the CPUs here).")]
PrecisionOpt = Annotated[str, typer.Option(
    metavar="PRECISION", callback=precision,
    help="float32, or int8: an int8 network made once from the float32 one (onnx, coreml).")]
VadOpt = Annotated[bool, typer.Option(
    "--vad/--no-vad", help="Embed only the speech that voice-activity detection (Silero VAD) "
    "finds, as one utterance; --no-vad embeds every sample.")]


@app.command("embed-speaker")
def embed_speaker(
    files: Annotated[
        list[str], typer.Argument(help="Audio files (WAV, FLAC, OGG/Opus, MP3, ...), "
                                  "directories (searched recursively), @LIST files (one path "
                                  "a line), or - for stdin.", metavar="INPUT...",
                                  show_default=False)
    ],
    engine: EngineOpt = "auto",
    model: ModelOpt = DEFAULT_MODEL,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object with the full vector; with several "
                           "inputs or --window, JSON Lines (one record per input/window).")
    ] = False,
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
    min_duration: MinDurOpt = 0.5,
    threads: ThreadsOpt = None,
    precision: PrecisionOpt = "float32",
    vad: VadOpt = False,
    ray: Annotated[str | None, typer.Option(
        metavar="ADDRESS", help="Run on Ray (local, auto or ray://HOST:PORT) into --output "
        "DIR.parquet, a folder of shards; a rerun resumes.")] = None,
) -> None:
    """Embed the speaker of each recording as a unit vector (256-dim ResNet34, 192-dim CAM++)."""
    if ray is not None:  # the whole run on a Ray cluster (cli/distributed.py)
        from audio_cli.cli.distributed import embed_on_ray

        raise typer.Exit(embed_on_ray(ray, files, model, engine, output, force, window, hop,
                                      min_duration, threads, precision, vad, json_output))
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
        check_inputs_exist(files)  # before the model, which may need a download
    else:
        from audio_cli.cli.inputs import expand_inputs, mark_missing

        items = mark_missing(expand_inputs(files))
        if all(item.error is not None for item in items):  # nothing to load a model for
            status = batch.report_unusable(items, json_output)
            if out_path is not None:
                sys.stderr.write(f"audio: nothing embedded; {out_path} not written\n")
            raise typer.Exit(status)
    _, directory = resolve_model(model, engine)
    speaker = WeSpeaker.from_directory(directory, model_name(model), engine, threads,
                                       precision)
    speaker.check_min_duration(min_duration)  # before any output
    digest = ""
    if json_output or out_path:  # the model's identity, as the store records it
        from engines.files import model_digest

        digest = model_digest(directory)
    out = (OutputFile(out_path, force, speaker.model_id, speaker.engine_name, digest,
                      speaker.config.embedding_dim) if out_path else None)
    try:  # from the output's first scratch file on, a stopped run removes what it wrote
        if out is not None:
            out.start()
        if single:
            status = batch.embed_one(speaker, files[0], min_duration, json_output, out, digest,
                                     vad)
        else:
            status = batch.embed_many(speaker, items, min_duration, window, hop, json_output,
                                      out, digest, vad)
        if out is not None and out.count:
            out.commit()
            sys.stderr.write(f"audio: wrote {batch.plural(out.count, 'embedding')} to "
                             f"{out_path}\n")
        elif out is not None:
            sys.stderr.write(f"audio: nothing embedded; {out_path} not written\n")
    finally:
        if out is not None:
            out.discard()
    if status:
        raise typer.Exit(status)


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


def _stopped() -> None:
    """Leave a run stopped by a signal with status 128 + n, its clean-up already done.

    os._exit, because CPython ends a process by SIGINT whatever its exit status once a
    KeyboardInterrupt has escaped code an extension ran through PyRun_String (an import
    it makes, for one), even if that interrupt was caught later."""
    message, code = interrupted()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream
            pass
    sys.stderr.write(f"audio: error: {message}\n")
    sys.stderr.flush()
    os._exit(code)


def _warning_line(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning (an input's, a library's) as one `audio: warning:` line, not Python's two."""
    sys.stderr.write(f"audio: warning: {message}\n")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every known error into one line on stderr."""
    warnings.showwarning = _warning_line
    catch_signals()
    plain_help()
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
        _stopped()
    except CLICK_ERRORS as exc:
        _fail(exc.format_message(), exc.exit_code)
    except AudioCliError as exc:
        _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        _stopped()
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_INTERNAL)
    except Exception as exc:  # noqa: BLE001 - last resort: one line unless debugging
        if received:  # a signal inside an import surfaces as another error (RuntimeError)
            _stopped()
        if os.environ.get(DEBUG_ENV):
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for a traceback)",
              EXIT_INTERNAL)
    if received:  # typer turns the KeyboardInterrupt into a bare status 130
        _stopped()
    sys.exit(code or 0)


