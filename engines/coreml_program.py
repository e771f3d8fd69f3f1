"""The shared graph as a Core ML ML Program: MIL built with coremltools' builder from the same
weights every engine uses (no PyTorch involved). Packaged by engines/coreml_export.py.

The program has one input, `mel` [1, T, n_mels] float32 (log-mel features after CMN), with a
flexible T, and two outputs: `embedding` [1, dim], L2-normalised, and `frames` [1, T', D],
the trunk's output that the engine pools itself (exactly, also across the chunks of a long
input). Each clip runs at its own length: nothing is padded and nothing is cut, so the
graph's Mask ops are identities.

Layout: MIL convolutions are NCHW with weights [O, I, kH, kW], so the (1, T, F) features become
a (1, 1, F, T) image (height = frequency, width = time) and the graph's [O, kH, kW, I] conv
weights are transposed once at export time. ToFrames reshapes (1, C, F, T') to (1, C*F, T')
and transposes it, which is exactly the graph's `c*F + f` feature order. Sequences (CAM++) are
MIL's 1-D convolution layout (1, C, T), kernels [O, k, I] transposed to [O, I, k].

The translation is a table, graph op type -> function (_TRANSLATORS); SUPPORTED_OPS lists its
keys. The head ops (StatsPool or AttentivePool, Linear, Relu, L2Normalize) are translated too,
for the `embedding` output. FLOAT32_OPS are the graph ops whose MIL ops stay float32 in the
float16 package (see engines/coreml_export.py).
"""

from __future__ import annotations

import re

import numpy as np

from engines.coreml_import import import_coremltools
from engines.errors import EngineError, ModelError
from engines.graph import (
    FRAMES,
    INPUT,
    OUTPUT,
    Add,
    Affine,
    AttentivePool,
    Concat,
    ContextPool,
    Conv1d,
    Conv2d,
    FreqStridedConv2d,
    Graph,
    ImageToSequence,
    L2Normalize,
    Linear,
    Mask,
    Mul,
    Relu,
    SequenceToFrames,
    Sigmoid,
    StatsPool,
    TimeMean,
    ToFrames,
    ToImage,
)

MEL_INPUT = "mel"
# int32 [1]: the clip's valid frames, an input only of graphs that run zero-padded (Graph.pad_to):
# TimeMean averages those, and `frames` is cut to them
VALID_INPUT = "valid"
EMBEDDING_OUTPUT = "embedding"
FRAMES_OUTPUT = "frames"
# The ops emitted for these graph ops stay float32 in the float16 package (sums over time).
FLOAT32_OPS = frozenset({StatsPool, Linear, L2Normalize, ContextPool, TimeMean, AttentivePool})


def _mil_name(name: str) -> str:
    """A graph value name as a MIL identifier (letters, digits, underscores)."""
    return re.sub(r"\W", "_", name)


def _tensor(tensors: dict[str, np.ndarray], name: str, shape_rank: int) -> np.ndarray:
    try:
        value = np.asarray(tensors[name], dtype=np.float32)
    except KeyError:
        raise ModelError(f"the weights have no tensor {name!r} (needed for the Core ML export)"
                         ) from None
    if value.ndim != shape_rank:
        raise ModelError(f"weight {name!r} has shape {value.shape}, expected rank {shape_rank}")
    return value


# ---------------------------------------------------------------------------------------------
# Translation: one short function per op of the shared graph. Each gets the builder context,
# the op and the MIL name of its output, and returns the output Var. Feature maps are NCHW
# (1, C, F, T); sequences are MIL's NCW (1, C, T), the layout of its 1-D convolution.


class _Mil:
    """The MIL builder, the weights and the values computed so far."""

    def __init__(self, mb, tensors: dict[str, np.ndarray], mel, valid=None):
        self.mb = mb
        self.tensors = tensors
        self.values = {INPUT: mel}
        self.valid = valid  # VALID_INPUT, or None (each clip at its own length)

    def __getitem__(self, name: str):
        return self.values[name]

    def weight(self, name: str, rank: int, layout: tuple[int, ...] | None = None) -> np.ndarray:
        """A float32 weight of the given rank, optionally transposed to MIL's layout."""
        value = _tensor(self.tensors, name, rank)
        return np.ascontiguousarray(value if layout is None else value.transpose(layout))

    def bias(self, name: str | None) -> np.ndarray | None:
        return None if name is None else self.weight(name, 1)


