"""Audio folders: the file extensions libsndfile reads and `walk_audio`/`find_audio_files`,
the one walker of audio folders (`embed-speaker DIR`, `index DIR` and `eval`'s datasets use it).

Only regular files (or links to them) are taken from a folder: a FIFO, socket, device or
dangling link with an audio extension is never opened (a FIFO would block the run forever);
`walk_audio` reports it, in its sorted place, with why it was skipped."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

# File extensions libsndfile reads, looked for when a folder is given as input.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3",
    ".aif", ".aiff", ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64",
})


@dataclass(frozen=True)
class FolderEntry:
    """An audio-named entry of a folder: a regular file (`problem` None) or why it is not one."""

    path: str
    problem: str | None = None

    @property
    def message(self) -> str:
        """The one-line error of a skipped entry."""
        return f"{self.path}: {self.problem}; skipped"


def file_problem(path: str | os.PathLike) -> str | None:
    """None for a regular file (or a link to one), else why `path` is not one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a dangling link" if os.path.islink(path) else "no such file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a character device" if stat.S_ISCHR(mode)
            else "a block device" if stat.S_ISBLK(mode)
            else "a directory" if stat.S_ISDIR(mode) else "a special file")
    return f"not a regular file ({kind})"


def _audio_entries(directory: str | os.PathLike) -> Iterator[tuple[tuple[str, ...], FolderEntry]]:
    """Audio-named entries under `directory` as the walk meets them, with their path parts."""
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            path = os.path.join(root, name)
            yield (Path(os.path.relpath(path, directory)).parts,
                   FolderEntry(path, file_problem(path)))


def walk_audio(directory: str | os.PathLike) -> list[FolderEntry]:
    """Audio-named entries (AUDIO_EXTENSIONS, any case) under `directory`, recursively, sorted
    by path components; hidden files and folders (`.name`) below it are skipped. Entries that
    are not regular files carry their problem and must not be opened."""
    found = list(_audio_entries(directory))
    return [entry for _, entry in sorted(found, key=lambda pair: pair[0])]


def has_audio_names(directory: str | os.PathLike) -> bool:
    """Whether `walk_audio(directory)` finds anything (the walk stops at the first entry)."""
    return next(_audio_entries(directory), None) is not None


def find_audio_files(directory: str | os.PathLike) -> list[str]:
    """The regular audio files of `walk_audio(directory)` (the others left out)."""
    return [e.path for e in walk_audio(directory) if e.problem is None]
