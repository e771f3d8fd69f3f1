"""Long clips in bounded memory: time-local trunks in overlapping chunks, and trunks that mix
the whole time axis (CAM++'s context pooling) stage by stage.

Chunks: a time-local trunk's output step g (input steps g*S .. g*S+S-1, S the time stride)
depends only on input steps within R of them (R, the receptive radius). A long clip runs as
overlapping spans whose starts lie on the stride grid; each span contributes only its central
steps, whose inputs it holds whole, so the steps equal those of one pass.

Stages: a trunk holding ContextPool ops is cut at every ContextPool and Concat. Between the
cuts the ops are time-local, so each stage runs in chunks as above; a value that crosses a cut
is kept for the whole clip (C channels x T steps, float32). ContextPool (the utterance mean
plus 100-step segment means) is then computed here over the kept value, and Concat appends
channels in place to one buffer per densely connected block, so a block holds its widest
output once. One hour of CAM++ (180,000 steps after its stride-2 TDNN) keeps at most ~1.1 GB
so (a 1024-channel block buffer and the next block's input), against ~7.6 GB in one pass,
where the 2-D front module's 32-channel, 80-bin maps of the whole hour dominate.

Sequences here use ONNX's layout: (B, C, T) for the engine, (C, T) when kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from engines.errors import EngineError
from engines.graph import FRAMES, INPUT, Concat, ContextPool, Graph, op_inputs
from engines.head import FrameStats

# ---------------------------------------------------------------- chunks


@dataclass(frozen=True)
class Chunk:
    """Run input steps [start, stop); keep its output steps [keep_from, keep_to) (global)."""

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


# ---------------------------------------------------------------- stages


@dataclass(frozen=True)
class Stage:
    """Time-local ops run chunk by chunk: `inputs` come from earlier steps (all at one time
    resolution), `outputs` are read later (FRAMES is pooled as it comes, never kept)."""

    ops: tuple
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    stride: int  # input steps per output step
    radius: int  # input steps on each side of an output step's own that can change it


Step = Stage | ContextPool | Concat  # ContextPool and Concat run here, over kept values


def _stage(ops: list, graph_strides: dict[str, int], read_later: set[str]) -> Stage:
    made = {op.out for op in ops}
    inputs = tuple(dict.fromkeys(n for op in ops for n in op_inputs(op) if n not in made))
    outputs = tuple(op.out for op in ops if op.out in read_later or op.out == FRAMES)
    base = {graph_strides[n] for n in inputs}
    ends = {graph_strides[n] for n in outputs}
    if len(base) != 1 or len(ends) != 1:
        raise EngineError("a stage mixes time resolutions; this trunk cannot run in stages")
    (base_stride,), (end_stride,) = base, ends
    radius = dict.fromkeys(inputs, 0)
    for op in ops:
        names = op_inputs(op)
        step = max(graph_strides[n] for n in names) // base_stride
        radius[op.out] = (max(radius[n] for n in names)
                          + getattr(op, "time_context", 0) * step)
    return Stage(tuple(ops), inputs, outputs, end_stride // base_stride,
                 max(radius[n] for n in outputs))


def can_stage(graph: Graph) -> bool:
    """True when every op of the trunk that mixes the whole time axis is a ContextPool (a
    TimeMean, as in squeeze-excitation, is not cut here: such a trunk runs in one pass)."""
    return all(getattr(op, "time_local", True) or isinstance(op, ContextPool)
               for op in graph.trunk_ops())


def plan_stages(graph: Graph) -> list[Step]:
    """The trunk as stages and the ContextPool and Concat ops between them, in order."""
    ops = graph.trunk_ops()
    strides = graph.strides()
    steps: list[Step] = []
    local: list = []
    for index, op in enumerate(ops):
        if not isinstance(op, ContextPool | Concat):
            local.append(op)
            continue
        if local:
            later = {n for o in ops[index:] for n in op_inputs(o)}
            steps.append(_stage(local, strides, later))
            local = []
        steps.append(op)
    if local:
        steps.append(_stage(local, strides, set()))
    if not isinstance(steps[0], Stage) or steps[0].inputs != (INPUT,) \
            or FRAMES not in getattr(steps[-1], "outputs", ()):
        raise EngineError("this trunk cannot run in stages (it must start and end locally)")
    return steps


@dataclass(frozen=True)
class SegmentContext:
    """ContextPool's output, kept at one column per segment: each step's value is the mean of
    the whole sequence plus the mean of its `segment`-step segment (the last segment may be
    shorter: averaged over what it holds). Expanded to steps only for the chunk being run."""

    means: np.ndarray  # (C, segments) float32
    segment: int
    steps: int

    @classmethod
    def of(cls, x: np.ndarray, segment: int) -> SegmentContext:
        """The context of a (C, T) sequence (sums in float64)."""
        channels, steps = x.shape
        count = -(-steps // segment)
        sums = np.add.reduceat(x, np.arange(0, steps, segment), axis=1, dtype=np.float64)
        sizes = np.minimum(segment, steps - segment * np.arange(count))
        total = sums.sum(axis=1, keepdims=True) / steps
        return cls((sums / sizes + total).astype(np.float32), segment, steps)

    @property
    def shape(self) -> tuple[int, int]:
        return self.means.shape[0], self.steps

    def span(self, start: int, stop: int) -> np.ndarray:
        """(C, stop - start) values of steps [start, stop)."""
        first = start // self.segment
        block = np.repeat(self.means[:, first: -(-stop // self.segment)], self.segment, axis=1)
        offset = start - first * self.segment
        return block[:, offset: offset + stop - start]


RunStage = Callable[[Stage, dict[str, np.ndarray]], dict[str, np.ndarray]]


class _Kept:
    """The values kept between steps, with Concat chains appended into one buffer each."""

    def __init__(self, steps: list[Step]):
        self.values: dict[str, np.ndarray] = {}
        self.buffers: dict[str, list] = {}  # Concat output -> [its buffer, rows written]
        self.chains: dict[str, int] = {}  # Concat output -> Concats still to come in its chain
        self.last_use: dict[str, int] = {}
        for index, step in enumerate(steps):
            names = step.inputs if isinstance(step, Stage) else op_inputs(step)
            for name in names:
                self.last_use[name] = index
        for step in reversed(steps):  # how many Concats follow each one in its chain
            if isinstance(step, Concat):
                self.chains[step.a] = self.chains.get(step.out, 0) + 1

    def append(self, op: Concat) -> None:
        """op.out = op.a ‖ op.b along channels, written into op.a's buffer in place."""
        a, b = self.values[op.a], self.values[op.b]
        width = a.shape[0] + b.shape[0]
        held = self.buffers.get(op.a)
        if held is None or held[1] != a.shape[0] or held[0].shape[0] < width:
            # the chain's first Concat: a buffer for the whole chain, whose rows are written
            # only when appended, so its unused capacity takes no memory yet
            buffer = np.empty((a.shape[0] + self.chains[op.a] * b.shape[0], a.shape[1]),
                              dtype=np.float32)
            buffer[: a.shape[0]] = a
            held = [buffer, a.shape[0]]
        held[0][a.shape[0]:width] = b
        held[1] = width
        self.values[op.out] = held[0][:width]
        self.buffers[op.out] = held

    def allocate(self, name: str, channels: int, steps: int, over: list | None) -> None:
        """Room for a stage output of (channels, steps): over the buffer `over` if it fits."""
        if over is not None and channels <= over[0].shape[0] and steps == over[0].shape[1]:
            held = over
            held[1] = channels
            self.buffers[name] = held
            self.values[name] = held[0][:channels]
        else:
            self.values[name] = np.empty((channels, steps), np.float32)

    def span(self, name: str, start: int, stop: int) -> np.ndarray:
        """A kept value's steps [start, stop) as a new (1, C, stop - start) array."""
        value = self.values[name]
        if isinstance(value, SegmentContext):
            return value.span(start, stop)[None]
        return np.array(value[None, :, start:stop], dtype=np.float32, order="C")

    def drop_after(self, index: int) -> None:
        for name in [n for n in self.values if self.last_use.get(n, -1) <= index]:
            del self.values[name]
            self.buffers.pop(name, None)


