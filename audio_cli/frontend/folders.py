"""Audio folders: the file extensions libsndfile reads and `find_audio_files`, the one walker
of audio folders (`embed-speaker DIR`, `index DIR` and `eval`'s datasets use it)."""

from __future__ import annotations

import os
from pathlib import Path

# File extensions libsndfile reads, looked for when a folder is given as input.
AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3",
    ".aif", ".aiff", ".aifc", ".au", ".snd", ".caf", ".w64", ".rf64",
})


def find_audio_files(directory: str | os.PathLike) -> list[str]:
    """Audio files (AUDIO_EXTENSIONS, any case) under `directory`, recursively, sorted by path
    components; hidden files and folders (`.name`) below it are skipped."""
    found: list[tuple[tuple[str, ...], str]] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.startswith(".") or Path(name).suffix.lower() not in AUDIO_EXTENSIONS:
                continue
            path = os.path.join(root, name)
            found.append((Path(os.path.relpath(path, directory)).parts, path))
    return [path for _, path in sorted(found)]
