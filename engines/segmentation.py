"""pyannote's PyanNet segmentation network (segmentation-3.0) as a shared graph, and the timing
of its output frames.

PyanNet (pyannote.audio `models/segmentation/PyanNet.py`, `models/blocks/sincnet.py`) reads
raw 16 kHz samples:

- SincNet: InstanceNorm1d on the waveform; then three blocks, each a convolution, max-pooling
  (3, stride 3), InstanceNorm1d and leaky ReLU. Block 1's convolution is a bank of 80
  band-pass filters (251 taps, stride 10), of which the absolute value is taken before the
  pooling; blocks 2 and 3 are plain Conv1d (kernel 5). No padding anywhere.
- A multi-layer (bidirectional) LSTM over the frames, then linear layers with leaky ReLU, a
  linear classifier and log-softmax over the "powerset" classes.

The config's `network` dict describes it: {"sincnet_stride", "pool": [kernel, stride],
"lstm_layers", "bidirectional", "linear_layers", "speakers", "speakers_per_frame",
"chunk_seconds"}. The graph has no head: FRAMES are the (B, F, classes) log-probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Any

from engines.graph import (
    FRAMES,
    INPUT,
    LSTM,
    Abs,
    Conv1d,
    Graph,
    InstanceNorm,
    LeakyRelu,
    Linear,
    LogSoftmax,
    MaxPool1d,
    SequenceToFrames,
    Waveform,
)

SINC_WEIGHT = "sincnet.conv1d.0.weight"  # the band-pass filters as a fixed [80, 251, 1] kernel
SINCNET_BLOCKS = 3


def _block(g: Graph, x: str, index: int, network: dict[str, Any]) -> str:
    """conv -> (|.| for the sinc filters) -> max-pool -> InstanceNorm -> leaky ReLU."""
    name = f"sincnet.conv1d.{index}"
    stride = int(network["sincnet_stride"]) if index == 0 else 1
    bias = None if index == 0 else f"{name}.bias"
    x = g.add(Conv1d(x, name, f"{name}.weight", bias, stride=stride))
    if index == 0:
        x = g.add(Abs(x, f"{name}.abs"))
    kernel, stride = (int(v) for v in network.get("pool", (3, 3)))
    x = g.add(MaxPool1d(x, f"sincnet.pool1d.{index}", kernel, stride))
    norm = f"sincnet.norm1d.{index}"
    x = g.add(InstanceNorm(x, norm, f"{norm}.weight", f"{norm}.bias"))
    return g.add(LeakyRelu(x, f"{norm}.leaky"))


def build_segmentation(network: dict[str, Any]) -> Graph:
    """The PyanNet graph a converted model's `network` dict describes (module docstring)."""
    g = Graph()
    x = g.add(Waveform(INPUT, "waveform"))
    x = g.add(InstanceNorm(x, "sincnet.wav_norm1d", "sincnet.wav_norm1d.weight",
                           "sincnet.wav_norm1d.bias"))
    for index in range(SINCNET_BLOCKS):
        x = _block(g, x, index, network)
    x = g.add(SequenceToFrames(x, "sincnet.frames"))
    x = g.add(LSTM(x, "lstm", "lstm", int(network["lstm_layers"]),
                   bool(network.get("bidirectional", True))))
    for j in range(int(network.get("linear_layers", 0))):
        x = g.add(Linear(x, f"linear.{j}", f"linear.{j}.weight", f"linear.{j}.bias"))
        x = g.add(LeakyRelu(x, f"linear.{j}.leaky"))
    x = g.add(Linear(x, "classifier", "classifier.weight", "classifier.bias"))
    g.add(LogSoftmax(x, FRAMES))
    return g


@dataclass(frozen=True)
class FrameTiming:
    """Where the output frames sit in the input, in samples: frame i reads samples
    [start + i * step, start + i * step + size)."""

    step: int
    size: int  # the receptive field
    start: int = 0

    def centre(self, frame: int = 0) -> float:
        """The sample index at the middle of frame `frame`'s receptive field."""
        return self.start + frame * self.step + (self.size - 1) / 2

    def frames(self, samples: int) -> int:
        """Output frames for an input of `samples` samples (0 when it is too short)."""
        return max(0, (samples - self.start - self.size) // self.step + 1)


def frame_timing(graph: Graph, shapes: dict[str, list[int]]) -> FrameTiming:
    """The timing of FRAMES of a graph whose time axis changes only through Conv1d (kernel
    size from its weight's shape [O, k, I], `shapes`) and MaxPool1d; other ops keep it."""
    step, size, start = 1, 1, 0
    for op in graph.trunk_ops():
        if isinstance(op, Conv1d):
            reach, stride, padding = op.dilation * (shapes[op.weight][1] - 1), op.stride, \
                op.padding
        elif isinstance(op, MaxPool1d):
            reach, stride, padding = op.kernel - 1, op.stride, 0
        else:
            continue
        size += reach * step
        start -= padding * step
        step *= stride
    return FrameTiming(step, size, start)


def powerset_classes(speakers: int, at_once: int) -> list[tuple[int, ...]]:
    """The powerset classes in pyannote's order (its `Powerset` mapping): the empty set, then
    every set of 1, 2, ... `at_once` of the `speakers` local speakers (0-based), each size in
    lexicographic order; for 3 and 2: (), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2)."""
    return [c for size in range(at_once + 1) for c in combinations(range(speakers), size)]