def _static(dim, what: str) -> int:
    if not isinstance(dim, (int, np.integer)):
        raise EngineError(f"Core ML export: {what} must be static")
    return int(dim)


def _to_image(c: _Mil, op: ToImage, name: str):
    """(1, T, F) -> (1, 1, F, T): NCHW, H = frequency."""
    image = c.mb.transpose(x=c[op.x], perm=[0, 2, 1], name=f"{name}_ft")
    return c.mb.expand_dims(x=image, axes=[1], name=name)


def _conv2d(c: _Mil, op: Conv2d, name: str):
    p = op.padding
    return c.mb.conv(x=c[op.x], weight=c.weight(op.weight, 4, (0, 3, 1, 2)),  # -> [O, I, kH, kW]
                     bias=c.bias(op.bias), strides=[op.stride, op.stride], pad_type="custom",
                     pad=[p, p, p, p], name=name)


def _relu(c: _Mil, op: Relu, name: str):
    return c.mb.relu(x=c[op.x], name=name)


def _add(c: _Mil, op: Add, name: str):
    return c.mb.add(x=c[op.a], y=c[op.b], name=name)


def _mask(c: _Mil, op: Mask, name: str):
    """One clip at its own length: nothing is padded, nothing to mask."""
    return c[op.x]


def _to_frames(c: _Mil, op: ToFrames, name: str):
    """(1, C, F, T') -> (1, T', C*F), feature index c*F + f."""
    _, channels, freq, _ = c[op.x].shape
    width = _static(channels, "channels") * _static(freq, "frequency rows")
    flat = c.mb.reshape(x=c[op.x], shape=[1, width, -1], name=f"{name}_flat")
    return c.mb.transpose(x=flat, perm=[0, 2, 1], name=name)


def _stats_pool(c: _Mil, op: StatsPool, name: str):
    """(1, T', D) -> (1, 2*D) [mean ‖ unbiased std] over time."""
    mb, x = c.mb, c[op.x]
    mean = mb.reduce_mean(x=x, axes=[1], keep_dims=True, name=f"{name}_mean")
    centred = mb.sub(x=x, y=mean, name=f"{name}_centred")
    squares = mb.mul(x=centred, y=centred, name=f"{name}_squares")
    total = mb.reduce_sum(x=squares, axes=[1], keep_dims=False, name=f"{name}_sum_squares")
    frames = mb.gather(x=mb.shape(x=x, name=f"{name}_shape"), indices=1, axis=0,
                       name=f"{name}_frames")
    frames = mb.cast(x=frames, dtype="fp32", name=f"{name}_frames_fp32")
    dof = mb.sub(x=frames, y=np.float32(1.0), name=f"{name}_dof")  # unbiased: T' - 1
    std = mb.sqrt(x=mb.real_div(x=total, y=dof, name=f"{name}_var"), name=f"{name}_std")
    mean = mb.squeeze(x=mean, axes=[1], name=f"{name}_mean_flat")
    return mb.concat(values=[mean, std], axis=1, name=name)


