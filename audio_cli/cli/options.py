"""The options commands share, declared once: checks run while the command line is parsed
(before any file or model is touched), and the embedding options that every command that
embeds takes, handed to it as one `EmbedOptions` value (`@embedding_options`).

Seconds options are checked against one sample at 16 kHz as well as their range. The default
model is $AUDIO_MODEL, else the built-in one (resolved by pipeline.options.default_model)."""

from __future__ import annotations

import functools
import inspect
import math
import os
import typing
from pathlib import Path
from typing import Annotated

import typer

from audio_cli.cli import messages
from audio_cli.models.registry import DEFAULT_MODEL, display_name
from audio_cli.pipeline.options import (
    DEFAULT_MAX_DURATION,
    DEFAULT_MIN_DURATION,
    MAX_DURATION_ENV,
    MODEL_ENV,
    PRECISIONS,
    EmbedOptions,
)
from audio_cli.pipeline.parallel import usable_cpus
from engines.errors import InputAudioError, UsageError

MAX_SECONDS = 86400.0  # a day: the longest window, hop or minimum duration accepted
ONE_SAMPLE = 1 / 16000  # seconds: one sample at 16 kHz, the rate every model's front-end uses;
#                         the shortest window, hop or duration that means anything


# ---------------------------------------------------------------- checks
# NaN and infinities are refused everywhere (float() accepts "nan" and "inf").

def _bad(value, rule: str):
    raise typer.BadParameter(f"{value!s}: {rule}")


def positive_seconds(value: float | None) -> float | None:
    """--window, --hop: a finite number of seconds, at least one sample and at most a day."""
    if value is not None and not (math.isfinite(value) and ONE_SAMPLE <= value <= MAX_SECONDS):
        _bad(value, f"must be a number of seconds from one sample ({ONE_SAMPLE:g}) to "
             f"{MAX_SECONDS:g}")
    return value


def min_seconds(value: float) -> float:
    """--min-duration: a finite number of seconds up to a day: 0, or at least one sample."""
    if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        _bad(value, f"must be a number of seconds from 0 to {MAX_SECONDS:g}")
    if 0 < value < ONE_SAMPLE:
        _bad(value, f"is less than one sample ({ONE_SAMPLE:g} s); use 0 for no minimum")
    return value


def max_seconds(value: float) -> float:
    """--max-duration: a finite number of seconds, at least one sample."""
    if not (math.isfinite(value) and value >= ONE_SAMPLE):
        _bad(value, f"must be a finite number of seconds, at least one sample ({ONE_SAMPLE:g})")
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


def precision(value: str) -> str:
    """--precision: float32 or int8."""
    if value not in PRECISIONS:
        _bad(value, f"must be one of {', '.join(PRECISIONS)}")
    return value


def engine(value: str) -> str:
    """--engine: one of the engines' names (auto, onnx, mlx, coreml)."""
    from engines import ENGINE_NAMES

    if value not in ENGINE_NAMES:
        _bad(value, f"unknown engine; choose one of: {', '.join(ENGINE_NAMES)}")
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
        messages.warning(f"--threads {value} is more than the {cpus} CPUs here; using {cpus}")
        return cpus
    return value


def check_inputs_exist(paths: list[str]) -> None:
    """Exit 3 for a named file that is not there, before any model is resolved (which may
    need a download): `-` (stdin) and existing paths pass; the loader checks the rest."""
    missing = [p for p in paths if p != "-" and not os.path.lexists(p)]
    if missing:
        raise InputAudioError("; ".join(f"{p}: no such file" for p in missing))


# ---------------------------------------------------------------- declarations

ModelOpt = Annotated[str | None, typer.Option(
    "--model", metavar="MODEL", show_default=f"${MODEL_ENV}, else {display_name(DEFAULT_MODEL)}",
    help="Hub repo id, known name, local model directory or NeMo .nemo file.")]
EngineOpt = Annotated[str, typer.Option(
    "--engine", metavar="ENGINE", callback=engine,
    help="Inference engine: auto (MLX on Apple Silicon, else onnx), onnx, mlx or coreml.")]
