"""One user-facing error type, its kinds, and the exit statuses they map to (for every layer).

Exit statuses (also in the README):

=====  ===========================================================
0      success
1      unexpected internal error (a bug: please report it)
2      wrong usage: unknown option, bad option value, unknown engine
3      bad input audio: missing, directory, empty, corrupt, too short, silent, non-finite
4      model problem: unknown model, weights not found or offline, bad checkpoint
5      engine problem: the engine cannot run on this machine or failed
6      store problem: --db is not an audio store, is corrupt, or is from a newer version
=====  ===========================================================
"""

from __future__ import annotations

DEBUG_ENV = "AUDIO_DEBUG"  # set (to anything) for a traceback instead of "internal error"

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_MODEL = 4
EXIT_ENGINE = 5
EXIT_STORE = 6  # audio_cli.store.db.StoreError


class AudioCliError(Exception):
    """An error caused by the user's input or environment; printed as one line."""

    exit_code = EXIT_INTERNAL


class UsageError(AudioCliError):
    """A wrong option or option value."""

    exit_code = EXIT_USAGE


class InputAudioError(AudioCliError):
    """The input audio cannot be used (missing, corrupt, too short, silent, ...)."""

    exit_code = EXIT_INPUT


class ModelError(AudioCliError):
    """The model cannot be found, downloaded or read."""

    exit_code = EXIT_MODEL


class EngineError(AudioCliError):
    """The inference engine is unavailable here or failed."""

    exit_code = EXIT_ENGINE
