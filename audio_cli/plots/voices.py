"""`audio speakers map`: every exemplar and recording of a store as a point in 2-D
(projection.py keeps neighbours near), coloured by speaker, names where enrolled."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio_cli.plots.figure import colours, pyplot
from audio_cli.plots.projection import project
from audio_cli.store.points import StorePoints

UNKNOWN = "0.6"  # grey: a recording no enrolled speaker reaches the threshold with


@dataclass(frozen=True)
class VoiceMap:
    """What the map shows: one 2-D position per vector (exemplars first, then recordings),
    the speaker each point is coloured by (None: unknown) and whether it is an exemplar."""

    positions: np.ndarray  # (E + R, 2)
    speakers: list[str | None]
    exemplar: np.ndarray  # (E + R,) bool
    title: str


def voice_map(points: StorePoints, recording_speakers: list[str | None], title: str
              ) -> VoiceMap:
    """Project a store's vectors (exemplars first, so they are the projection's landmarks)."""
    vectors = np.concatenate([points.exemplars, points.recordings]).astype(np.float64)
    positions = project(vectors, preferred=len(points.exemplars))
    exemplar = np.arange(len(vectors)) < len(points.exemplars)
    return VoiceMap(positions, [*points.names, *recording_speakers], exemplar, title)


def map_figure(data: VoiceMap):
    """Draw a VoiceMap: recordings as dots, exemplars as stars, each speaker's name at the
    middle of its exemplars. Returns the Figure."""
    plt = pyplot()
    from matplotlib.colors import to_rgba

    figure, axes = plt.subplots(figsize=(8, 7))
    named = sorted({s for s in data.speakers if s is not None})
    palette = dict(zip(named, colours(len(named)), strict=True))
    fill = [palette[s] if s is not None else UNKNOWN for s in data.speakers]
    fill = np.array([to_rgba(c) for c in fill]).reshape(-1, 4)
    recordings, exemplars = ~data.exemplar, data.exemplar
    dot = 14 if recordings.sum() < 2000 else 3
    axes.scatter(*data.positions[recordings].T, s=dot, c=fill[recordings], linewidths=0,
                 gid="recordings", rasterized=bool(recordings.sum() > 2000))
    axes.scatter(*data.positions[exemplars].T, s=110, c=fill[exemplars], marker="*",
                 edgecolors="black", linewidths=0.6, gid="exemplars")
    speakers = np.array([s if s is not None else "" for s in data.speakers], dtype=object)
    for name in sorted(set(speakers[exemplars])):
        x, y = data.positions[exemplars & (speakers == name)].mean(axis=0)
        axes.annotate(name, (x, y), xytext=(6, 6), textcoords="offset points", fontsize=9,
                      fontweight="bold", gid=f"name:{name}")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(data.title, fontsize=10)
    axes.set_xlabel("\u2605 enrolled exemplar, \u2022 indexed recording (coloured by the "
                    "speaker it is identified as; grey: unknown)", fontsize=8)
    return figure
