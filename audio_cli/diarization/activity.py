"""Frame activities -> speaker turns: the number of speakers per frame, the best-scoring
speakers of each frame, exclusive (one speaker at a time) activity and runs of frames as
turns (the overlap-add of per-chunk values is chunks.OverlapAdd).

A frame grid is `FrameGrid(step, duration, start)`: frame j covers start + j * step to
start + j * step + duration seconds, so its centre is start + j * step + duration / 2 (the
segmentation model's framing; the VAD path uses a plain 10 ms grid with duration = step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio_cli.diarization.turns import Turn

MIN_GAP = 0.1  # seconds of silence inside one speaker's speech that are filled
# seconds; shorter turns (after filling) are dropped: the chunks covering a speaker change
# can disagree for a frame or two, which gave 20 ms turns of the other speaker
MIN_TURN = 0.2
# A frame has k speakers when its expected number of speakers (the segmentation model's
# class probabilities, averaged over the chunks covering it) exceeds k - 1 + this. Rounding
# (0.5) missed quiet speech and overlap: on the simulated conversations and the AMI excerpts
# (docs/diarize.md) 0.5/0.4/0.3 gave DER (fair) 5.3/4.8/4.5 % and 18.7/18.4/18.1 %.
COUNT_FROM = 0.3


@dataclass(frozen=True)
class FrameGrid:
    step: float  # seconds between frame starts
    duration: float  # seconds one frame covers
    start: float = 0.0  # seconds at which frame 0 starts

    def centre(self, index: int | np.ndarray) -> float | np.ndarray:
        return self.start + index * self.step + self.duration / 2

    def nearest(self, seconds: np.ndarray) -> np.ndarray:
        """The frame whose centre is nearest to each time (may be < 0 or past the end)."""
        return np.rint((seconds - self.centre(0)) / self.step).astype(np.int64)


def speaker_count(expected: np.ndarray, start: float = COUNT_FROM) -> np.ndarray:
    """(T,) expected speakers per frame -> (T,) int: k where it exceeds k - 1 + `start`."""
    return np.maximum(np.ceil(np.asarray(expected) - start), 0).astype(np.int64)


def top_speakers(score: np.ndarray, count: np.ndarray) -> np.ndarray:
    """(T, S) scores and (T,) speakers per frame -> (T, S) bool: the `count` best-scoring
    speakers of each frame (only among those scoring above 0)."""
    t, s = score.shape
    order = np.argsort(-score, axis=1, kind="stable")
    rank = np.empty_like(order)
    rank[np.arange(t)[:, None], order] = np.arange(s)[None, :]
    return (rank < np.minimum(count, s)[:, None]) & (score > 0)


def exclusive(active: np.ndarray, score: np.ndarray) -> np.ndarray:
    """At most one speaker per frame: where several are active, the best-scoring one."""
    masked = np.where(active, score, -np.inf)
    best = masked.argmax(axis=1)
    one = np.zeros_like(active)
    rows = np.flatnonzero(active.any(axis=1))
    one[rows, best[rows]] = True
    return one


def runs(column: np.ndarray, bridge: int = 0) -> list[tuple[int, int]]:
    """[start, end) frame ranges where a bool column is True; gaps shorter than `bridge`
    frames inside a range do not split it."""
    padded = np.concatenate([[False], column.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    found: list[tuple[int, int]] = []
    for a, b in zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True):
        if found and a - found[-1][1] < bridge:
            found[-1] = (found[-1][0], b)
        else:
            found.append((a, b))
    return found


def to_turns(active: np.ndarray, grid: FrameGrid, uri: str, names: list[str],
             end_time: float, min_gap: float = MIN_GAP, min_turn: float = MIN_TURN
             ) -> list[Turn]:
    """(T, S) bool activity -> turns, speaker s named names[s], sorted by start. A run of
    frames [a, b) spans the centre of frame a minus half a step to the centre of frame
    b - 1 plus half a step (clipped to [0, end_time]); gaps under `min_gap` are filled."""
    turns: list[Turn] = []
    half = grid.step / 2
    for s in range(active.shape[1]):
        spans: list[list[float]] = []
        for a, b in runs(active[:, s]):
            start = max(0.0, float(grid.centre(a)) - half)
            end = min(end_time, float(grid.centre(b - 1)) + half)
            if end <= start:
                continue
            if spans and start - spans[-1][1] < min_gap:
                spans[-1][1] = end
            else:
                spans.append([start, end])
        turns += [Turn(uri, round(a, 3), round(b, 3), names[s]) for a, b in spans
                  if b - a >= min_turn]
    return sorted(turns, key=lambda t: (t.start, t.end, t.speaker))


def speaker_order(active: np.ndarray) -> list[int]:
    """The columns of (T, S) activity that are ever active, in order of first activity: the
    order in which speakers are named SPEAKER_00, SPEAKER_01, ..."""
    used = [s for s in range(active.shape[1]) if active[:, s].any()]
    return sorted(used, key=lambda s: int(np.argmax(active[:, s])))


def speaker_names(count: int) -> list[str]:
    return [f"SPEAKER_{i:02d}" for i in range(count)]


def overlapped(turns: list[Turn]) -> list[bool]:
    """For each turn (one recording's), whether another speaker talks during part of it."""
    flags = []
    for turn in turns:
        flags.append(any(o.speaker != turn.speaker and o.start < turn.end and turn.start < o.end
                         for o in turns))
    return flags
