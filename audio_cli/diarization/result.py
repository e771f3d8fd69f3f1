"""A diarization's result: the turns and one mean vector per speaker, and the naming of
speakers SPEAKER_00, SPEAKER_01, ... in order of first activity (both paths name them so)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from audio_cli.diarization import activity
from audio_cli.diarization.clustering import normalise
from audio_cli.diarization.turns import Turn


@dataclass
class Diarization:
    """One recording's result: its turns, and for each speaker label in them the mean of the
    unit-length embeddings given that label, itself of unit length (what a store's
    enrolled speakers can be compared with)."""

    turns: list[Turn]
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    # Set when the speakers were named from a store (store/naming.py): each label's score
    # against the enrolled speaker whose name it took, None for a label left anonymous.
    scores: dict[str, float | None] | None = None


def labelled(active: np.ndarray, grid: activity.FrameGrid, uri: str, duration: float,
             means: np.ndarray) -> Diarization:
    """(T, S) activity and (S, dim) per-column mean vectors -> a Diarization whose speakers
    are named SPEAKER_00, ... in order of first activity."""
    order = activity.speaker_order(active)
    names = activity.speaker_names(len(order))
    turns = activity.to_turns(active[:, order], grid, uri, names, duration)
    spoken = {t.speaker for t in turns}
    vectors = {name: normalise(means[column][None])[0]
               for name, column in zip(names, order, strict=True)
               if name in spoken and column < len(means)}
    return Diarization(turns, vectors)


def label_means(vectors: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """(count, dim) mean of the unit-length vectors of each label (zeros for none)."""
    means = np.zeros((count, vectors.shape[1]))
    unit = normalise(vectors)
    for g in range(count):
        if (labels == g).any():
            means[g] = unit[labels == g].mean(axis=0)
    return means
