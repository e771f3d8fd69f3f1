"""Export the shared graph as a Core ML ML Program (`.mlpackage`), built with coremltools' MIL
builder from the same weights every engine uses (no PyTorch involved).

The package has one input, `mel` [1, T, n_mels] float32 (log-mel features after CMN), with a
flexible T (a RangeDim from the network's minimum up to MAX_FRAMES), and one output,
`embedding` [1, dim], L2-normalised, plus `frames` [1, T', D], the trunk's output that the
engine pools itself (exactly, also across the chunks of a long input). Each clip runs at its
own length: nothing is padded and nothing is cut, so the graph's Mask ops are identities.

Layout: MIL convolutions are NCHW with weights [O, I, kH, kW], so the (1, T, F) features become
a (1, 1, F, T) image (height = frequency, width = time) and the graph's [O, kH, kW, I] conv
weights are transposed once at export time. ToFrames reshapes (1, C, F, T') to (1, C*F, T')
and transposes it, which is exactly the graph's `c*F + f` feature order.

Precision: `float32` computes everything in float32. `float16` runs the feature-map ops
(conv, relu, add: all but a sliver of the work) in float16 and keeps the pooling, the linear
layer and the normalisation in float32; the sum of squares behind the standard deviation and
the L2 norm would overflow float16 (max 65504) on activations of a few hundred.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import numpy as np

from engines.errors import EngineError, ModelError, UsageError
from engines.files import scratch_dir
from engines.graph import (
    FRAMES,
    INPUT,
    OUTPUT,
    Add,
    Conv2d,
    Graph,
    L2Normalize,
    Linear,
    Mask,
    Relu,
    StatsPool,
    ToFrames,
    ToImage,
)
from engines.mil_interpreter import import_coremltools
from engines.model import ModelConfig, Weights

MEL_INPUT = "mel"
EMBEDDING_OUTPUT = "embedding"
FRAMES_OUTPUT = "frames"
EXPORT_VERSION = 2  # bump when the exported program changes (cached packages are re-exported)
MAX_FRAMES = 30000  # 5 minutes at 100 frames/s; ML Programs need a finite upper bound
DEFAULT_FRAMES = 300  # the shape Core ML plans for first (3 s)
PRECISIONS = ("float32", "float16")
FP16_OP_TYPES = frozenset({"conv", "relu", "add"})  # what the float16 package runs in float16
PACKAGE_SUFFIX = ".mlpackage"

# Keys of the package's user-defined metadata.
META_MODEL_ID = "model_id"
META_LICENSE = "license"
META_WEIGHTS_SHA256 = "weights_sha256"
META_PRECISION = "precision"
META_MODEL_TYPE = "model_type"
META_MAX_FRAMES = "max_frames"


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


def _to_frames(mb, x, name: str):
    """(1, C, F, T') -> (1, T', C*F), feature index c*F + f."""
    _, channels, freq, _ = x.shape
    if not (isinstance(channels, int) and isinstance(freq, int)):
        raise EngineError("Core ML export: channels and frequency rows must be static")
    flat = mb.reshape(x=x, shape=[1, channels * freq, -1], name=f"{name}_flat")
    return mb.transpose(x=flat, perm=[0, 2, 1], name=name)


def _stats_pool(mb, x, name: str):
    """(1, T', D) -> (1, 2*D) [mean ‖ unbiased std] over time."""
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


def build_program(graph: Graph, tensors: dict[str, np.ndarray], n_mels: int):
    """Translate the shared graph op by op into a MIL program (one `main` function)."""
    ct = import_coremltools()
    from coremltools.converters.mil.mil import Builder as mb
    from coremltools.converters.mil.mil import get_new_symbol, types

    frames = get_new_symbol()

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, frames, n_mels), dtype=types.fp32)],
                opset_version=ct.target.macOS13)
    def program(mel):
        values = {INPUT: mel}
        for op in graph.ops:
            name = {OUTPUT: EMBEDDING_OUTPUT, FRAMES: FRAMES_OUTPUT}.get(op.out, _mil_name(op.out))
            if isinstance(op, ToImage):  # (1, T, F) -> (1, 1, F, T): NCHW, H = frequency
                image = mb.transpose(x=values[op.x], perm=[0, 2, 1], name=f"{name}_ft")
                values[op.out] = mb.expand_dims(x=image, axes=[1], name=name)
            elif isinstance(op, Conv2d):
                weight = _tensor(tensors, op.weight, 4).transpose(0, 3, 1, 2)  # -> [O, I, kH, kW]
                bias = _tensor(tensors, op.bias, 1)
                pad = [op.padding] * 4
                values[op.out] = mb.conv(x=values[op.x], weight=weight, bias=bias,
                                         strides=[op.stride, op.stride], pad_type="custom",
                                         pad=pad, name=name)
            elif isinstance(op, Relu):
                values[op.out] = mb.relu(x=values[op.x], name=name)
            elif isinstance(op, Add):
                values[op.out] = mb.add(x=values[op.a], y=values[op.b], name=name)
            elif isinstance(op, Mask):  # one clip at its own length: nothing to mask
                values[op.out] = values[op.x]
            elif isinstance(op, ToFrames):
                values[op.out] = _to_frames(mb, values[op.x], name)
            elif isinstance(op, StatsPool):
                values[op.out] = _stats_pool(mb, values[op.x], name)
            elif isinstance(op, Linear):
                values[op.out] = mb.linear(x=values[op.x], weight=_tensor(tensors, op.weight, 2),
                                           bias=_tensor(tensors, op.bias, 1), name=name)
            elif isinstance(op, L2Normalize):
                norm = mb.reduce_l2_norm(x=values[op.x], axes=[-1], keep_dims=True,
                                         name=f"{name}_norm")
                values[op.out] = mb.real_div(x=values[op.x], y=norm, name=name)
            else:
                raise EngineError(f"Core ML export: unsupported op {type(op).__name__}")
        if values.get(OUTPUT) is None or values.get(FRAMES) is None:
            raise EngineError(f"Core ML export: the graph does not produce {OUTPUT!r}")
        return values[OUTPUT], values[FRAMES]

    return program


