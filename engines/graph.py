"""A tiny network description shared by every engine.

A network is a list of ops over named values. Each engine (MLX, ONNX Runtime, Core ML)
turns the same list into its own computation, so the architecture is written once.

Value layouts are logical, not framework ones: a feature map has a batch axis, a
frequency axis (height), a time axis (width) and channels. Each engine picks its memory
layout (MLX: NHWC, ONNX: NCHW) and keeps it consistent across ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INPUT = "features"  # (batch, frames, mel bins) log-mel features after CMN
OUTPUT = "embedding"  # (batch, embedding dim), L2-normalised


@dataclass(frozen=True)
class ToImage:
    """(B, T, F) features -> one-channel image with height F (frequency), width T (time)."""

    x: str
    out: str


@dataclass(frozen=True)
class Conv2d:
    """2-D convolution; `weight` is [O, kH, kW, I] (H = frequency), `bias` is [O]."""

    x: str
    out: str
    weight: str
    bias: str
    stride: int = 1
    padding: int = 1


@dataclass(frozen=True)
class Relu:
    """max(x, 0)."""

    x: str
    out: str


@dataclass(frozen=True)
class Add:
    """Elementwise a + b."""

    a: str
    b: str
    out: str


@dataclass(frozen=True)
class StatsPool:
    """Feature map -> [mean ‖ unbiased std] over time; features flattened as c*F + f."""

    x: str
    out: str


@dataclass(frozen=True)
class Linear:
    """x @ weight.T + bias with `weight` [out, in]."""

    x: str
    out: str
    weight: str
    bias: str


@dataclass(frozen=True)
class L2Normalize:
    """x / ||x||_2 over the last axis."""

    x: str
    out: str


# ---- Ops over sequences, used by CAM++: a sequence is logically (B, T, C); engines pick the
# memory layout (ONNX: (B, C, T), MLX: (B, T, C)).


@dataclass(frozen=True)
class FreqStridedConv2d:
    """2-D convolution striding frequency only; `weight` [O, kH, kW, I], `bias` [O] or None."""

    x: str
    out: str
    weight: str
    bias: str | None
    freq_stride: int = 1
    padding: int = 1


@dataclass(frozen=True)
class ImageToSequence:
    """(B, C, F, T) feature map -> (B, T, C*F) sequence, channel index c*F + f."""

    x: str
    out: str


@dataclass(frozen=True)
class Conv1d:
    """1-D convolution over time; `weight` [O, k, I], `bias` [O] or None, zero padding."""

    x: str
    out: str
    weight: str
    bias: str | None
    stride: int = 1
    padding: int = 0
    dilation: int = 1


@dataclass(frozen=True)
class Affine:
    """Per-channel x * weight + bias (a BatchNorm that cannot be folded into a conv)."""

    x: str
    out: str
    weight: str
    bias: str


@dataclass(frozen=True)
class Concat:
    """Sequences a ‖ b along channels."""

    a: str
    b: str
    out: str


@dataclass(frozen=True)
class ContextPool:
    """Per frame: the sequence's mean over all time + the mean of its `segment`-frame segment.

    Segments are [0, s), [s, 2s), ...; the last may be shorter and is averaged over what it
    holds. This mixes the whole time axis (CAM++'s context-aware masking).
    """

    x: str
    out: str
    segment: int = 100


@dataclass(frozen=True)
class Sigmoid:
    """1 / (1 + exp(-x))."""

    x: str
    out: str


@dataclass(frozen=True)
class Mul:
    """Elementwise a * b."""

    a: str
    b: str
    out: str


@dataclass(frozen=True)
class SequenceStatsPool:
    """(B, T, C) sequence -> (B, 2*C) [mean ‖ unbiased std] over time."""

    x: str
    out: str


Op = (ToImage | Conv2d | Relu | Add | StatsPool | Linear | L2Normalize
      | FreqStridedConv2d | ImageToSequence | Conv1d | Affine | Concat | ContextPool | Sigmoid
      | Mul | SequenceStatsPool)


@dataclass
class Graph:
    """An ordered list of ops from INPUT to OUTPUT, and the names of the weights they use."""

    ops: list[Op] = field(default_factory=list)

    def add(self, op: Op) -> str:
        """Append an op and return the name of its output."""
        self.ops.append(op)
        return op.out

    def weight_names(self) -> list[str]:
        """Every weight tensor the ops refer to, in first-use order."""
        names: list[str] = []
        for op in self.ops:
            for attr in ("weight", "bias"):
                name = getattr(op, attr, None)
                if name is not None and name not in names:
                    names.append(name)
        return names
