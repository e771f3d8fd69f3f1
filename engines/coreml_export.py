"""Export the shared graph as a Core ML package (`.mlpackage`): the ML Program of
engines/coreml_program.py with a flexible input length (a RangeDim from the network's minimum up
to MAX_FRAMES), its precision and its metadata; written safely, never over an existing path.

Precision: `float32` computes everything in float32. `float16` runs the feature-map ops
(FP16_OP_TYPES: conv, relu, add, mul, sigmoid, concat; all but a sliver of the work) in
float16 and keeps the ops emitted for coreml_program.FLOAT32_OPS in float32: the statistics
pooling, the linear layer, the normalisation and CAM++'s context pooling. Those sum over time,
and the sum of squares behind the standard deviation and the L2 norm would overflow float16
(max 65504) on activations of a few hundred; the context pooling's 100-step segment sums reach
about 200 on LibriSpeech speech with the 3D-Speaker CAM++ weights, where float16's spacing is
0.125.

`int8` is the float16 package with its convolution weights stored as 8-bit integers, one
scale per output channel (symmetric, zero point 0; coremltools' `linear_quantize_weights`,
which writes each as a `constexpr_affine_dequantize` op that Core ML expands when it loads
the model). The weights shrink about 4x against float32; the linear layer of the pooling
head, the small first convolutions (QUANTIZE_ABOVE) and the rest keep their
float precision. Nothing needs calibration: activations are not quantized.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from engines.coreml_import import import_coremltools
from engines.coreml_program import (
    EMBEDDING_OUTPUT,
    FRAMES_OUTPUT,
    MEL_INPUT,
    VALID_INPUT,
    build_program,
)
from engines.errors import EngineError, ModelError, UsageError
from engines.files import scratch_dir
from engines.graph import Graph
from engines.model import ModelConfig, Weights, build_graph

EXPORT_VERSION = 2  # bump when the exported program changes (cached packages are re-exported)
MAX_FRAMES = 30000  # 5 minutes at 100 frames/s; ML Programs need a finite upper bound
DEFAULT_FRAMES = 300  # the shape Core ML plans for first (3 s)
PRECISIONS = ("float32", "float16", "int8")
QUANTIZE_ABOVE = 2048  # weights of at most this many elements stay float (coremltools' default)
# MIL op types the float16 package runs in float16 (the feature-map work) ...
FP16_OP_TYPES = frozenset({"conv", "relu", "add", "mul", "sigmoid", "concat"})
# ... except the ops emitted for coreml_program.FLOAT32_OPS (sums over time).
PACKAGE_SUFFIX = ".mlpackage"

# Keys of the package's user-defined metadata.
META_MODEL_ID = "model_id"
META_LICENSE = "license"
META_WEIGHTS_SHA256 = "weights_sha256"
META_PRECISION = "precision"
META_MODEL_TYPE = "model_type"
META_MAX_FRAMES = "max_frames"


def _compute_precision(ct, precision: str, float32_names: frozenset[str]):
    if precision == "float32":
        return ct.precision.FLOAT32
    return ct.transform.FP16ComputePrecision(
        op_selector=lambda op: op.op_type in FP16_OP_TYPES and op.name not in float32_names)


def _quantize_weights(ct, model):
    """int8 convolution weights, per output channel; the linear layer stays float."""
    from coremltools.optimize.coreml import (
        OpLinearQuantizerConfig,
        OptimizationConfig,
        linear_quantize_weights,
    )

    int8 = OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8",
                                   granularity="per_channel",
                                   weight_threshold=QUANTIZE_ABOVE)
    config = OptimizationConfig(global_config=int8, op_type_configs={"linear": None})
    return linear_quantize_weights(model, config=config)


def check_precision(precision: str) -> str:
    """The precision if it is one this export knows, else UsageError."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")
    return precision


def build_mlmodel(config: ModelConfig, weights: Weights, precision: str = "float32",
                  graph: Graph | None = None):
    """The ML Program (a coremltools MLModel, not loaded for prediction) with its metadata.

    `graph` defaults to the network of the config (engines.build_graph).
    """
    check_precision(precision)
    graph = build_graph(config) if graph is None else graph
    ct = import_coremltools()
    program, float32_names = build_program(graph, weights.tensors(), config.n_mels)
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
                inputs=[mel_type] + ([ct.TensorType(name=VALID_INPUT, shape=(1,), dtype=np.int32)]
                                     if graph.pad_to else []),
                compute_precision=_compute_precision(ct, precision, float32_names),
                minimum_deployment_target=ct.target.macOS13,
                skip_model_load=True,
            )
            if precision == "int8":
                model = _quantize_weights(ct, model)
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
    if graph.pad_to:
        model.input_description[VALID_INPUT] = (
            f"the valid frames of `{MEL_INPUT}`, zero-padded to a multiple of {graph.pad_to} "
            "frames as the original model ran")
    model.output_description[EMBEDDING_OUTPUT] = (
        f"speaker embedding [1, {config.embedding_dim}], unit L2 norm"
    )
    model.output_description[FRAMES_OUTPUT] = (
        f"the network's frame vectors before pooling, [1, T', D] "
        f"(T' = ceil(T / {graph.time_stride}))"
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
                  precision: str = "float32", graph: Graph | None = None) -> Path:
    """Write the model as a new `.mlpackage` at `out_path`; never replaces an existing path.

    `graph` defaults to the network of the config (engines.build_graph).
    """
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
            build_mlmodel(config, weights, precision, graph).save(str(staged))
            # os.rename of a directory refuses a non-empty target; check an empty one too.
            if out_path.exists() or out_path.is_symlink():
                raise ModelError(f"{out_path}: appeared while exporting; will not overwrite")
            os.rename(staged, out_path)
    except OSError as exc:
        raise ModelError(f"{out_path}: cannot write the package ({exc.strerror or exc})"
                         ) from None
    return out_path
