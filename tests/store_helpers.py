"""Helpers for the store tests: a random model, synthetic speakers (the CLI: cli_run.py)."""

from __future__ import annotations

from pathlib import Path

from model_factory import small_config, write_model
from signals import voiced, write_wav

# Four synthetic "speakers": voiced signals with different pitch.
PITCHES = (100.0, 140.0, 190.0, 250.0)


def make_model(directory: Path, seed: int = 0) -> Path:
    """A small random-weight model directory (its model id depends on the seed)."""
    write_model(directory, small_config(model_id=f"test/small-random-{seed}"), seed=seed)
    return directory


def make_speakers(directory: Path, per_speaker: int = 3, seconds: float = 1.5) -> list[list[Path]]:
    """Files of the synthetic speakers: result[s][i] is file i of speaker s."""
    directory.mkdir(parents=True, exist_ok=True)
    return [[write_wav(directory / f"spk{s}_{i}.wav", voiced(seconds, f0=f0, seed=10 * s + i))
             for i in range(per_speaker)] for s, f0 in enumerate(PITCHES)]
