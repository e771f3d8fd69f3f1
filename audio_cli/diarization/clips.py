"""The samples of a piece that are embedded, and when an earlier piece's vector serves.

Chunks overlap (10 s every 4 s), so a short turn is seen by two or three chunks, and each of
them cuts nearly the same clip from it: the frames the model calls that speaker's differ
by a few at the edges. A clip that shares most of its samples with a clip already embedded
from an earlier chunk takes that clip's vector instead of being embedded again.

Measured with bench/diarize.py (CAM++, 2 threads, a 4 s step), reusing when the two clips'
sample sets have a Jaccard index of at least none/0.9/0.8/0.7/0.6/0.5: on the simulated
conversations 0/14/21/28/33/39 % of the embedded audio reused, DER full/fair 14.2/4.0 % at
none to 0.8, 14.3/4.1 % below; on the AMI excerpts 0/3/8/13/17/22 % reused, 29.1/17.6 % at
none to 0.8, 31.2/19.0 % below. Vectors of two clips of 2 s or more sharing 80-90 % of
their samples had a median cosine of 0.96; under 2 s CAM++'s vector moves much more with a
few frames either way (cosine down to 0.1 at 97 % shared), but such pieces are not
clustered (pipeline.TRAIN_SECONDS) and take whichever of their neighbours' labels is
closest.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from audio_cli.diarization import activity

SAME_CLIP = 0.8  # Jaccard index of two clips' samples from which the earlier vector serves


def clip_runs(mask: np.ndarray, keep: int) -> list[tuple[int, int]]:
    """[start, end) sample ranges of a chunk to embed: where `mask` is True, only the
    middle `keep` samples of them when there are more."""
    runs = activity.runs(mask)
    total = sum(b - a for a, b in runs)
    if total <= keep:
        return runs
    skip, kept = (total - keep) // 2, []
    for a, b in runs:
        if skip >= b - a:
            skip -= b - a
            continue
        a, skip = a + skip, 0
        kept.append((a, min(b, a + keep)))
        keep -= kept[-1][1] - a
        if keep == 0:
            break
    return kept


def jaccard(first: list[tuple[int, int]], second: list[tuple[int, int]]) -> float:
    """Shared samples over the samples of either, for two sorted lists of disjoint runs."""
    shared, i, j = 0, 0, 0
    while i < len(first) and j < len(second):
        shared += max(0, min(first[i][1], second[j][1]) - max(first[i][0], second[j][0]))
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    either = sum(b - a for a, b in first) + sum(b - a for a, b in second) - shared
    return shared / either if either else 0.0


class RecentClips:
    """The clips embedded from earlier chunks that a new chunk's clips may share samples
    with (runs on the recording's sample axis), each with the index of its vector."""

    def __init__(self) -> None:
        self.clips: deque[tuple[int, list[tuple[int, int]], int]] = deque()

    def same(self, chunk: int, runs: list[tuple[int, int]]) -> int | None:
        """The vector index of the earlier chunk's clip sharing the most samples with
        `runs`, when their Jaccard index reaches SAME_CLIP; else None."""
        best, score = None, 0.0
        for other, other_runs, vector in self.clips:
            found = jaccard(runs, other_runs) if other < chunk else 0.0
            if found > score:
                best, score = vector, found
        return best if score >= SAME_CLIP else None

    def add(self, chunk: int, runs: list[tuple[int, int]], vector: int) -> None:
        self.clips.append((chunk, runs, vector))

    def forget_before(self, sample: int) -> None:
        """Drop the clips that end before `sample` (the next chunk's first)."""
        self.clips = deque(c for c in self.clips if c[1][-1][1] > sample)
