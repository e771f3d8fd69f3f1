"""`audio diarize --plot`: who spoke when as one lane per speaker on a time axis, overlapping
speech shaded (the system's and the reference's, each behind its own lanes); with a
reference, its lanes above the system's, each in the colour of the system speaker DER's
mapping pairs it with, and the DER in the title (diarization/scoring.py, the full
convention: no collar, overlap scored)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from audio_cli.diarization.scoring import (
    FULL,
    Intervals,
    merged,
    overlap_pairs,
    score_recording,
    scored_region,
    speaker_times,
)
from audio_cli.diarization.turns import Turn
from audio_cli.plots.figure import colours, pyplot, save

SYSTEM, REFERENCE = "system", "reference"


@dataclass(frozen=True)
class Lane:
    """One speaker's bars: (start, end) of each of its turns, in time order."""

    name: str
    group: str  # SYSTEM or REFERENCE
    bars: list[tuple[float, float]]


@dataclass(frozen=True)
class Timeline:
    """What the picture shows: lanes (reference first), the system's overlapping speech,
    the DER against the reference (a fraction; None without one) and the title."""

    lanes: list[Lane]
    overlaps: Intervals
    der: float | None
    title: str
    mapped: dict[str, str]  # reference speaker -> the system speaker DER pairs it with
    reference_overlaps: Intervals  # where two or more reference speakers speak at once


def lanes(turns: Sequence[Turn], group: str) -> list[Lane]:
    """One lane per speaker, in order of first activity; bars in time order."""
    found: dict[str, list[tuple[float, float]]] = {}
    for turn in sorted(turns, key=lambda t: (t.start, t.end)):
        found.setdefault(turn.speaker, []).append((turn.start, turn.end))
    return [Lane(name, group, bars) for name, bars in found.items()]


def overlaps(turns: Sequence[Turn]) -> Intervals:
    """Where two or more speakers speak at once (each speaker's own turns merged first)."""
    edges: list[tuple[float, int]] = []
    for speaker in {t.speaker for t in turns}:
        for start, end in merged([(t.start, t.end) for t in turns if t.speaker == speaker]):
            edges += [(start, 1), (end, -1)]
    found: Intervals = []
    active, since = 0, 0.0
    for time, step in sorted(edges):  # at one instant, ends (-1) before starts (+1)
        if active >= 2 and time > since:
            if found and found[-1][1] >= since:
                found[-1] = (found[-1][0], time)
            else:
                found.append((since, time))
        active += step
        since = time
    return found


def timeline_data(turns: Sequence[Turn], reference: Sequence[Turn] | None = None,
                  title: str | None = None) -> Timeline:
    """The lanes, overlaps and DER of one recording's turns (and its reference turns)."""
    uri = turns[0].uri if turns else (reference[0].uri if reference else "")
    speakers = len({t.speaker for t in turns})
    heading = title or f"{uri}: {speakers} speaker{'s' if speakers != 1 else ''}"
    der, mapped = None, {}
    shown = lanes(turns, SYSTEM)
    if reference is not None:
        der = score_recording(reference, turns, None, FULL).der
        heading += f", DER {der:.1%} (no collar, overlap scored)"
        shown = lanes(reference, REFERENCE) + shown
        times = speaker_times(reference, turns, scored_region(reference, turns, None, 0.0))
        shared = times.shared
        mapped = {times.ref_speakers[r]: times.hyp_speakers[h]
                  for r, h in overlap_pairs(times) if shared[r, h] > 0}
    return Timeline(shown, overlaps(turns), der, heading, mapped,
                    overlaps(reference) if reference is not None else [])


def timeline_figure(data: Timeline):
    """Draw a Timeline: lanes top to bottom, reference first; a reference speaker in the
    colour of the system speaker DER maps it to (grey: none). Returns the Figure."""
    plt = pyplot()
    count = len(data.lanes)
    figure, axes = plt.subplots(figsize=(11, 1.2 + 0.42 * max(count, 1)))
    system = [lane for lane in data.lanes if lane.group == SYSTEM]
    palette = dict(zip([lane.name for lane in system], colours(len(system)), strict=True))
    rows = list(range(count - 1, -1, -1))  # the first lane on top
    for row, lane in zip(rows, data.lanes, strict=True):
        colour = palette.get(lane.name if lane.group == SYSTEM
                             else data.mapped.get(lane.name, ""), "0.45")
        axes.broken_barh([(start, end - start) for start, end in lane.bars], (row - 0.35, 0.7),
                         facecolors=colour, gid=f"{lane.group}:{lane.name}")
    # the system's lanes are rows 0 .. len(system) - 1, the reference's above; y from -0.6
    split = (len(system) - 0.5 + 0.6) / (count + 0.2)  # as a fraction of the axes' height
    for spans, low, high, gid in ((data.overlaps, 0.0, split, "overlap"),
                                  (data.reference_overlaps, split, 1.0, "reference_overlap")):
        for start, end in spans:
            axes.axvspan(start, end, ymin=low, ymax=high, color="red", alpha=0.15,
                         linewidth=0, zorder=0, gid=gid)
    axes.set_yticks(rows)
    axes.set_yticklabels([("ref " if lane.group == REFERENCE else "") + lane.name
                          for lane in data.lanes])
    axes.set_ylim(-0.6, count - 0.4)
    if len(system) < count:  # a line between the reference and the system's lanes
        axes.axhline(len(system) - 0.5, color="black", linewidth=0.8)
    ends = [end for lane in data.lanes for _, end in lane.bars]
    axes.set_xlim(0, max(ends, default=1.0) * 1.01)
    shaded = data.overlaps or data.reference_overlaps
    axes.set_xlabel("time (s)" + ("; red: overlapping speech" if shaded else ""))
    axes.set_title(data.title, fontsize=10)
    axes.grid(True, axis="x", color="0.85", linewidth=0.6)
    return figure


def timeline(turns: Sequence[Turn], path: Path | None = None,
             reference: Sequence[Turn] | None = None, title: str | None = None,
             force: bool = False):
    """Draw a recording's turns (beside its reference's, if given) and, with `path`, write
    the picture there (.png or .svg). Returns the Figure (closed once written)."""
    figure = timeline_figure(timeline_data(turns, reference, title))
    if path is not None:
        save(figure, Path(path), force)
    return figure
