"""Diarization error rate (DER) with its parts, and Jaccard error rate (JER): a hypothesis
scored against a reference, per recording and in total.

Definitions (NIST RT-09 evaluation plan, md-eval; DIHARD III evaluation plan, dscore;
pyannote.metrics):
- Scored region: the UEM's regions for the recording or, without a UEM, everything from the
  first to the last turn of reference and hypothesis together (what pyannote.metrics does
  without a UEM). A collar removes `collar` seconds on each side of every reference turn's
  start and end from it (md-eval `-c 0.25`; pyannote.metrics `collar=0.5`, the whole width).
- Overlap is scored: at each instant the reference counts N_ref speakers and the hypothesis
  N_hyp. The reference speech is the sum of N_ref over time, missed speech the sum of
  max(0, N_ref - N_hyp), false alarm the sum of max(0, N_hyp - N_ref), and confusion the
  sum of min(N_ref, N_hyp) less the time where a reference speaker and the hypothesis speaker
  mapped to it both speak. The mapping is one-to-one and maximises that shared time over the
  scored region (Hungarian method). DER = (missed + false alarm + confusion) / reference
  speech.
- JER (DIHARD III, as dscore computes it): each reference speaker r is paired one-to-one with
  a hypothesis speaker h so that the summed speaker errors are least; a paired speaker's
  error is 1 - |r and h| / |r or h| (times in the scored region), an unpaired one's is 1. A
  recording's JER is the mean over its reference speakers; the total is the mean over all
  reference speakers of all recordings. (pyannote.metrics pairs speakers for JER with DER's
  mapping instead, which can give a higher JER when the two mappings differ.) JER is taken
  over the same scored region as DER, collar included, as pyannote.metrics does; dscore
  scores JER without a collar, which is the "full" JER here.
- A speaker's own overlapping turns count once (the union of its turns; pyannote.metrics
  counts such a speaker twice there); turns of zero length are ignored, collars included.
- Totals add times over recordings (not a mean of rates). A recording without reference
  speech has DER 0 without any hypothesis speech and 1 (100 %) with some, as md-eval via
  dscore and pyannote.metrics report it; its JER is 0 or 1 in the same way (dscore).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np

from audio_cli.diarization.assignment import min_cost_assignment
from audio_cli.diarization.turns import Turn
from engines.errors import UsageError

Intervals = list[tuple[float, float]]  # sorted, disjoint, each start < end, in seconds


@dataclass(frozen=True)
class Convention:
    """How the scored region is cut: `collar` seconds on each side of reference boundaries."""

    name: str
    collar: float
    description: str


FULL = Convention("full", 0.0, "no collar, overlap scored")
FAIR = Convention("fair", 0.25, "0.25 s collar each side of reference boundaries, "
                  "overlap scored")
CONVENTIONS = (FULL, FAIR)


@dataclass(frozen=True)
class Score:
    """One recording (or a sum of recordings) scored under one convention; times in seconds.

    `speech` is the reference speaker time (each of two speakers at once counts);
    `speaker_errors` the summed per-speaker JER over `ref_speakers` reference speakers.
    """

    speech: float = 0.0
    missed: float = 0.0
    false_alarm: float = 0.0
    confusion: float = 0.0
    speaker_errors: float = 0.0
    ref_speakers: int = 0
    hyp_speakers: int = 0
    files: int = 1

    @property
    def errors(self) -> float:
        """Missed speech + false alarm + confusion, in seconds."""
        return self.missed + self.false_alarm + self.confusion

    def rate(self, seconds: float) -> float:
        """`seconds` as a fraction of the reference speech (0 or 1 without reference speech)."""
        if self.speech > 0:
            return seconds / self.speech
        return 1.0 if seconds > 0 else 0.0

    @property
    def der(self) -> float:
        """Diarization error rate, a fraction (1.0 is 100 %)."""
        return self.rate(self.errors)

    @property
    def jer(self) -> float:
        """Jaccard error rate, a fraction: the mean speaker error over reference speakers."""
        if self.ref_speakers:
            return self.speaker_errors / self.ref_speakers
        return 1.0 if self.hyp_speakers else 0.0

    def __add__(self, other: Score) -> Score:
        return Score(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                        for f in fields(Score)})


@dataclass(frozen=True)
class FileScores:
    """A recording's scores, one per convention (by name: "full", "fair")."""

    uri: str
    scores: dict[str, Score]