ThreadsOpt = Annotated[int | None, typer.Option(
    "--threads", metavar="N", callback=threads,
    help="CPU threads for the engine (default: all; capped at the CPUs here).")]
PrecisionOpt = Annotated[str, typer.Option(
    "--precision", metavar="PRECISION", callback=precision,
    help="float32, or int8: an int8 network made once from the float32 one (onnx, coreml).")]
MinDurOpt = Annotated[float, typer.Option(
    "--min-duration", metavar="SECONDS", callback=min_seconds,
    help="Refuse audio shorter than this many seconds (of speech, with --vad).")]
MaxDurOpt = Annotated[float, typer.Option(
    "--max-duration", metavar="SECONDS", callback=max_seconds, envvar=MAX_DURATION_ENV,
    show_envvar=True, help="Refuse recordings longer than this many seconds (from the header, "
    "before decoding; a stream as soon as it passes that length).")]
VadOpt = Annotated[bool, typer.Option(
    "--vad/--no-vad", help="Embed only the speech that voice-activity detection (Silero VAD) "
    "finds, as one utterance; --no-vad embeds every sample.")]
JsonOpt = Annotated[bool, typer.Option(
    "--json", help="JSON on stdout: one document, or JSON Lines (one record a line) where a "
    "command gives one per input.")]
DbOpt = Annotated[Path | None, typer.Option(
    "--db", metavar="PATH", callback=db_folder,
    help="Store file (default: $AUDIO_DB, else audio/store.sqlite3 in the user's data "
    "directory).")]

# The embedding options: (parameter, type, default). Their defaults are EmbedOptions'; the
# model's is None here, so that EmbedOptions resolves it ($AUDIO_MODEL, else the built-in).
_EMBEDDING = (("model", ModelOpt, None), ("engine", EngineOpt, EmbedOptions.engine),
              ("threads", ThreadsOpt, EmbedOptions.threads),
              ("precision", PrecisionOpt, EmbedOptions.precision),
              ("min_duration", MinDurOpt, DEFAULT_MIN_DURATION),
              ("max_duration", MaxDurOpt, DEFAULT_MAX_DURATION),
              ("vad", VadOpt, EmbedOptions.vad))
EMBEDDING_NAMES = tuple(name for name, _, _ in _EMBEDDING)


def embedding_options(command):
    """Give a command the embedding options (--model, --engine, --threads, --precision,
    --min-duration, --max-duration, --vad); it receives them as one `options: EmbedOptions`
    parameter (without --model, EmbedOptions' default model: $AUDIO_MODEL or the built-in)."""
    signature = inspect.signature(command)
    hints = typing.get_type_hints(command, include_extras=True)
    kept = [p.replace(annotation=hints.get(p.name, p.annotation))
            for p in signature.parameters.values() if p.name != "options"]
    added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                               default=default) for name, kind, default in _EMBEDDING]

    @functools.wraps(command)
    def run(**values):
        given = {name: values.pop(name) for name in EMBEDDING_NAMES}
        if given["model"] is None:
            del given["model"]
        if given["min_duration"] > given["max_duration"]:
            raise UsageError(f"--min-duration {given['min_duration']:g} s is more than "
                             f"--max-duration {given['max_duration']:g} s")
        return command(**values, options=EmbedOptions(**given))

    run.__signature__ = signature.replace(parameters=[*kept, *added])
    run.__annotations__ = {p.name: p.annotation for p in [*kept, *added]}
    return run


def given_on_command_line(ctx: typer.Context, names: tuple[str, ...]) -> list[str]:
    """The options among `names` (parameter names) that the user typed."""
    given = []
    for name in names:
        source = ctx.get_parameter_source(name)
        if source is not None and source.name != "DEFAULT":
            given.append("--" + name.replace("_", "-"))
    return given


def refuse(ctx: typer.Context, names: tuple[str, ...], why: str) -> None:
    """UsageError naming the options of `names` the user gave where they do not apply."""
    given = given_on_command_line(ctx, names)
    if given:
        raise UsageError(f"{', '.join(given)}: {why}")

