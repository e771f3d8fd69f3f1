"""Where engines keep files they derive from a model's weights (ONNX graphs, Core ML packages)."""

from __future__ import annotations

import os
from pathlib import Path

from audio_cli.weights import Weights

APP_CACHE = "audio-speaker"


def user_cache_dir(kind: str) -> Path:
    """`$XDG_CACHE_HOME/audio-speaker/KIND`, or `~/.cache/audio-speaker/KIND`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / APP_CACHE / kind


def cache_dirs(weights: Weights, kind: str, cache_dir: Path | None = None) -> list[Path]:
    """Directories to look in and write to, best first: `cache_dir`, else beside the weights,
    then the user cache."""
    if cache_dir is not None:
        return [Path(cache_dir)]
    beside = [weights.directory / kind] if weights.directory is not None else []
    return beside + [user_cache_dir(kind)]
