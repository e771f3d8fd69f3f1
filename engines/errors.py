"""The errors every layer raises for what a user can fix: one base type and its kinds.

Each kind names what went wrong, not what to do about it: the command line maps kinds to
exit statuses (audio_cli/cli/errors.py), a library caller catches the classes.
"""

from __future__ import annotations


class AudioCliError(Exception):
    """An error caused by the user's input or environment; printed as one line."""

    kind = "internal"


class UsageError(AudioCliError):
    """A wrong option or option value."""

    kind = "usage"


class InputAudioError(AudioCliError):
    """The input audio cannot be used (missing, corrupt, too short, silent, ...)."""

    kind = "input"


class ModelError(AudioCliError):
    """The model cannot be found, downloaded or read."""

    kind = "model"


class EngineError(AudioCliError):
    """The inference engine is unavailable here or failed."""

    kind = "engine"


class DiskError(AudioCliError):
    """Writing (or reading) a file failed for the file system's reason: no space left, over
    quota, an I/O error, a read-only file system, no permission."""

    kind = "disk"