@dataclass(frozen=True)
class SpeakerTimes:
    """Who speaks how long in a scored region, and how much the parts overlap (seconds).

    ref_time: (R,) each reference speaker's time; hyp_time: (H,) each hypothesis speaker's;
    shared: (R, H) time both speak. durations: (S,) lengths of the elementary segments,
    between consecutive boundaries of any turn or region; ref_active (S, R) and hyp_active
    (S, H): who speaks in each.
    """

    ref_speakers: list[str]
    hyp_speakers: list[str]
    durations: np.ndarray
    ref_active: np.ndarray
    hyp_active: np.ndarray

    @property
    def ref_time(self) -> np.ndarray:
        return self.durations @ self.ref_active

    @property
    def hyp_time(self) -> np.ndarray:
        return self.durations @ self.hyp_active

    @property
    def shared(self) -> np.ndarray:
        return self.ref_active.T.astype(np.float64) @ (self.hyp_active * self.durations[:, None])


# ---------------------------------------------------------------- intervals


def merged(intervals: Sequence[tuple[float, float]]) -> Intervals:
    """The union of intervals as sorted, disjoint intervals (touching ones joined, empty
    ones dropped)."""
    out: Intervals = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _intersection(a: Intervals, b: Intervals) -> Intervals:
    out: Intervals = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start < end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _difference(a: Intervals, b: Intervals) -> Intervals:
    out: Intervals = []
    j = 0
    for start, end in a:
        while j < len(b) and b[j][1] <= start:
            j += 1
        k = j
        while k < len(b) and b[k][0] < end:
            if b[k][0] > start:
                out.append((start, b[k][0]))
            start = max(start, b[k][1])
            k += 1
        if start < end:
            out.append((start, end))
    return out


# ---------------------------------------------------------------- one recording


def scored_region(reference: Sequence[Turn], hypothesis: Sequence[Turn],
                  regions: Sequence[tuple[float, float]] | None, collar: float) -> Intervals:
    """Where a recording is scored: the UEM `regions` (or, without them, the span of all
    turns of both sides) less `collar` seconds each side of each reference turn boundary."""
    if regions is None:
        spoken = [t for t in (*reference, *hypothesis) if t.end > t.start]
        region = ([(min(t.start for t in spoken), max(t.end for t in spoken))]
                  if spoken else [])
    else:
        region = merged(regions)
    if collar > 0:
        collars = [(b - collar, b + collar) for t in reference if t.end > t.start
                   for b in (t.start, t.end)]
        region = _difference(region, merged(collars))
    return region


def _activity(turns: Sequence[Turn], region: Intervals) -> dict[str, Intervals]:
    """Each speaker's speech within the region (speakers with none left out)."""
    by_speaker: dict[str, list[tuple[float, float]]] = {}
    for turn in turns:
        by_speaker.setdefault(turn.speaker, []).append((turn.start, turn.end))
    activity = {s: _intersection(merged(spans), region) for s, spans in by_speaker.items()}
    return {s: spans for s, spans in sorted(activity.items()) if spans}


def _active(boundaries: np.ndarray, activity: dict[str, Intervals]) -> np.ndarray:
    """(segments, speakers) bool: who speaks between consecutive boundaries (every interval
    end point is one of the boundaries)."""
    active = np.zeros((max(len(boundaries) - 1, 0), len(activity)), dtype=bool)
    for column, spans in enumerate(activity.values()):
        steps = np.zeros(len(boundaries), dtype=np.int64)
        edges = np.asarray(spans, dtype=np.float64)
        np.add.at(steps, np.searchsorted(boundaries, edges[:, 0]), 1)
        np.add.at(steps, np.searchsorted(boundaries, edges[:, 1]), -1)
        active[:, column] = np.cumsum(steps)[:-1] > 0
    return active


def speaker_times(reference: Sequence[Turn], hypothesis: Sequence[Turn],
                  region: Intervals) -> SpeakerTimes:
    """Who speaks when within `region`, on both sides, cut into elementary segments."""
    ref, hyp = _activity(reference, region), _activity(hypothesis, region)
    points = {p for spans in (*ref.values(), *hyp.values()) for span in spans for p in span}
    boundaries = np.array(sorted(points), dtype=np.float64)
    durations = np.diff(boundaries) if len(boundaries) else np.zeros(0)
    return SpeakerTimes(list(ref), list(hyp), durations, _active(boundaries, ref),
                        _active(boundaries, hyp))


def overlap_pairs(times: SpeakerTimes) -> list[tuple[int, int]]:
    """DER's mapping: (reference, hypothesis) speaker indices pairing the most shared time."""
    return min_cost_assignment(-times.shared)


def jaccard_pairs(times: SpeakerTimes) -> list[tuple[int, int]]:
    """JER's mapping (dscore): the pairs with the least summed speaker error."""
    return min_cost_assignment(_speaker_errors(times))