def _compute_precision(ct, precision: str):
    if precision == "float32":
        return ct.precision.FLOAT32
    return ct.transform.FP16ComputePrecision(op_selector=lambda op: op.op_type in FP16_OP_TYPES)


def check_precision(precision: str) -> str:
    """The precision if it is one this export knows, else UsageError."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    return precision


def build_mlmodel(config: ModelConfig, weights: Weights, precision: str = "float32"):
    """The ML Program (a coremltools MLModel, not loaded for prediction) with its metadata."""
    from engines import build_graph

    check_precision(precision)
    graph = build_graph(config)
    ct = import_coremltools()
    program = build_program(graph, weights.tensors(), config.n_mels)
    lower = graph.min_frames()
    mel_type = ct.TensorType(
        name=MEL_INPUT,
        shape=(1, ct.RangeDim(lower_bound=lower, upper_bound=MAX_FRAMES,
                              default=max(lower, DEFAULT_FRAMES)), config.n_mels),
        dtype=np.float32,
    )
    try:
        # coremltools draws tqdm progress bars on stderr; keep the CLI's stderr for messages.
        with contextlib.redirect_stderr(io.StringIO()):
            model = ct.convert(
                program,
                convert_to="mlprogram",
                inputs=[mel_type],
                compute_precision=_compute_precision(ct, precision),
                minimum_deployment_target=ct.target.macOS13,
                skip_model_load=True,
            )
    except Exception as exc:  # coremltools raises many types; name the step that failed
        raise EngineError(f"Core ML export failed while converting the program: {exc}") from exc
    model_id = config.model_id or "unknown"
    licence = config.license or "unknown"
    model.short_description = (
        f"Speaker embedding ({config.model_type}, {config.embedding_dim}-dim, L2-normalised) "
        f"from {config.n_mels}-bin log-mel features after CMN; weights: {model_id}."
    )
    model.license = licence
    model.author = f"weights: {model_id}; exported by audio-speaker"
    model.input_description[MEL_INPUT] = (
        f"log-mel filterbank features after CMN, [1, T, {config.n_mels}], "
        f"T from {lower} to {MAX_FRAMES} frames (10 ms each); no padding needed"
    )
    model.output_description[EMBEDDING_OUTPUT] = (
        f"speaker embedding [1, {config.embedding_dim}], unit L2 norm"
    )
    model.output_description[FRAMES_OUTPUT] = (
        "the network's frame vectors before pooling, [1, T', D] (T' = ceil(T / 8) for ResNet)"
    )
    meta = model.user_defined_metadata
    meta[META_MODEL_ID] = model_id
    meta[META_LICENSE] = licence
    meta[META_WEIGHTS_SHA256] = weights.digest()
    meta[META_PRECISION] = precision
    meta[META_MODEL_TYPE] = config.model_type
    meta[META_MAX_FRAMES] = str(MAX_FRAMES)
    return model


def export_coreml(config: ModelConfig, weights: Weights, out_path: Path,
                  precision: str = "float32") -> Path:
    """Write the model as a new `.mlpackage` at `out_path`; never replaces an existing path."""
    out_path = Path(out_path)
    check_precision(precision)
    if out_path.suffix != PACKAGE_SUFFIX:
        raise UsageError(f"{out_path}: a Core ML package path must end in {PACKAGE_SUFFIX}")
    if out_path.exists() or out_path.is_symlink():
        raise ModelError(f"{out_path}: already exists; will not overwrite")
    parent = out_path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with scratch_dir(parent, ".export-coreml-") as staging:
            staged = staging / out_path.name
            build_mlmodel(config, weights, precision).save(str(staged))
            # os.rename of a directory refuses a non-empty target; check an empty one too.
            if out_path.exists() or out_path.is_symlink():
                raise ModelError(f"{out_path}: appeared while exporting; will not overwrite")
            os.rename(staged, out_path)
    except OSError as exc:
        raise ModelError(f"{out_path}: cannot write the package ({exc.strerror or exc})"
                         ) from None
    return out_path
