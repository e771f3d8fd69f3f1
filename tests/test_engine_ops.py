"""Every op type of engines/graph.py through every engine, against numpy written here.

The op types are enumerated from the module, so a new op class fails these tests until each
engine supports it and a case for it is added below. The trunk ops run in the engines (ONNX
Runtime, MLX, Core ML through the MIL interpreter off macOS); an op missing from an engine is a
failure, not a skip. MLX and Core ML are skipped only when their framework package (mlx,
coremltools) is not installed. The head ops (StatsPool, Linear, L2Normalize) run in the numpy
head every engine shares (engines.head.HEAD_OPS); they are tested once, through that head, and
through the Core ML package's own `embedding` output (the export translates them too).

The numpy references work on one clip in logical layouts, float64: an image is (C, F, T), a
sequence and frames are (T, C).
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from platforms import MLX_PLATFORM, NO_MLX_REASON
from pyannet_reference import instance_norm, log_softmax, lstm, max_pool

from engines import graph as graph_module
from engines.errors import EngineError
from engines.graph import (
    FRAMES,
    INPUT,
    LSTM,
    OUTPUT,
    Abs,
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
    InstanceNorm,
    L2Normalize,
    LeakyRelu,
    Linear,
    LogSoftmax,
    Mask,
    MaxPool1d,
    Mul,
    Relu,
    SequenceToFrames,
    Sigmoid,
    StatsPool,
    TimeMean,
    ToFrames,
    ToImage,
    Waveform,
)
from engines.head import HEAD_OPS
from engines.model import ModelConfig, Weights

BINS = 6  # mel bins of the test input
FRAMES_IN = 9  # input frames of most cases
EMBEDDING = 3  # outputs of the head's Linear
ENGINES = ("onnx", "mlx", "coreml")
TOLERANCE = dict(rtol=1e-4, atol=1e-4)  # float32 engines against float64 numpy


def graph_op_types() -> list[type]:
    """Every op class defined in engines/graph.py (its dataclasses other than Graph)."""
    found = [obj for obj in vars(graph_module).values()
             if inspect.isclass(obj) and dataclasses.is_dataclass(obj)
             and obj.__module__ == graph_module.__name__ and obj is not Graph]
    return sorted(found, key=lambda c: c.__name__)


OP_TYPES = graph_op_types()
TRUNK_OP_TYPES = [t for t in OP_TYPES if t not in HEAD_OPS]
# The segmentation network's ops (engines/segmentation.py): ONNX and MLX run them; the Core ML
# export does not, and must refuse them with a clear error (checked below), not crash.
NOT_IN_CORE_ML = {Waveform, InstanceNorm, Abs, MaxPool1d, LeakyRelu, LSTM, LogSoftmax}


# ---------------------------------------------------------------- numpy references


def conv2d(img: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides: tuple[int, int],
           pad: int) -> np.ndarray:
    """(I, F, T) image * [O, kH, kW, I] kernel -> (O, F', T'), zero padding."""
    sf, st = strides
    _, kh, kw, _ = w.shape
    padded = np.pad(img, [(0, 0), (pad, pad), (pad, pad)])
    rows, cols = (padded.shape[1] - kh) // sf + 1, (padded.shape[2] - kw) // st + 1
    out = np.zeros((w.shape[0], rows, cols))
    for f in range(rows):
        for t in range(cols):
            patch = padded[:, f * sf:f * sf + kh, t * st:t * st + kw]  # (I, kH, kW)
            out[:, f, t] = np.einsum("oabi,iab->o", w, patch)
    return out if b is None else out + b[:, None, None]


def conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int, pad: int,
           dil: int) -> np.ndarray:
    """(T, I) sequence * [O, k, I] kernel -> (T', O), zero padding."""
    padded = np.pad(x, [(pad, pad), (0, 0)])
    k = w.shape[1]
    steps = (len(padded) - dil * (k - 1) - 1) // stride + 1
    out = np.stack([sum(padded[t * stride + j * dil] @ w[:, j, :].T for j in range(k))
                    for t in range(steps)])
    return out if b is None else out + b


def image_rows(img: np.ndarray) -> np.ndarray:
    """(C, F, T) -> (T, C*F), feature index c*F + f."""
    channels, freq, steps = img.shape
    return np.stack([img[:, :, t].reshape(channels * freq) for t in range(steps)])


def context_pool(x: np.ndarray, segment: int) -> np.ndarray:
    """(T, C) -> utterance mean + mean of each step's segment (last segment: what it holds)."""
    out = np.empty_like(x)
    for start in range(0, len(x), segment):
        out[start:start + segment] = x[start:start + segment].mean(axis=0)
    return out + x.mean(axis=0)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def head(frames: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T', D) -> unit vector of Linear([mean ‖ unbiased std])."""
    pooled = np.concatenate([frames.mean(axis=0), frames.std(axis=0, ddof=1)])
    raw = w @ pooled + b
    return raw / np.linalg.norm(raw)


# ---------------------------------------------------------------- cases


@dataclass
class Case:
    """A trunk INPUT -> FRAMES exercising one op, its weights and its numpy reference."""

    build: Callable[[Graph], None]  # adds the trunk's ops; the last one writes FRAMES
    reference: Callable[[np.ndarray], np.ndarray]  # (T, BINS) float64 clip -> (T', D) frames
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    lengths: tuple[int, ...] = (FRAMES_IN,)  # input frames to run (a batch of 2 each)
    ragged: tuple[int, int] | None = None  # lengths of a zero-padded batch, instead
    scale: float = 1.0  # of the random input
    waveform: bool = False  # INPUT is (B, N) samples (the first bin of the random features)


def rng_for(name: str) -> np.random.Generator:
    return np.random.default_rng(sum(map(ord, name)))


def image_case(body: Callable[[Graph, str], str], reference, tensors=None, **kw) -> Case:
    """features -> ToImage -> body -> ToFrames; the reference maps a (1, F, T) image."""
    def build(g: Graph) -> None:
        g.add(ToFrames(body(g, g.add(ToImage(INPUT, "image"))), FRAMES))

    return Case(build, lambda x: image_rows(reference(x.T[None])), tensors or {}, **kw)


def sequence_case(body: Callable[[Graph, str], str], reference, tensors=None, **kw) -> Case:
    """features -> ToImage -> ImageToSequence -> body -> SequenceToFrames; reference on (T, F)."""
    def build(g: Graph) -> None:
        seq = g.add(ImageToSequence(g.add(ToImage(INPUT, "image")), "seq"))
        g.add(SequenceToFrames(body(g, seq), FRAMES))

    return Case(build, reference, tensors or {}, **kw)


def frames_case(make: Callable[[str, str], object], reference, tensors=None, **kw) -> Case:
    """features -> ToImage -> ImageToSequence -> SequenceToFrames -> the op `make(x, FRAMES)`
    on frames; the reference maps (T, F)."""
    def build(g: Graph) -> None:
        seq = g.add(ImageToSequence(g.add(ToImage(INPUT, "image")), "seq"))
        g.add(make(g.add(SequenceToFrames(seq, "seq.frames")), FRAMES))

    return Case(build, reference, tensors or {}, **kw)


def kernel(name: str, shape: tuple[int, ...]) -> np.ndarray:
    return rng_for(name + str(shape)).standard_normal(shape).astype(np.float32)


def conv2d_case(stride: int, pad: int, k: int, channels: int = 3) -> Case:
    t = {"c.w": kernel("c2", (channels, k, k, 1)), "c.b": kernel("c2b", (channels,))}
    return image_case(lambda g, x: g.add(Conv2d(x, "conv", "c.w", "c.b", stride, pad)),
                      lambda img: conv2d(img, t["c.w"], t["c.b"], (stride, stride), pad), t)


def freq_conv_case(stride: int, pad: int, k: int, bias: bool, channels: int = 2) -> Case:
    t = {"f.w": kernel("fc", (channels, k, k, 1))}
    if bias:
        t["f.b"] = kernel("fcb", (channels,))

    def body(g, x):
        return g.add(ImageToSequence(g.add(FreqStridedConv2d(
            x, "fconv", "f.w", "f.b" if bias else None, stride, pad)), "fseq"))

    def build(g: Graph) -> None:
        g.add(SequenceToFrames(body(g, g.add(ToImage(INPUT, "image"))), FRAMES))

    return Case(build, lambda x: image_rows(conv2d(x.T[None], t["f.w"], t.get("f.b"), (stride, 1),
                                                   pad)), t)


def conv1d_case(stride: int, pad: int, dil: int, k: int, bias: bool, out: int = 4) -> Case:
    t = {"k.w": kernel("c1", (out, k, BINS))}
    if bias:
        t["k.b"] = kernel("c1b", (out,))
    return sequence_case(
        lambda g, x: g.add(Conv1d(x, "conv1d", "k.w", "k.b" if bias else None, stride, pad, dil)),
        lambda x: conv1d(x, t["k.w"], t.get("k.b"), stride, pad, dil), t)


def mask_case() -> Case:
    """conv (time stride 2) -> relu -> Mask -> conv on a zero-padded batch of lengths 9 and 5:
    the valid steps must equal each clip run alone (positive biases make the padded steps
    nonzero before the Mask)."""
    t = {"m1.w": kernel("m1", (2, 3, 3, 1)), "m1.b": np.full(2, 0.5, np.float32),
         "m2.w": kernel("m2", (2, 3, 3, 2)), "m2.b": np.full(2, 0.5, np.float32)}

    def body(g, x):
        h = g.add(Relu(g.add(Conv2d(x, "m1", "m1.w", "m1.b", 2, 1)), "m1.relu"))
        return g.add(Conv2d(g.add(Mask(h, "masked")), "m2", "m2.w", "m2.b", 1, 1))

    def reference(img):
        h = relu(conv2d(img, t["m1.w"], t["m1.b"], (2, 2), 1))
        return conv2d(h, t["m2.w"], t["m2.b"], (1, 1), 1)

    return image_case(body, reference, t, ragged=(9, 5))


def squeeze_excite_case() -> Case:
    """x * sigmoid(conv1x1(relu(conv1x1(mean over time of x)))): the one-step mean through
    convolutions, then broadcast back over time by Mul."""
    t = {"se1.w": kernel("se1", (3, 1, BINS)), "se1.b": kernel("se1b", (3,)),
         "se2.w": kernel("se2", (BINS, 1, 3)), "se2.b": kernel("se2b", (BINS,))}

    def body(g, x):
        h = g.add(Relu(g.add(Conv1d(g.add(TimeMean(x, "mean")), "se1", "se1.w", "se1.b")),
                       "se1.relu"))
        gate = g.add(Sigmoid(g.add(Conv1d(h, "se2", "se2.w", "se2.b")), "gate"))
        return g.add(Mul(x, gate, "excited"))

    def reference(x):
        h = relu(t["se1.w"][:, 0] @ x.mean(axis=0) + t["se1.b"])
        return x * sigmoid(t["se2.w"][:, 0] @ h + t["se2.b"])

    return sequence_case(body, reference, t, lengths=(2, 9, 40))


def affine_tensors() -> dict[str, np.ndarray]:
    return {"a.w": rng_for("aw").uniform(0.5, 2, BINS).astype(np.float32),
            "a.b": kernel("ab", (BINS,))}


AFFINE = affine_tensors()


# ---- the segmentation network's ops


def lstm_case(layers: int, bidirectional: bool, hidden: int = 3) -> Case:
    op = LSTM("x", FRAMES, "rnn", layers, bidirectional)
    t, width = {}, BINS
    for layer in range(layers):
        for d in op.directions():
            for part, cols in zip(LSTM.PARTS, (width, hidden, None, None), strict=True):
                shape = (4 * hidden, cols) if cols else (4 * hidden,)
                t[f"rnn.{part}_l{layer}{d}"] = kernel(f"{part}{layer}{d}", shape)
        width = hidden * len(op.directions())
    return frames_case(lambda x, out: LSTM(x, out, "rnn", layers, bidirectional),
                       lambda x: lstm(x, t, "rnn", layers, op.directions()), t,
                       lengths=(1, 9, 17))


NORM = {"n.w": rng_for("nw").uniform(0.5, 2, BINS).astype(np.float32),
        "n.b": kernel("nb", (BINS,))}
CLASSES = {"cls.w": kernel("clsw", (4, BINS)), "cls.b": kernel("clsb", (4,))}


def classifier_case() -> Case:
    """Linear (in the trunk, on frames) -> LogSoftmax."""
    def build(g: Graph) -> None:
        seq = g.add(ImageToSequence(g.add(ToImage(INPUT, "image")), "seq"))
        x = g.add(Linear(g.add(SequenceToFrames(seq, "seq.frames")), "cls", "cls.w", "cls.b"))
        g.add(LogSoftmax(x, FRAMES))

    return Case(build, lambda x: log_softmax(x @ CLASSES["cls.w"].T + CLASSES["cls.b"]),
                CLASSES, scale=10.0)


def waveform_case() -> Case:
    def build(g: Graph) -> None:
        g.add(SequenceToFrames(g.add(Waveform(INPUT, "wave")), FRAMES))

    return Case(build, lambda x: x[:, None], waveform=True, lengths=(1, 9, 400))
CONTEXT_EDGES = (2, 3, 4, 5, 8, 11)  # across the edges of 4-step segments
# CAM++'s context-aware mask: a local convolution times sigmoid(1x1 conv(relu(1x1 conv(
# context)))); the ONNX translation runs the 1x1 convolutions once per segment
CAM = {"local.w": kernel("cam_local", (4, 3, BINS)), "c1.w": kernel("cam_c1", (3, 1, BINS)),
       "c1.b": kernel("cam_c1b", (3,)), "c2.w": kernel("cam_c2", (4, 1, 3)),
       "c2.b": kernel("cam_c2b", (4,))}


def cam_mask(g: Graph, x: str) -> str:
    local = g.add(Conv1d(x, "local", "local.w", None, 1, 1, 1))
    context = g.add(ContextPool(x, "ctx", 4))
    hidden = g.add(Relu(g.add(Conv1d(context, "c1", "c1.w", "c1.b")), "c1.relu"))
    mask = g.add(Sigmoid(g.add(Conv1d(hidden, "c2", "c2.w", "c2.b")), "mask"))
    return g.add(Mul(local, mask, "masked"))


def cam_mask_reference(x: np.ndarray) -> np.ndarray:
    w = {k: v.astype(np.float64) for k, v in CAM.items()}
    hidden = relu(conv1d(context_pool(x, 4), w["c1.w"], w["c1.b"], 1, 0, 1))
    return conv1d(x, w["local.w"], None, 1, 1, 1) * sigmoid(
        conv1d(hidden, w["c2.w"], w["c2.b"], 1, 0, 1))


CASES: dict[type, dict[str, Case]] = {
    ToImage: {"to_frames": image_case(lambda g, x: x, lambda img: img)},
    Conv2d: {"k3_stride1": conv2d_case(1, 1, 3), "k3_stride2": conv2d_case(2, 1, 3),
             "k1_stride2_shortcut": conv2d_case(2, 0, 1)},
    Relu: {"image": image_case(lambda g, x: g.add(Relu(x, "relu")), relu),
           "sequence": sequence_case(lambda g, x: g.add(Relu(x, "relu")), relu)},
    Add: {"x_plus_relu_x": image_case(
        lambda g, x: g.add(Add(x, g.add(Relu(x, "relu")), "sum")), lambda img: img + relu(img))},
    Mask: {"ragged_batch": mask_case()},
    ToFrames: {"channel_order": conv2d_case(1, 1, 3, channels=2)},
    FreqStridedConv2d: {"bias": freq_conv_case(2, 1, 3, bias=True),
                        "no_bias": freq_conv_case(1, 1, 3, bias=False),
                        "k1_stride2_shortcut": freq_conv_case(2, 0, 1, bias=True)},
    ImageToSequence: {"channel_order": freq_conv_case(2, 1, 3, bias=False, channels=3),
                      "one_channel": sequence_case(lambda g, x: x, lambda x: x)},
    Conv1d: {"k3_bias": conv1d_case(1, 1, 1, 3, bias=True),
             "k3_dilation2_no_bias": conv1d_case(1, 2, 2, 3, bias=False),
             "k5_stride2": conv1d_case(2, 2, 1, 5, bias=True),
             "k1": conv1d_case(1, 0, 1, 1, bias=True)},
    Affine: {"per_channel": sequence_case(
        lambda g, x: g.add(Affine(x, "affine", "a.w", "a.b")),
        lambda x: x * AFFINE["a.w"] + AFFINE["a.b"], AFFINE)},
    Concat: {"x_relu_x": sequence_case(
        lambda g, x: g.add(Concat(x, g.add(Relu(x, "relu")), "cat")),
        lambda x: np.concatenate([x, relu(x)], axis=1))},
    ContextPool: {
        "segment4_edges": sequence_case(lambda g, x: g.add(ContextPool(x, "ctx", 4)),
                                        lambda x: context_pool(x, 4), lengths=CONTEXT_EDGES),
        "segment100": sequence_case(lambda g, x: g.add(ContextPool(x, "ctx")),
                                    lambda x: context_pool(x, 100), lengths=(150, 250, 300)),
        "cam_mask": sequence_case(cam_mask, cam_mask_reference, CAM, lengths=CONTEXT_EDGES),
    },
    Sigmoid: {"saturating": sequence_case(lambda g, x: g.add(Sigmoid(x, "gate")), sigmoid,
                                          scale=20.0)},
    Mul: {"x_times_relu_x": sequence_case(
        lambda g, x: g.add(Mul(x, g.add(Relu(x, "relu")), "prod")), lambda x: x * relu(x))},
    SequenceToFrames: {"identity": sequence_case(lambda g, x: x, lambda x: x)},
    Waveform: {"samples": waveform_case()},
    InstanceNorm: {"per_channel": sequence_case(
        lambda g, x: g.add(InstanceNorm(x, "norm", "n.w", "n.b")),
        lambda x: instance_norm(x.T, NORM["n.w"], NORM["n.b"]).T, NORM, lengths=(2, 9, 40),
        scale=5.0)},
    Abs: {"abs": sequence_case(lambda g, x: g.add(Abs(x, "abs")), np.abs)},
    MaxPool1d: {"k3_stride3": sequence_case(lambda g, x: g.add(MaxPool1d(x, "pool", 3, 3)),
                                            lambda x: max_pool(x.T, 3, 3).T, lengths=(3, 9, 11)),
                "k3_stride2": sequence_case(lambda g, x: g.add(MaxPool1d(x, "pool", 3, 2)),
                                            lambda x: max_pool(x.T, 3, 2).T, lengths=(4, 9))},
    LeakyRelu: {"slope_0.01": sequence_case(lambda g, x: g.add(LeakyRelu(x, "leaky")),
                                            lambda x: np.where(x > 0, x, 0.01 * x)),
                "slope_0.2": sequence_case(lambda g, x: g.add(LeakyRelu(x, "leaky", 0.2)),
                                           lambda x: np.where(x > 0, x, 0.2 * x))},
    LSTM: {"two_layers_bidirectional": lstm_case(2, True),
           "one_layer_forward": lstm_case(1, False)},
    LogSoftmax: {"after_linear": classifier_case()},
    TimeMean: {"times_x": sequence_case(lambda g, x: g.add(Mul(x, g.add(TimeMean(x, "mean")),
                                                               "scaled")),
                                        lambda x: x * x.mean(axis=0), lengths=(2, 9)),
               "padded_batch": sequence_case(
                   lambda g, x: g.add(Mul(x, g.add(TimeMean(x, "mean")), "scaled")),
                   lambda x: x * x.mean(axis=0), ragged=(9, 5)),
               "squeeze_excite": squeeze_excite_case()},
}


def case_params() -> list:
    """(op type, variant) for every trunk op type; (op type, None) when it has no case."""
    return [pytest.param(t, v, id=f"{t.__name__}-{v}")
            for t in TRUNK_OP_TYPES for v in (CASES.get(t) or {None: None})]


# ---------------------------------------------------------------- engines


def supported_ops(name: str) -> frozenset[type]:
    """The op types an engine declares (importing it; skipped only without its framework)."""
    if name == "onnx":
        from engines.onnx_export import SUPPORTED_OPS
    elif name == "mlx":
        if not MLX_PLATFORM:
            pytest.skip(NO_MLX_REASON)
        from engines.mlx_engine import SUPPORTED_OPS
    else:
        pytest.importorskip("coremltools", reason="coremltools is not installed")
        from engines.coreml_program import SUPPORTED_OPS
    return SUPPORTED_OPS


def make_engine(name: str, graph: Graph, tensors: dict[str, np.ndarray], tmp_path):
    """The named engine for a test graph; a missing framework skips, anything else fails."""
    supported_ops(name)  # the framework check
    config = ModelConfig(model_type="test", n_mels=BINS, embedding_dim=EMBEDDING)
    weights = Weights(tensors=tensors)
    if name == "onnx":
        from engines.onnx_engine import ONNXEngine

        return ONNXEngine(config, weights, cache_dir=tmp_path, graph=graph)
    if name == "mlx":
        from engines.mlx_engine import MLXEngine

        return MLXEngine(graph, weights)
    from engines.coreml_engine import CoreMLEngine

    return CoreMLEngine(config, weights, cache_dir=tmp_path, graph=graph, log=io.StringIO())


def with_head(build: Callable[[Graph], None], frames_dim: int,
              tensors: dict[str, np.ndarray]) -> tuple[Graph, dict[str, np.ndarray]]:
    """The trunk plus the shared head StatsPool -> Linear -> L2Normalize, and all weights."""
    g = Graph()
    build(g)
    g.add(L2Normalize(g.add(Linear(g.add(StatsPool(FRAMES, "pooled")), "raw", "lin.w",
                                   "lin.b")), OUTPUT))
    rng = np.random.default_rng(frames_dim)
    head_tensors = {"lin.w": rng.standard_normal((EMBEDDING, 2 * frames_dim)).astype(np.float32),
                    "lin.b": rng.standard_normal(EMBEDDING).astype(np.float32)}
    return g, {**tensors, **head_tensors}


ATTENTION = 4  # channels of the attentive pooling's hidden layer


def with_attentive_head(build: Callable[[Graph], None], frames_dim: int,
                        tensors: dict[str, np.ndarray]) -> tuple[Graph, dict[str, np.ndarray]]:
    """The trunk plus AttentivePool -> Linear -> Relu -> Linear -> L2Normalize."""
    g = Graph()
    build(g)
    x = g.add(Linear(g.add(AttentivePool(FRAMES, "pooled", "att")), "hidden", "l1.w", "l1.b"))
    x = g.add(Linear(g.add(Relu(x, "hidden.relu")), "raw", "l2.w", "l2.b"))
    g.add(L2Normalize(x, OUTPUT))
    rng = np.random.default_rng(frames_dim)
    d, a = frames_dim, ATTENTION
    shapes = {"att.tdnn.weight": (a, 3 * d), "att.tdnn.bias": (a,), "att.bn.weight": (a,),
              "att.bn.bias": (a,), "att.attention.weight": (d, a), "att.attention.bias": (d,),
              "l1.w": (5, 2 * d), "l1.b": (5,), "l2.w": (EMBEDDING, 5), "l2.b": (EMBEDDING,)}
    head_tensors = {k: rng.standard_normal(v).astype(np.float32) for k, v in shapes.items()}
    return g, {**tensors, **head_tensors}


def attentive_head(frames: np.ndarray, t: dict[str, np.ndarray]) -> np.ndarray:
    """(T', D) -> the unit vector of with_attentive_head's head, written out in float64."""
    x = frames.astype(np.float64)
    w = {k: v.astype(np.float64) for k, v in t.items()}
    mean, std = x.mean(axis=0), x.std(axis=0)
    joined = np.concatenate([x, np.tile(mean, (len(x), 1)), np.tile(std, (len(x), 1))], axis=1)
    hidden = relu(joined @ w["att.tdnn.weight"].T + w["att.tdnn.bias"])
    hidden = hidden * w["att.bn.weight"] + w["att.bn.bias"]
    energy = np.tanh(hidden) @ w["att.attention.weight"].T + w["att.attention.bias"]
    alpha = np.exp(energy) / np.exp(energy).sum(axis=0)
    mu = (alpha * x).sum(axis=0)
    sigma = np.sqrt((alpha * (x - mu) ** 2).sum(axis=0))
    h = relu(w["l1.w"] @ np.concatenate([mu, sigma]) + w["l1.b"])
    raw = w["l2.w"] @ h + w["l2.b"]
    return raw / np.linalg.norm(raw)


def features(frames: int, scale: float = 1.0, batch: int = 2, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed + frames)
    return (rng.standard_normal((batch, frames, BINS)) * scale).astype(np.float32)


def clip(x: np.ndarray, case: Case) -> np.ndarray:
    """The input a case's graph reads: the features, or (B, N) samples for a waveform one."""
    return np.ascontiguousarray(x[..., 0]) if case.waveform else x


# ---------------------------------------------------------------- tests


def test_every_op_class_is_in_the_op_union():
    """graph.Op names every op class; the head ops are op classes too."""
    assert set(typing.get_args(graph_module.Op)) == set(OP_TYPES)
    assert HEAD_OPS <= set(OP_TYPES)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("op_type", "variant"), case_params())
def test_op_through_engine(op_type, variant, engine, tmp_path):
    if variant is None:
        pytest.fail(f"no test case for {op_type.__name__}: add one to CASES in {__name__}")
    case = CASES[op_type][variant]
    probe = case.reference(clip(features(FRAMES_IN, batch=1), case)[0].astype(np.float64))
    graph, tensors = with_head(case.build, probe.shape[1], case.tensors)
    assert op_type in {type(op) for op in graph.trunk_ops()}
    if engine == "coreml" and op_type in NOT_IN_CORE_ML:
        assert op_type not in supported_ops(engine)
        with pytest.raises(EngineError, match=f"unsupported op.*{op_type.__name__}"):
            make_engine(engine, graph, tensors, tmp_path)
        return
    assert op_type in supported_ops(engine), f"{engine} does not declare {op_type.__name__}"
    runner = make_engine(engine, graph, tensors, tmp_path)
    if case.ragged is not None:
        lengths = np.array(case.ragged)
        x = features(int(lengths.max()), case.scale)
        for row, n in enumerate(lengths):
            x[row, n:] = 0.0  # a padded batch: zeros after each clip
        got = runner.encode(x, lengths)
        for row, n in enumerate(lengths):
            expected = case.reference(x[row, :n].astype(np.float64))
            np.testing.assert_allclose(got[row, :len(expected)], expected, **TOLERANCE,
                                       err_msg=f"{engine} {op_type.__name__} clip of {n}")
        return
    for frames in case.lengths:
        x = clip(features(frames, case.scale), case)
        got = runner.encode(x)
        assert got.shape[0] == 2
        for row in range(2):
            expected = case.reference(x[row].astype(np.float64))
            np.testing.assert_allclose(got[row], expected, **TOLERANCE,
                                       err_msg=f"{engine} {op_type.__name__} T={frames}")


@pytest.mark.parametrize("op_type", sorted(HEAD_OPS, key=lambda c: c.__name__))
def test_head_op_runs_in_the_shared_head(op_type):
    """The engines' trunks stop at FRAMES; engines.head.Head evaluates the rest."""
    from engines.head import Head

    make = with_attentive_head if op_type is AttentivePool else with_head
    graph, tensors = make(CASES[Relu]["sequence"].build, BINS, {})
    assert op_type in {type(op) for op in graph.head_ops()}
    assert op_type not in {type(op) for op in graph.trunk_ops()}
    Head(graph, Weights(tensors=tensors))  # accepts the head


def test_shared_head_matches_numpy_on_a_padded_batch(tmp_path):
    """StatsPool over each clip's valid steps, then Linear, then L2Normalize (engines.head),
    through an engine's embed (ONNX here; every engine shares this head)."""
    trunk = image_case(lambda g, x: g.add(Mask(g.add(Relu(x, "relu")), "masked")), relu)
    graph, tensors = with_head(trunk.build, BINS, {})
    engine = make_engine("onnx", graph, tensors, tmp_path)
    x = features(12)
    x[1, 7:] = 0.0
    got = engine.embed(x, np.array([12, 7]))
    for row, n in enumerate((12, 7)):
        expected = head(relu(x[row, :n].astype(np.float64)), tensors["lin.w"], tensors["lin.b"])
        np.testing.assert_allclose(got[row], expected, rtol=1e-5, atol=1e-6)


def test_attentive_head_matches_numpy_on_a_padded_batch(tmp_path):
    """AttentivePool (and a Relu between Linears) over each clip's valid steps, in the shared
    head, through the ONNX engine's embed."""
    trunk = image_case(lambda g, x: g.add(Mask(g.add(Relu(x, "relu")), "masked")), relu)
    graph, tensors = with_attentive_head(trunk.build, BINS, {})
    engine = make_engine("onnx", graph, tensors, tmp_path)
    x = features(12)
    x[1, 7:] = 0.0
    got = engine.embed(x, np.array([12, 7]))
    for row, n in enumerate((12, 7)):
        expected = attentive_head(relu(x[row, :n].astype(np.float64)), tensors)
        np.testing.assert_allclose(got[row], expected, rtol=1e-5, atol=1e-6)


def test_core_ml_package_translates_the_head_ops_too(tmp_path):
    """The Core ML export also translates the head, for the package's `embedding` output."""
    pytest.importorskip("coremltools", reason="coremltools is not installed")
    from engines.coreml_program import EMBEDDING_OUTPUT, MEL_INPUT, SUPPORTED_OPS
    from engines.mil_interpreter import MILInterpreter

    assert HEAD_OPS <= SUPPORTED_OPS
    graph, tensors = with_head(CASES[Relu]["sequence"].build, BINS, {})
    engine = make_engine("coreml", graph, tensors, tmp_path)
    package = MILInterpreter(engine.package)
    for frames in (2, 9):
        x = features(frames, batch=1)
        got = package.predict({MEL_INPUT: x})[EMBEDDING_OUTPUT][0]
        expected = head(relu(x[0].astype(np.float64)), tensors["lin.w"], tensors["lin.b"])
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    graph, tensors = with_attentive_head(CASES[Relu]["sequence"].build, BINS, {})
    package = MILInterpreter(make_engine("coreml", graph, tensors, tmp_path / "att").package)
    for frames in (2, 9):
        x = features(frames, batch=1)
        got = package.predict({MEL_INPUT: x})[EMBEDDING_OUTPUT][0]
        np.testing.assert_allclose(got, attentive_head(relu(x[0].astype(np.float64)), tensors),
                                   rtol=1e-5, atol=1e-6)
