"""How work is cut up: clips grouped into padded batches, long clips cut into exact chunks.

Batches: clips sorted by length, grouped so that padding wastes little (every clip in a batch
is at least MIN_FILL of the longest) and a batch holds at most `budget` frames in all. The
engines mask the padding, so a clip's vector is the one it gets alone.

Chunks: a time-local trunk's output step g (input frames g*S .. g*S+S-1, S the time stride)
depends only on input frames within R of them (R = the graph's receptive radius). A long
clip is run as overlapping spans whose starts lie on the stride grid; each span contributes
only its central steps, whose inputs it holds whole, so the steps equal those of one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MIN_FILL = 0.8  # shortest clip / longest clip within one padded batch


def plan_batches(lengths: Sequence[int], budget: int, ragged: bool = True) -> list[list[int]]:
    """Indices of clips grouped into batches (each sorted by length, batches by length).

    With `ragged` False (a trunk that cannot be masked), only equal lengths share a batch.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for index in order:
        length = lengths[index]
        if batches:
            current = batches[-1]
            first = lengths[current[0]]
            fits = (len(current) + 1) * length <= budget
            similar = first >= MIN_FILL * length if ragged else first == length
            if fits and similar:
                current.append(index)
                continue
        batches.append([index])
    return batches


@dataclass(frozen=True)
class Chunk:
    """Run input frames [start, stop); keep its output steps [keep_from, keep_to) (global)."""

    start: int
    stop: int
    keep_from: int
    keep_to: int

    def local_steps(self, stride: int) -> slice:
        """The kept steps as a slice of this chunk's own output."""
        offset = self.start // stride
        return slice(self.keep_from - offset, self.keep_to - offset)


def plan_chunks(num_frames: int, chunk_frames: int, stride: int, radius: int) -> list[Chunk]:
    """Overlapping spans covering a clip so that the kept steps tile 0..ceil(T/S) exactly."""
    margin = -(-radius // stride) + 1  # steps of context on each side
    total = -(-num_frames // stride)
    core = chunk_frames // stride - 2 * margin
    if core < 1:
        raise ValueError(f"chunks of {chunk_frames} frames leave no room beside the "
                         f"{margin * stride}-frame context on each side")
    chunks = []
    for first in range(0, total, core):
        last = min(first + core, total)
        start = max(0, (first - margin) * stride)
        stop = min(num_frames, (last + margin) * stride)
        chunks.append(Chunk(start, stop, first, last))
    return chunks
