"""A tiny network description shared by every engine.

A network is a list of ops over named values. Each engine (MLX, ONNX Runtime, Core ML)
turns the same list into its own computation, so the architecture is written once.

Value layouts are logical, not framework ones: a feature map has a batch axis, a
frequency axis (height), a time axis (width) and channels. Each engine picks its memory
layout (MLX: NHWC, ONNX: NCHW) and keeps it consistent across ops.

A graph has two parts. The trunk runs in the engines: INPUT -> ... -> FRAMES, one vector
per (downsampled) time step. The head, StatsPool -> Linear -> L2Normalize, runs once in
numpy (engines.head), which is what lets a batch of different lengths and a long input cut
into chunks share one exact pooling.

A graph may have no head: a segmentation network (engines/segmentation.py) reads samples
(Waveform) and its FRAMES are per-frame class scores, its final output.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

INPUT = "features"  # (batch, frames, mel bins) log-mel features after CMN; (batch, samples)
# 16 kHz samples when the graph starts with Waveform
LENGTHS = "lengths"  # (batch,) int64 valid input frames of each clip of a padded batch
FRAMES = "frames"  # (batch, time steps, dim) output of the trunk
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

    @property
    def takes_waveform(self) -> bool:
        """True when INPUT is (batch, samples) rather than features."""
        return any(isinstance(op, Waveform) and op.x == INPUT for op in self.ops)

    @property
    def time_stride(self) -> int:
        """Downsampling of the time axis."""
        return self.stride

    @property
    def time_context(self) -> int:
        """Input steps read on each side of the centre (the kernel is 2*padding + 1 wide)."""
        return self.padding


@dataclass(frozen=True)
class Mask:
    """Zero the time steps past each clip's valid length (a no-op for unpadded input).

    Placed wherever padding could leak into a later convolution; the valid length at a
    value is ceil(input length / time stride of that value).
    """

    x: str
    out: str


@dataclass(frozen=True)
class ToFrames:
    """Feature map -> (B, T', C*F) frame vectors, feature index c*F + f."""

    x: str
    out: str


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
    """(B, T', D) frames -> (B, 2*D) [mean ‖ unbiased std] over time."""

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


# ---- Sequence ops (CAM++). A sequence is logically (B, T, C); engines pick the memory layout
# (ONNX: (B, C, T), MLX: (B, T, C)).


@dataclass(frozen=True)
class FreqStridedConv2d:
    """2-D convolution striding frequency only; `weight` [O, kH, kW, I], `bias` [O] or None."""

    x: str
    out: str
    weight: str
    bias: str | None
    freq_stride: int = 1
    padding: int = 1

    @property
    def time_context(self) -> int:
        """Input steps read on each side (the kernel is 2*padding + 1 wide)."""
        return self.padding


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

    @property
    def takes_waveform(self) -> bool:
        """True when INPUT is (batch, samples) rather than features."""
        return any(isinstance(op, Waveform) and op.x == INPUT for op in self.ops)

    @property
    def time_stride(self) -> int:
        """Downsampling of the time axis."""
        return self.stride

    @property
    def time_context(self) -> int:
        """Input steps read on each side ('same' padding: padding = dilation * (k - 1) / 2)."""
        return self.padding


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
    """Per step: the sequence's mean over all time + the mean of its `segment`-step segment.

    Segments are [0, s), [s, 2s), ...; the last may be shorter and is averaged over what it
    holds. It mixes the whole time axis (CAM++'s context-aware masking), so a graph holding
    it is not time-local: no padded batches, no chunks.
    """

    x: str
    out: str
    segment: int = 100
    time_local: ClassVar[bool] = False


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
class SequenceToFrames:
    """(B, T, C) sequence -> (B, T, C) frames in the engines' frames layout."""

    x: str
    out: str


@dataclass(frozen=True)
class TimeMean:
    """(B, T, C) sequence -> (B, 1, C), its mean over each clip's valid steps
    (squeeze-excitation's squeeze; all T steps when nothing is padded).

    Conv1d, Relu, Sigmoid and Affine apply to the one-step result as to any sequence, and Mul
    broadcasts it back over the T steps. It mixes the whole time axis (not time-local).
    """

    x: str
    out: str
    time_local: ClassVar[bool] = False


@dataclass(frozen=True)
class AttentivePool:
    """Head: (B, T', D) frames -> (B, 2*D) attention-weighted [mean ‖ std] (NeMo's
    AttentivePoolLayer, ECAPA-TDNN's attentive statistics pooling).

    Per step, e = W2 tanh(scale * relu(W1 [x ‖ mean ‖ std] + b1) + shift) + b2, with mean and
    std (biased) over all steps; alpha = softmax of e over time, per channel; the result is
    [Σ alpha x ‖ sqrt(Σ alpha (x - Σ alpha x)²)]. Variances are clamped at EPS before the root.
    Weights under `prefix`: tdnn.weight [A, 3D], tdnn.bias [A], bn.weight / bn.bias [A] (the
    scale and shift), attention.weight [D, A], attention.bias [D].
    """

    x: str
    out: str
    prefix: str
    EPS: ClassVar[float] = 1e-10
    PARTS: ClassVar[tuple[str, ...]] = ("tdnn.weight", "tdnn.bias", "bn.weight", "bn.bias",
                                        "attention.weight", "attention.bias")

    def weight_names(self) -> list[str]:
        """The tensors it reads, in PARTS order."""
        return [f"{self.prefix}.{part}" for part in self.PARTS]


# ---- Waveform and recurrent ops (pyannote's PyanNet segmentation: engines/segmentation.py).


@dataclass(frozen=True)
class Waveform:
    """(B, N) samples, the graph's INPUT, -> a one-channel sequence (B, N, 1)."""

    x: str
    out: str


@dataclass(frozen=True)
class InstanceNorm:
    """Per clip and channel: (x - mean over time) / sqrt(biased variance + EPS), then
    * weight + bias ([C] each); torch.nn.InstanceNorm1d(affine=True) without running stats.
    It mixes the whole time axis (not time-local)."""

    x: str
    out: str
    weight: str
    bias: str
    EPS: ClassVar[float] = 1e-5
    time_local: ClassVar[bool] = False


@dataclass(frozen=True)
class Abs:
    """|x|."""

    x: str
    out: str


@dataclass(frozen=True)
class MaxPool1d:
    """Maximum over `kernel` steps every `stride` steps, no padding (the last partial window
    is dropped): T' = (T - kernel) // stride + 1."""

    x: str
    out: str
    kernel: int
    stride: int

    @property
    def takes_waveform(self) -> bool:
        """True when INPUT is (batch, samples) rather than features."""
        return any(isinstance(op, Waveform) and op.x == INPUT for op in self.ops)

    @property
    def time_stride(self) -> int:
        """Downsampling of the time axis."""
        return self.stride


@dataclass(frozen=True)
class LeakyRelu:
    """x where x > 0, else slope * x (torch's default slope 0.01)."""

    x: str
    out: str
    slope: float = 0.01


@dataclass(frozen=True)
class LSTM:
    """Multi-layer LSTM over (B, T, C) frames -> (B, T, H) or, bidirectional, (B, T, 2H)
    [forward ‖ backward], zero initial state; torch.nn.LSTM(batch_first=True) in eval mode.

    Weights under `prefix`, torch's names and layout: weight_ih_l{k} [4H, I], weight_hh_l{k}
    [4H, H], bias_ih_l{k} and bias_hh_l{k} [4H], with suffix `_reverse` for the backward
    direction; the four gate blocks in torch's order input, forget, cell, output. Each engine
    reorders them as its own LSTM needs. It reads the whole sequence (not time-local).
    """

    x: str
    out: str
    prefix: str
    layers: int
    bidirectional: bool = True
    time_local: ClassVar[bool] = False
    PARTS: ClassVar[tuple[str, ...]] = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")

    def directions(self) -> tuple[str, ...]:
        """The name suffixes of its directions."""
        return ("", "_reverse") if self.bidirectional else ("",)

    def weight_names(self) -> list[str]:
        """The tensors it reads, layer by layer, direction by direction, in PARTS order."""
        return [f"{self.prefix}.{part}_l{k}{d}" for k in range(self.layers)
                for d in self.directions() for part in self.PARTS]


@dataclass(frozen=True)
class LogSoftmax:
    """log(softmax(x)) over the last (feature) axis of frames."""

    x: str
    out: str


Op = (ToImage | Conv2d | Relu | Add | Mask | ToFrames | StatsPool | Linear | L2Normalize
      | FreqStridedConv2d | ImageToSequence | Conv1d | Affine | Concat | ContextPool | Sigmoid
      | Mul | SequenceToFrames | TimeMean | AttentivePool | Waveform | InstanceNorm | Abs
      | MaxPool1d | LeakyRelu | LSTM | LogSoftmax)


def op_inputs(op) -> list[str]:
    """Names of the values an op reads."""
    return [v for v in (getattr(op, "x", None), getattr(op, "a", None), getattr(op, "b", None))
            if isinstance(v, str)]


@dataclass
class Graph:
    """An ordered list of ops from INPUT to OUTPUT, and the names of the weights they use."""

    ops: list[Op] = field(default_factory=list)
    # > 0: a clip runs zero-padded to a multiple of this many frames, as its original software
    # ran it, its convolutions seeing the padding (NeMo's ECAPA; engines.head.TrunkEngine)
    pad_to: int = 0

    def add(self, op: Op) -> str:
        """Append an op and return the name of its output."""
        self.ops.append(op)
        return op.out

    def _frames_index(self) -> int:
        for index, op in enumerate(self.ops):
            if op.out == FRAMES:
                return index
        raise ValueError(f"the graph has no op producing {FRAMES!r}")

    def trunk_ops(self) -> list[Op]:
        """The ops the engines run: INPUT -> FRAMES."""
        return self.ops[: self._frames_index() + 1]

    def head_ops(self) -> list[Op]:
        """The ops after FRAMES (pooling and projection), run by engines.head."""
        return self.ops[self._frames_index() + 1 :]

    def strides(self) -> dict[str, int]:
        """Time downsampling of every value relative to INPUT."""
        strides = {INPUT: 1}
        for op in self.ops:
            inputs = [strides.get(name, 1) for name in op_inputs(op)]
            strides[op.out] = max(inputs, default=1) * getattr(op, "time_stride", 1)
        return strides

    @property
    def takes_waveform(self) -> bool:
        """True when INPUT is (batch, samples) rather than features."""
        return any(isinstance(op, Waveform) and op.x == INPUT for op in self.ops)

    @property
    def time_stride(self) -> int:
        """Input frames per FRAMES step."""
        return self.strides()[FRAMES]

    def receptive_radius(self) -> int:
        """Input frames on each side of a FRAMES step that can change it (time-local trunks)."""
        strides, radius = self.strides(), {INPUT: 0}
        for op in self.trunk_ops():
            names = op_inputs(op)
            stride_in = max((strides.get(n, 1) for n in names), default=1)
            reach = max((radius.get(n, 0) for n in names), default=0)
            radius[op.out] = reach + getattr(op, "time_context", 0) * stride_in
        return radius[FRAMES]

    @property
    def time_local(self) -> bool:
        """True when each FRAMES step depends only on nearby input frames.

        An op class that mixes the whole time axis declares `time_local: ClassVar[bool] = False`.
        """
        return all(getattr(op, "time_local", True) for op in self.trunk_ops())

    def min_frames(self, pooled_steps: int = 2) -> int:
        """Fewest input frames giving `pooled_steps` FRAMES steps ('same'-padded convs)."""
        return self.time_stride * (pooled_steps - 1) + 1

    def weight_names(self) -> list[str]:
        """Every weight tensor the ops refer to, in first-use order."""
        names: list[str] = []
        for op in self.ops:
            own = op.weight_names() if hasattr(op, "weight_names") else []
            for name in [getattr(op, "weight", None), getattr(op, "bias", None), *own]:
                if name is not None and name not in names:
                    names.append(name)
        return names

    @property
    def pools_by_stats(self) -> bool:
        """True when the head pools plain statistics, which chunks of a clip can merge."""
        head = self.head_ops()
        return bool(head) and isinstance(head[0], StatsPool)