def _speaker_errors(times: SpeakerTimes) -> np.ndarray:
    """(R, H): 1 - Jaccard index of each reference and hypothesis speaker's speech."""
    shared = times.shared
    union = times.ref_time[:, None] + times.hyp_time[None, :] - shared
    # clipped: rounding can leave the shared time a hair above the union
    return np.clip(1.0 - shared / np.maximum(union, np.finfo(np.float64).tiny), 0.0, 1.0)


def jaccard_errors(times: SpeakerTimes, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """(R,): each reference speaker's error under `pairs`; 1 where it has no partner."""
    errors = np.ones(len(times.ref_speakers))
    matrix = _speaker_errors(times)
    for r, h in pairs:
        errors[r] = matrix[r, h]
    return errors


def _seconds(value: float) -> float:
    """A sum of times to the nanosecond: what it adds up with rounding errors (a confusion of
    1e-15 s where there is none) goes."""
    return max(round(float(value), 9), 0.0)


def score_times(times: SpeakerTimes) -> Score:
    """DER's parts and the JER speaker errors of one recording's speaker times."""
    d = times.durations
    n_ref = times.ref_active.sum(axis=1)
    n_hyp = times.hyp_active.sum(axis=1)
    shared = times.shared
    correct = sum(shared[r, h] for r, h in overlap_pairs(times))
    return Score(
        speech=_seconds(d @ n_ref),
        missed=_seconds(d @ np.maximum(n_ref - n_hyp, 0)),
        false_alarm=_seconds(d @ np.maximum(n_hyp - n_ref, 0)),
        confusion=_seconds(d @ np.minimum(n_ref, n_hyp) - correct),
        speaker_errors=float(jaccard_errors(times, jaccard_pairs(times)).sum()),
        ref_speakers=len(times.ref_speakers),
        hyp_speakers=len(times.hyp_speakers),
    )


def score_recording(reference: Sequence[Turn], hypothesis: Sequence[Turn],
                    regions: Sequence[tuple[float, float]] | None = None,
                    convention: Convention = FULL) -> Score:
    """One recording's turns scored under a convention (`regions`: its UEM, if any)."""
    region = scored_region(reference, hypothesis, regions, convention.collar)
    return score_times(speaker_times(reference, hypothesis, region))


# ---------------------------------------------------------------- many recordings


def score_files(reference: Mapping[str, Sequence[Turn]], hypothesis: Mapping[str, Sequence[Turn]],
                uem: Mapping[str, Sequence[tuple[float, float]]] | None = None,
                conventions: Sequence[Convention] = CONVENTIONS) -> list[FileScores]:
    """Every reference recording scored under each convention, sorted by uri.

    A recording missing from the hypothesis is scored as all missed, and a hypothesis
    recording absent from the reference is ignored (a warning each). With a UEM, every
    reference recording must have regions in it (UsageError otherwise)."""
    extra = sorted(set(hypothesis) - set(reference))
    if extra:
        warnings.warn(f"{_listed(extra)} in the hypothesis but not in the reference: "
                      "ignored", stacklevel=2)
    absent = sorted(set(reference) - set(hypothesis))
    if absent:
        warnings.warn(f"{_listed(absent)} in the reference but not in the hypothesis: "
                      "scored as all missed", stacklevel=2)
    if uem is not None:
        absent = sorted(set(reference) - set(uem))
        if absent:
            more = f" (and {len(absent) - 1} more)" if len(absent) > 1 else ""
            raise UsageError(f"the UEM has no region for {absent[0]}{more}, which the "
                             "reference has")
    results = []
    for uri in sorted(reference):
        regions = None if uem is None else uem[uri]
        turns = hypothesis.get(uri, ())
        results.append(FileScores(uri, {
            c.name: score_recording(reference[uri], turns, regions, c) for c in conventions}))
    return results


def _listed(uris: Sequence[str], shown: int = 5) -> str:
    """`a is`, `a, b are`, `a, b, c, d, e and 3 more are`: recordings named in a warning."""
    names = ", ".join(uris[:shown]) + (f" and {len(uris) - shown} more" if len(uris) > shown
                                       else "")
    return f"{names} {'is' if len(uris) == 1 else 'are'}"


def total(files: Sequence[FileScores], convention: str) -> Score:
    """The sum of the recordings' scores under one convention (time-weighted rates)."""
    summed = Score(files=0)
    for f in files:
        summed = summed + f.scores[convention]
    return summed


def mean_der(files: Sequence[FileScores], convention: str) -> float | None:
    """The plain mean of per-recording DER over recordings with reference speech."""
    rates = [f.scores[convention].der for f in files if f.scores[convention].speech > 0]
    return float(np.mean(rates)) if rates else None