def _attentive_pool(c: _Mil, op: AttentivePool, name: str):
    """(1, T', D) -> (1, 2*D), as engines.head.attentive_pool."""
    mb, x, n = c.mb, c[op.x], name
    tdnn, tdnn_bias, scale, shift, attention, attention_bias = (
        c.weight(w, rank) for w, rank in zip(op.weight_names(), (2, 1, 1, 1, 2, 1), strict=True))
    width = tdnn.shape[1] // 3
    eps = np.float32(op.EPS)
    mean = mb.reduce_mean(x=x, axes=[1], keep_dims=True, name=f"{n}_mean")  # (1, 1, D)
    centred = mb.sub(x=x, y=mean, name=f"{n}_centred")
    var = mb.reduce_mean(x=mb.mul(x=centred, y=centred, name=f"{n}_sq"), axes=[1],
                         keep_dims=True, name=f"{n}_var")
    std = mb.sqrt(x=mb.maximum(x=var, y=eps, name=f"{n}_var_eps"), name=f"{n}_std")
    stats = mb.concat(values=[mean, std], axis=2, name=f"{n}_stats")
    constant = mb.linear(x=stats, weight=np.ascontiguousarray(tdnn[:, width:]),
                         bias=tdnn_bias, name=f"{n}_constant")  # (1, 1, A)
    hidden = mb.add(x=mb.linear(x=x, weight=np.ascontiguousarray(tdnn[:, :width]),
                                name=f"{n}_tdnn_x"), y=constant, name=f"{n}_tdnn")
    hidden = mb.add(x=mb.mul(x=mb.relu(x=hidden, name=f"{n}_relu"), y=scale, name=f"{n}_scaled"),
                    y=shift, name=f"{n}_bn")
    energy = mb.linear(x=mb.tanh(x=hidden, name=f"{n}_tanh"), weight=attention,
                       bias=attention_bias, name=f"{n}_energy")  # (1, T', D)
    alpha = mb.softmax(x=energy, axis=1, name=f"{n}_alpha")
    mu = mb.reduce_sum(x=mb.mul(x=alpha, y=x, name=f"{n}_weighted"), axes=[1], keep_dims=True,
                       name=f"{n}_mu")
    dev = mb.sub(x=x, y=mu, name=f"{n}_dev")
    spread = mb.reduce_sum(x=mb.mul(x=alpha, y=mb.mul(x=dev, y=dev, name=f"{n}_dev_sq"),
                                    name=f"{n}_weighted_sq"), axes=[1], name=f"{n}_spread")
    sigma = mb.sqrt(x=mb.maximum(x=spread, y=eps, name=f"{n}_spread_eps"), name=f"{n}_sigma")
    return mb.concat(values=[mb.squeeze(x=mu, axes=[1], name=f"{n}_mu_flat"), sigma], axis=1,
                     name=name)


def _time_mean(c: _Mil, op: TimeMean, name: str):
    """(1, C, T) -> (1, C, 1), over the first VALID_INPUT steps when the program has it (the
    graphs that have it keep one step per frame)."""
    mb, x = c.mb, c[op.x]
    if c.valid is None:
        return mb.reduce_mean(x=x, axes=[2], keep_dims=True, name=name)
    steps = mb.gather(x=mb.shape(x=x, name=f"{name}_shape"), indices=2, axis=0,
                      name=f"{name}_steps")
    keep = mb.less(x=mb.range_1d(start=np.int32(0), end=steps, step=np.int32(1),
                                 name=f"{name}_time"), y=c.valid, name=f"{name}_keep")
    keep = mb.cast(x=keep, dtype="fp32", name=f"{name}_keep_fp32")  # (T,)
    total = mb.reduce_sum(x=mb.mul(x=x, y=keep, name=f"{name}_kept"), axes=[2], keep_dims=True,
                          name=f"{name}_sum")
    return mb.real_div(x=total, y=mb.reduce_sum(x=keep, name=f"{name}_count"), name=name)


def _cut_to_valid(c: _Mil, frames, name: str):
    """(1, T', D) frames -> their first VALID_INPUT steps."""
    mb = c.mb
    size = mb.concat(values=[np.array([1], np.int32), c.valid, np.array([-1], np.int32)],
                     axis=0, name=f"{name}_size")
    return mb.slice_by_size(x=frames, begin=np.zeros(3, np.int32), size=size, name=name)


def _linear(c: _Mil, op: Linear, name: str):
    return c.mb.linear(x=c[op.x], weight=c.weight(op.weight, 2), bias=c.bias(op.bias), name=name)


def _l2_normalize(c: _Mil, op: L2Normalize, name: str):
    norm = c.mb.reduce_l2_norm(x=c[op.x], axes=[-1], keep_dims=True, name=f"{name}_norm")
    return c.mb.real_div(x=c[op.x], y=norm, name=name)