def _dying_buffer(step: Stage, index: int, kept: _Kept) -> list | None:
    """The buffer of an input no later step reads, which this stage's widest output may
    overwrite if it fits and keeps the time length (a CAM++ transit layer: 1024 channels in,
    512 out), so the next block reuses the buffer instead of taking a new one."""
    if step.stride != 1:
        return None
    for name in step.inputs:
        if name in kept.buffers and kept.last_use[name] == index:
            return kept.buffers[name]
    return None


def _merge(stats: FrameStats | None, frames: np.ndarray) -> FrameStats:
    piece = FrameStats.of(frames)
    return piece if stats is None else stats.merge(piece)


def _run_local(step: Stage, plan: list[Chunk], spans: Iterable[dict[str, np.ndarray]],
               run: RunStage, kept: _Kept, *, dying: list | None,
               stats: FrameStats | None) -> FrameStats | None:
    """Run one stage chunk by chunk: kept outputs stored, FRAMES merged into `stats`."""
    held_back: list = []  # (array, columns, values) written once the next chunk's inputs are
    # copied: an output written over its own input must not change what that chunk reads
    for chunk, feeds in zip(plan, spans, strict=True):
        for out, columns, values in held_back:
            out[:, columns] = values
        keep = chunk.local_steps(step.stride)
        outputs = run(step, feeds)
        if FRAMES in outputs:
            stats = _merge(stats, outputs.pop(FRAMES)[0, keep])
        if chunk is plan[0] and outputs:
            widest = max(outputs, key=lambda n: outputs[n].shape[1])
            for name, value in outputs.items():
                kept.allocate(name, value.shape[1], plan[-1].keep_to,
                              dying if name == widest else None)
        columns = slice(chunk.keep_from, chunk.keep_to)
        held_back = [(kept.values[n], columns, v[0, :, keep]) for n, v in outputs.items()]
    for out, columns, values in held_back:
        out[:, columns] = values
    return stats


def run_stages(steps: list[Step], run: RunStage, first_plan: list[Chunk],
               first_spans: Iterable[np.ndarray], chunk_steps: int) -> FrameStats:
    """Run a staged trunk over one clip: the first stage over `first_spans` (the features of
    `first_plan`'s chunks, in order), then every step in turn; the pooled FRAMES statistics."""
    kept = _Kept(steps)
    stats: FrameStats | None = None
    for index, step in enumerate(steps):
        if isinstance(step, ContextPool):
            kept.values[step.out] = SegmentContext.of(kept.values[step.x], step.segment)
        elif isinstance(step, Concat):
            kept.append(step)
        elif index == 0:
            stats = _run_local(step, first_plan, ({INPUT: s[None]} for s in first_spans),
                               run, kept, dying=None, stats=stats)
        else:
            plan = plan_chunks(kept.values[step.inputs[0]].shape[1], chunk_steps, step.stride,
                               step.radius)
            spans = ({n: kept.span(n, c.start, c.stop) for n in step.inputs} for c in plan)
            stats = _run_local(step, plan, spans, run, kept,
                               dying=_dying_buffer(step, index, kept), stats=stats)
        kept.drop_after(index)
    if stats is None:
        raise EngineError("no chunks to embed")
    return stats
