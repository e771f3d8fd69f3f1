"""List labelled audio for evaluation: a manifest CSV or one sub-folder per speaker.

Precedence for a dataset path:
1. a `.csv` file: that manifest;
2. a directory holding `manifest.csv`: that manifest (its sub-folders are not scanned);
3. any other directory: each sub-folder is a speaker and every audio file below it,
   at any depth, is one of its utterances (hidden files and folders are skipped).
A manifest has `speaker` and `file` columns (others are ignored); `file` is relative to the
CSV's folder unless absolute.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from audio_cli.frontend.folders import AUDIO_EXTENSIONS, walk_audio
from engines.errors import InputAudioError

MANIFEST_NAME = "manifest.csv"
REQUIRED_COLUMNS = ("speaker", "file")


@dataclass(frozen=True)
class Utterance:
    """One labelled recording."""

    speaker: str
    path: Path


@dataclass(frozen=True)
class Dataset:
    """Utterances of a dataset, in a stable order, and how they were found."""

    source: Path
    layout: str  # "manifest" or "folders"
    utterances: list[Utterance]
    # entries of its folders that are not regular files (FIFOs, sockets, dangling links...):
    # never opened, each a failed input
    skipped: list[InputAudioError] = field(default_factory=list)


def audio_files(directory: Path, skipped: list[InputAudioError] | None = None) -> list[Path]:
    """Regular audio files below `directory`, at any depth (frontend.folders.walk_audio); the
    entries that are not regular files are appended to `skipped` as errors."""
    files = []
    for entry in walk_audio(directory):
        if entry.problem is None:
            files.append(Path(entry.path))
        elif skipped is not None:
            skipped.append(InputAudioError(entry.message))
    return files


def read_manifest(csv_path: Path) -> Dataset:
    """Read a manifest CSV with `speaker` and `file` columns (paths relative to the CSV)."""
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in REQUIRED_COLUMNS if c not in columns]
            if missing:
                raise InputAudioError(
                    f"{csv_path}: not a manifest (needs columns speaker,file; "
                    f"missing {', '.join(missing)})")
            reader.fieldnames = columns
            utterances = [_manifest_row(csv_path, reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputAudioError(f"{csv_path}: cannot read the manifest ({exc})") from None
    return Dataset(csv_path, "manifest", utterances)


def _manifest_row(csv_path: Path, line: int, row: dict) -> Utterance:
    speaker = (row.get("speaker") or "").strip()
    name = (row.get("file") or "").strip()
    if not speaker or not name:
        raise InputAudioError(f"{csv_path}:{line}: empty speaker or file")
    path = Path(name).expanduser()
    return Utterance(speaker, path if path.is_absolute() else csv_path.parent / path)


def scan_folders(directory: Path) -> Dataset:
    """One speaker per sub-folder (named after it), with every audio file below it."""
    utterances: list[Utterance] = []
    skipped: list[InputAudioError] = []
    for sub in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
        utterances.extend(Utterance(sub.name, path) for path in audio_files(sub, skipped))
    return Dataset(directory, "folders", utterances, skipped)


def load_dataset(path: Path) -> Dataset:
    """The utterances of a dataset path (see the module docstring for the precedence)."""
    if not path.exists():
        raise InputAudioError(f"{path}: no such file or directory")
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise InputAudioError(f"{path}: expected a directory or a manifest .csv")
        dataset = read_manifest(path)
    elif (path / MANIFEST_NAME).is_file():
        dataset = read_manifest(path / MANIFEST_NAME)
    else:
        dataset = scan_folders(path)
    if not dataset.utterances:
        if dataset.layout == "manifest":
            raise InputAudioError(f"{dataset.source}: the manifest lists no files")
        loose = " (audio files directly in it belong to no speaker)" if any(
            p.suffix.lower() in AUDIO_EXTENSIONS for p in path.iterdir()) else ""
        raise InputAudioError(f"{path}: no speaker sub-folders with audio files{loose}")
    check_unique(u.path for u in dataset.utterances)
    return dataset


def load_impostors(directory: Path, skipped: list[InputAudioError] | None = None
                   ) -> list[Path]:
    """Every regular audio file below `directory`: each is a speaker of its own (the entries
    that are not regular files are appended to `skipped`)."""
    if not directory.is_dir():
        raise InputAudioError(f"{directory}: not a directory (--impostors)")
    files = audio_files(directory, skipped)
    if not files:
        raise InputAudioError(f"{directory}: no audio files (--impostors)")
    return files


def check_unique(paths: Iterable[Path]) -> None:
    """Refuse a file listed twice: it would be scored against itself."""
    seen: set[Path] = set()
    for path in paths:
        key = path.resolve()
        if key in seen:
            raise InputAudioError(f"{path}: listed twice (it would be scored against itself)")
        seen.add(key)