def _freq_strided_conv2d(c: _Mil, op: FreqStridedConv2d, name: str):
    """NCHW conv (H = frequency) striding H only."""
    p = op.padding
    return c.mb.conv(x=c[op.x], weight=c.weight(op.weight, 4, (0, 3, 1, 2)),
                     bias=c.bias(op.bias), strides=[op.freq_stride, 1], pad_type="custom",
                     pad=[p, p, p, p], name=name)


def _image_to_sequence(c: _Mil, op: ImageToSequence, name: str):
    """(1, C, F, T) -> (1, C*F, T): the row-major merge gives channel index c*F + f."""
    _, channels, freq, _ = c[op.x].shape
    width = _static(channels, "channels") * _static(freq, "frequency rows")
    return c.mb.reshape(x=c[op.x], shape=[1, width, -1], name=name)


def _conv1d(c: _Mil, op: Conv1d, name: str):
    """NCW conv; kernel [O, k, I] -> [O, I, k]."""
    p = op.padding
    return c.mb.conv(x=c[op.x], weight=c.weight(op.weight, 3, (0, 2, 1)), bias=c.bias(op.bias),
                     strides=[op.stride], pad_type="custom", pad=[p, p],
                     dilations=[op.dilation], name=name)


def _affine(c: _Mil, op: Affine, name: str):
    """x * weight + bias per channel; [C] vectors as [C, 1] columns broadcasting over time."""
    scaled = c.mb.mul(x=c[op.x], y=c.weight(op.weight, 1)[:, None], name=f"{name}_scaled")
    return c.mb.add(x=scaled, y=c.weight(op.bias, 1)[:, None], name=name)


def _concat(c: _Mil, op: Concat, name: str):
    return c.mb.concat(values=[c[op.a], c[op.b]], axis=1, name=name)


def _context_pool(c: _Mil, op: ContextPool, name: str):
    """(1, C, T) -> utterance mean + the mean of each step's `segment`-step segment.

    T is flexible, so the segment bookkeeping is computed from the input's shape: the sequence
    is zero-padded on the right to S = ceil(T / s) whole segments, summed per segment, and each
    sum divided by the steps the segment really holds (s, or fewer for the last one); each
    step t then takes the mean of segment t // s back (a gather).
    """
    mb, x, s = c.mb, c[op.x], op.segment
    channels = _static(x.shape[1], "channels")
    mean = mb.reduce_mean(x=x, axes=[2], keep_dims=True, name=f"{name}_mean")
    steps = mb.gather(x=mb.shape(x=x, name=f"{name}_shape"), indices=2, axis=0,
                      name=f"{name}_steps")  # T, an int32 scalar
    starts = mb.range_1d(start=np.int32(0), end=steps, step=np.int32(s),
                         name=f"{name}_starts")  # 0, s, 2s, ...: S values
    segments = mb.floor_div(x=mb.add(x=steps, y=np.int32(s - 1), name=f"{name}_up"),
                            y=np.int32(s), name=f"{name}_segments")  # S = ceil(T / s)
    extra = mb.sub(x=mb.mul(x=segments, y=np.int32(s), name=f"{name}_whole"), y=steps,
                   name=f"{name}_extra")
    pads = mb.concat(values=[np.zeros(5, dtype=np.int32),
                             mb.expand_dims(x=extra, axes=[0], name=f"{name}_extra1")],
                     axis=0, name=f"{name}_pads")
    padded = mb.pad(x=x, pad=pads, mode="constant", constant_val=np.float32(0.0),
                    name=f"{name}_padded")
    split = mb.reshape(x=padded, shape=[1, channels, -1, s], name=f"{name}_split")
    sums = mb.reduce_sum(x=split, axes=[3], keep_dims=False, name=f"{name}_sums")  # (1, C, S)
    held = mb.minimum(x=mb.sub(x=steps, y=starts, name=f"{name}_left"), y=np.int32(s),
                      name=f"{name}_held")  # steps in each segment
    held = mb.cast(x=held, dtype="fp32", name=f"{name}_held_fp32")
    means = mb.real_div(x=sums, y=held, name=f"{name}_means")
    which = mb.floor_div(x=mb.range_1d(start=np.int32(0), end=steps, step=np.int32(1),
                                       name=f"{name}_time"),
                         y=np.int32(s), name=f"{name}_which")  # t // s
    spread = mb.gather(x=means, indices=which, axis=2, name=f"{name}_spread")  # (1, C, T)
    return mb.add(x=spread, y=mean, name=name)


