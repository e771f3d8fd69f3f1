"""The `audio` command line: the app, its lazy command registry, and `main`, which turns
every error into one line on stderr and the exit status of cli/errors.py.

Each command lives in a module of this package (LAZY_COMMANDS), imported only when it runs
or help lists it, so `audio embed-speaker` loads none of the others.
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from typing import Annotated

import typer
from typer.core import TyperGroup

from audio_cli import __version__
from audio_cli.cli import messages
from audio_cli.cli.errors import (
    ABORTS,
    CLICK_ERRORS,
    DEBUG_ENV,
    EXIT_INTERNAL,
    EXIT_USAGE,
    NO_ARGS_HELP,
    USAGE_ERRORS,
    Failed,
    internal_message,
    status_of,
)
from audio_cli.cli.signals import catch_signals, interrupted, received
from engines.errors import AudioCliError
from engines.files import disk_error

APP_HELP = "Speaker embeddings (WeSpeaker ResNet34-LM, CAM++) from the command line."
# Commands defined in other modules: name -> module holding a Typer `app` that defines it.
LAZY_COMMANDS = {
    "embed-speaker": "audio_cli.cli.embed",
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
    "diarize": "audio_cli.cli.diarize",
    "eval-diarization": "audio_cli.cli.eval_diarization",
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


def _fail(message: str, code: int) -> None:
    messages.error(message)
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
    messages.error(message)
    os._exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app and turn every known error into one line on stderr."""
    warnings.showwarning = messages.show_warning
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
    except (AudioCliError, Failed) as exc:
        _fail(str(exc), status_of(exc))
    except KeyboardInterrupt:
        _stopped()
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(EXIT_INTERNAL)
    except Exception as exc:  # noqa: BLE001 - last resort: one line unless debugging
        if received:  # a signal inside an import surfaces as another error (RuntimeError)
            _stopped()
        disk = disk_error(exc) if isinstance(exc, OSError) else None
        if disk is not None:  # a full disk or failing device where no writer named its file
            _fail(str(disk), status_of(disk))
        if os.environ.get(DEBUG_ENV):
            raise
        _fail(internal_message(exc), EXIT_INTERNAL)
    if received:  # typer turns the KeyboardInterrupt into a bare status 130
        _stopped()
    sys.exit(code or 0)


