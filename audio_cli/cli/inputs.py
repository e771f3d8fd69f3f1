"""Expand `embed-speaker` arguments (files, directories, @lists, -) into an ordered input list.

Rules (also in docs/cli.md):
- a directory is searched recursively for files whose extension libsndfile reads
  (AUDIO_EXTENSIONS, any case); hidden files and directories (`.name`) are skipped; the
  files are sorted by their path components, so the order never depends on the file system;
- `@LIST` reads one path per line (UTF-8); blank lines and lines starting with `#` are
  skipped, surrounding whitespace is stripped; a relative path is relative to the list
  file's directory (so a list travels with its data); an entry may be a directory;
  `@-` reads the list from stdin, relative to the current directory;
- `-` is audio on stdin; stdin can be used once (`-` or `@-`), and not when it is a terminal;
- a path given twice is embedded once, at its first place.
A FIFO, socket, device or dangling link found inside a directory is a failed input (never
opened); one named on the command line is read as given.
An unreadable list or a directory without audio files becomes a failed input, not an error
for the whole call; a missing file is left to the loader, which reports it in order.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from audio_cli.frontend.folders import AUDIO_EXTENSIONS, walk_audio
from audio_cli.frontend.inputs import LIST_PREFIX, STDIN, STDIN_HINT
from engines.errors import InputAudioError, UsageError

LIST_HINT = "pipe a list in, e.g. `ls *.wav | audio embed-speaker @-`"


@dataclass(frozen=True)
class InputItem:
    """One input to embed: its path as given (or `-`), or why it cannot be (an error)."""

    path: str
    error: InputAudioError | None = None


def expand_inputs(args: list[str]) -> list[InputItem]:
    """The inputs named by `args`, in order, each path once (see the module docstring)."""
    if not args:
        raise UsageError("no input given (pass files, directories, @LIST or -)")
    stdin_uses = [a for a in args if a in (STDIN, LIST_PREFIX + STDIN)]
    if len(stdin_uses) > 1:
        raise UsageError("stdin can be read only once (`-` or `@-`, not both or twice)")
    if stdin_uses and sys.stdin is not None and sys.stdin.isatty():
        what = f"not audio; {STDIN_HINT}" if stdin_uses[0] == STDIN else f"not a list; {LIST_HINT}"
        raise UsageError(f"stdin is a terminal, {what}")
    items: list[InputItem] = []
    for arg in args:
        if arg.startswith(LIST_PREFIX):
            items.extend(_expand_list(arg[len(LIST_PREFIX):]))
        elif arg == STDIN:
            items.append(InputItem(STDIN))
        else:
            items.extend(_expand_path(arg))
    return _first_of_each(items)


def _expand_path(path: str) -> list[InputItem]:
    """A file as is (missing ones too: the loader says so), a directory as its audio files."""
    if not os.path.isdir(path):
        return [InputItem(path)]
    found = walk_audio(path)
    if not found:
        return [InputItem(path, no_audio_files(path))]
    return [InputItem(e.path) if e.problem is None else
            InputItem(e.path, InputAudioError(e.message)) for e in found]


def no_audio_files(directory: str) -> InputAudioError:
    """The failed input of a directory without audio files."""
    kinds = ", ".join(sorted(e.lstrip(".") for e in AUDIO_EXTENSIONS))
    return InputAudioError(f"{directory}: no audio files in this directory (looked for {kinds})")


def _expand_list(list_path: str) -> list[InputItem]:
    """The inputs named in a list file (or stdin for `-`), relative to the list's directory."""
    label = LIST_PREFIX + list_path
    try:
        if list_path == STDIN:
            text, base = sys.stdin.read(), ""
        else:
            text, base = Path(list_path).read_text(encoding="utf-8"), os.path.dirname(list_path)
    except FileNotFoundError:
        return [InputItem(label, InputAudioError(f"{label}: no such list file"))]
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return [InputItem(label, InputAudioError(f"{label}: cannot read the list ({reason})"))]
    entries = [line.strip() for line in text.splitlines()]
    entries = [e for e in entries if e and not e.startswith("#")]
    if not entries:
        return [InputItem(label, InputAudioError(f"{label}: the list names no files"))]
    items: list[InputItem] = []
    for entry in entries:
        if entry == STDIN:
            items.append(InputItem(label, InputAudioError(
                f"{label}: `-` (stdin) can only be given on the command line")))
        else:
            items.extend(_expand_path(os.path.join(base, entry)))
    return items


def _first_of_each(items: list[InputItem]) -> list[InputItem]:
    """Drop repeated paths, keeping the first occurrence (outputs are keyed by path)."""
    seen: set[str] = set()
    unique = []
    for item in items:
        if item.path not in seen:
            seen.add(item.path)
            unique.append(item)
    return unique


def mark_missing(items: list[InputItem]) -> list[InputItem]:
    """The items, with files that are not there turned into failed inputs (checked before
    any model is loaded, so a missing file is said even when the model cannot be had)."""
    return [InputItem(i.path, InputAudioError(f"{i.path}: no such file"))
            if i.error is None and i.path != STDIN and not os.path.lexists(i.path) else i
            for i in items]