def _sigmoid(c: _Mil, op: Sigmoid, name: str):
    return c.mb.sigmoid(x=c[op.x], name=name)


def _mul(c: _Mil, op: Mul, name: str):
    return c.mb.mul(x=c[op.a], y=c[op.b], name=name)


def _sequence_to_frames(c: _Mil, op: SequenceToFrames, name: str):
    """(1, C, T) -> (1, T, C)."""
    return c.mb.transpose(x=c[op.x], perm=[0, 2, 1], name=name)


_TRANSLATORS = {
    ToImage: _to_image,
    Conv2d: _conv2d,
    Relu: _relu,
    Add: _add,
    Mask: _mask,
    ToFrames: _to_frames,
    StatsPool: _stats_pool,
    Linear: _linear,
    L2Normalize: _l2_normalize,
    FreqStridedConv2d: _freq_strided_conv2d,
    ImageToSequence: _image_to_sequence,
    Conv1d: _conv1d,
    Affine: _affine,
    Concat: _concat,
    ContextPool: _context_pool,
    Sigmoid: _sigmoid,
    Mul: _mul,
    SequenceToFrames: _sequence_to_frames,
    TimeMean: _time_mean,
    AttentivePool: _attentive_pool,
}
SUPPORTED_OPS: frozenset[type] = frozenset(_TRANSLATORS)  # graph op types the export translates


def build_program(graph: Graph, tensors: dict[str, np.ndarray], n_mels: int):
    """Translate the graph op by op into a MIL program (one `main` function) -> (program, the
    names of the MIL ops emitted for FLOAT32_OPS, for the float16 variant's op selector)."""
    ct = import_coremltools()
    from coremltools.converters.mil.mil import Builder as mb
    from coremltools.converters.mil.mil import get_new_symbol, types
    from coremltools.converters.mil.mil.block import curr_block

    missing = sorted({type(op).__name__ for op in graph.ops if type(op) not in _TRANSLATORS})
    if missing:
        raise EngineError(f"Core ML export: unsupported op(s) {', '.join(missing)}")
    float32_names: set[str] = set()
    mel = mb.TensorSpec(shape=(1, get_new_symbol(), n_mels), dtype=types.fp32)

    def body(mel, valid=None):
        c = _Mil(mb, tensors, mel, valid)
        block = curr_block()
        for op in graph.ops:
            name = {OUTPUT: EMBEDDING_OUTPUT, FRAMES: FRAMES_OUTPUT}.get(op.out, _mil_name(op.out))
            padded = valid is not None and op.out == FRAMES
            first = len(block.operations)
            c.values[op.out] = _TRANSLATORS[type(op)](c, op, f"{name}_padded" if padded else name)
            if padded:
                c.values[op.out] = _cut_to_valid(c, c.values[op.out], name)
            if type(op) in FLOAT32_OPS:
                float32_names.update(o.name for o in list(block.operations)[first:])
        if c.values.get(OUTPUT) is None or c.values.get(FRAMES) is None:
            raise EngineError(f"Core ML export: the graph does not produce {OUTPUT!r}")
        return c.values[OUTPUT], c.values[FRAMES]

    if graph.pad_to:
        @mb.program(input_specs=[mel, mb.TensorSpec(shape=(1,), dtype=types.int32)],
                    opset_version=ct.target.macOS13)
        def program(mel, valid):
            return body(mel, valid)
    else:
        @mb.program(input_specs=[mel], opset_version=ct.target.macOS13)
        def program(mel):
            return body(mel)

    return program, frozenset(float32_names)
