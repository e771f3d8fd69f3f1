"""A recording as overlapping fixed-length chunks read block by block, and per-chunk frame
values added back onto the recording's frame grid, so that neither the whole recording's
samples nor every chunk's values need to be in memory at once.

`chunk_batches` cuts decoded blocks (of any length: a whole recording in one block, or a
decoder's blocks) into chunks of `size` samples every `step`, keeping only the samples that
a chunk still to come reads. `OverlapAdd` is the mean over the chunks covering each frame
of values placed at each chunk's frame offset (float32: the values are small counts and
scores), filled one chunk at a time, on a stretch of frames at a time if need be.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np


def chunk_starts(num_samples: int, size: int, step: int) -> list[int]:
    """First sample of each chunk: every `step` samples, the last chunk reaching the end
    (and past it, to be zero-padded, when the recording is not a whole number of steps)."""
    starts = list(range(0, max(num_samples - size, 0) + step, step))
    if starts[-1] + size < num_samples:
        starts.append(starts[-1] + step)
    return starts


def chunk_batches(blocks: Iterable[np.ndarray], starts: list[int], size: int, batch: int
                  ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (index of the batch's first chunk, (B, size) float32 chunks, (B,) samples of
    each that the recording holds) for `batch` chunks at a time; a chunk's samples past the
    recording's end are zeros. A block is copied only where it joins the next one."""
    source = iter(blocks)
    buffer = np.zeros(0, dtype=np.float32)
    origin = 0  # the recording's sample index of buffer[0]
    ended = False
    for first in range(0, len(starts), batch):
        group = starts[first:first + batch]
        pending = []
        filled = origin + len(buffer)
        while not ended and filled < group[-1] + size:
            block = next(source, None)
            if block is None:
                ended = True
            else:
                pending.append(np.asarray(block, dtype=np.float32))
                filled += len(pending[-1])
        if pending:  # one block alone (a whole recording) is used without a copy
            buffer = pending[0] if len(buffer) == 0 and len(pending) == 1 else \
                np.concatenate([buffer, *pending])
        out = np.zeros((len(group), size), dtype=np.float32)
        lengths = np.zeros(len(group), dtype=np.int64)
        for row, start in enumerate(group):
            piece = buffer[max(start - origin, 0):start - origin + size]
            out[row, :len(piece)] = piece
            lengths[row] = len(piece)
        if first + batch < len(starts):  # what the next chunks do not read goes
            drop = min(starts[first + batch] - origin, len(buffer))
            buffer, origin = buffer[drop:], origin + drop
        yield first, out, lengths


class OverlapAdd:
    """The mean over chunks of per-chunk (F, width) frame values placed at frame offsets,
    on the frames [first, last) of the recording's grid (a chunk's values outside them are
    left out); frames no chunk covers are 0."""

    def __init__(self, first: int, last: int, width: int):
        self.first = first
        self.summed = np.zeros((max(last - first, 0), width), dtype=np.float32)
        self.covered = np.zeros(len(self.summed), dtype=np.float32)

    def add(self, offset: int, values: np.ndarray) -> None:
        """Add one chunk's (F, width) values, the first at frame `offset`."""
        low = max(offset, self.first)
        high = min(offset + len(values), self.first + len(self.summed))
        if low < high:
            self.summed[low - self.first:high - self.first] += values[low - offset:
                                                                       high - offset]
            self.covered[low - self.first:high - self.first] += 1

    def mean(self) -> np.ndarray:
        """(last - first, width) float32."""
        return self.summed / np.maximum(self.covered, 1)[:, None]
