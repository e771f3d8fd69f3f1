"""A small reference interpreter for the ML Programs `engines.coreml_export` writes.

Core ML itself only runs on Apple systems. To keep the Core ML path tested elsewhere, this
module executes a saved `.mlpackage` with numpy: the package is read with coremltools' own
loaders (`MLModel(..., skip_model_load=True)` for the spec and the weight blobs, then the
`milproto` frontend for the MIL program), and each operation of its `main` function is
evaluated in order.

Only the operations the export emits are implemented (OPS below); any other op is an
EngineError naming it, raised when the package is opened. Arithmetic is float32; a value
whose MIL type is float16 (the float16 package's feature maps and weights) is rounded to
float16 after each op, so the float16 package's storage precision is reproduced. (Core ML on
the Neural Engine may also accumulate in float16; this interpreter accumulates in float32.)
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import EngineError

_CAST_TYPES = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "bool": np.bool_}


def import_coremltools():
    """Import coremltools quietly (off macOS it warns that it cannot run models: we know)."""
    logger = logging.getLogger("coremltools")
    level = logger.level
    if sys.platform != "darwin":
        logger.setLevel(logging.ERROR)
    try:
        import coremltools as ct
    except ImportError as exc:
        raise EngineError(
            f"the Core ML engine needs the 'coremltools' package ({exc}); "
            "install it with: pip install 'coremltools>=8'"
        ) from None
    finally:
        logger.setLevel(level)
    return ct


# ---------------------------------------------------------------- numerics


def _conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, strides, pads,
            dilations=(1, 1)) -> np.ndarray:
    """NCHW conv, weights [O, I, kH, kW], pads (top, bottom, left, right); float32."""
    n, c, _, _ = x.shape
    o, ci, kh, kw = w.shape
    if ci != c:
        raise EngineError(f"MIL interpreter: conv input has {c} channels, weight expects {ci}")
    sh, sw = strides
    dh, dw = dilations
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    hp, wp = xp.shape[2:]
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    if ho < 1 or wo < 1:
        raise EngineError(f"MIL interpreter: conv input {x.shape[2:]} smaller than its kernel")
    taps = [np.ascontiguousarray(w[:, :, i, j]) for i in range(kh) for j in range(kw)]
    out = np.empty((n, o, ho, wo), dtype=np.float32)
    for k in range(n):
        if sh == 1 and sw == 1:
            # Row-major flat image: output (r, col) reads input (r + i*dh, col + j*dw), i.e.
            # the flat position r*wp + col shifted by i*dh*wp + j*dw. Each tap is one GEMM on a
            # strided view; the wp - wo columns per row that wrap around are computed and
            # dropped.
            flat = xp[k].reshape(c, hp * wp)
            span = (ho - 1) * wp + wo
            acc = np.zeros((o, ho * wp), dtype=np.float32)
            scratch = np.empty((o, span), dtype=np.float32)
            for t, tap in enumerate(taps):
                offset = (t // kw) * dh * wp + (t % kw) * dw
                np.matmul(tap, flat[:, offset:offset + span], out=scratch)
                acc[:, :span] += scratch
            out[k] = acc.reshape(o, ho, wp)[:, :, :wo]
        else:
            acc = np.zeros((o, ho * wo), dtype=np.float32)
            for t, tap in enumerate(taps):
                i, j = (t // kw) * dh, (t % kw) * dw
                patch = xp[k, :, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw]
                acc += tap @ patch.reshape(c, ho * wo)
            out[k] = acc.reshape(o, ho, wo)
    if b is not None:
        out += b.reshape(1, o, 1, 1)
    return out


def _axes(value) -> tuple[int, ...] | None:
    return None if value is None else tuple(int(a) for a in np.atleast_1d(value))


def _reshape(x: np.ndarray, shape) -> np.ndarray:
    shape = [int(s) for s in np.atleast_1d(shape)]
    if len(shape) == x.ndim:  # MIL: 0 keeps that dimension of x
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    elif 0 in shape:
        raise EngineError("MIL interpreter: reshape with 0 needs a shape of the input's rank")
    return x.reshape(shape)


def _gather(x: np.ndarray, indices, axis, batch_dims=0, validate_indices=False) -> np.ndarray:
    if int(batch_dims or 0) != 0:
        raise EngineError("MIL interpreter: gather with batch_dims != 0 is not supported")
    return np.take(x, np.asarray(indices, dtype=np.int64), axis=int(axis))


def _conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None,
          groups=1) -> np.ndarray:
    """MIL conv, 1-D (NCW, weight [O, I, k]) or 2-D (NCHW, weight [O, I, kH, kW])."""
    rank = weight.ndim - 2
    if rank not in (1, 2):
        raise EngineError(f"MIL interpreter: only 1-D and 2-D conv are supported (got {rank}-D)")
    if int(groups) != 1:
        raise EngineError("MIL interpreter: grouped conv is not supported")
    strides = (1,) * rank if strides is None else tuple(int(s) for s in strides)
    dilations = (1,) * rank if dilations is None else tuple(int(d) for d in dilations)
    if pad_type == "custom":
        pads = tuple(int(p) for p in pad)
    elif pad_type == "valid":
        pads = (0,) * (2 * rank)
    else:
        raise EngineError(f"MIL interpreter: conv pad_type {pad_type!r} is not supported")
    if rank == 1:  # a 2-D conv over an image one row high
        out = _conv2d(x[:, :, None, :], weight[:, :, None, :], bias, (1, *strides),
                      (0, 0, *pads), (1, *dilations))
        return out[:, :, 0, :]
    return _conv2d(x, weight, bias, strides, pads, dilations)


def _pad(x, pad, mode="constant", constant_val=0.0) -> np.ndarray:
    """Pad the last len(pad) / 2 axes; `pad` is (before, after) per axis."""
    if mode != "constant":
        raise EngineError(f"MIL interpreter: pad mode {mode!r} is not supported")
    pad = [int(p) for p in np.atleast_1d(pad)]
    widths = [(0, 0)] * (x.ndim - len(pad) // 2) + list(zip(pad[::2], pad[1::2], strict=True))
    return np.pad(x, widths, constant_values=constant_val)


def _sigmoid(x) -> np.ndarray:
    """1 / (1 + exp(-x)), written so that exp never overflows."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _slice_by_size(x, begin, size) -> np.ndarray:
    """x[begin : begin + size] per axis; a size of -1 takes the rest of that axis."""
    return x[tuple(slice(int(b), None if int(s) == -1 else int(b) + int(s))
                   for b, s in zip(begin, size, strict=True))]


def _softmax(x, axis) -> np.ndarray:
    e = np.exp(x - np.max(x, axis=int(axis), keepdims=True))
    return e / np.sum(e, axis=int(axis), keepdims=True)


def _concat(values, axis, interleave=False) -> np.ndarray:
    if interleave:
        raise EngineError("MIL interpreter: interleaved concat is not supported")
    return np.concatenate(list(values), axis=int(axis))


def _reduce(fn):
    def run(x, axes=None, keep_dims=False):
        return fn(x, axis=_axes(axes), keepdims=bool(keep_dims))
    return run


def _l2(x, axis, keepdims):
    return np.sqrt(np.sum(np.square(x), axis=axis, keepdims=keepdims))


def _linear(x, weight, bias=None):
    y = x @ weight.T
    return y if bias is None else y + bias


def _squeeze(x, axes=None):
    return np.squeeze(x) if axes is None else np.squeeze(x, axis=_axes(axes))


def _cast(x, dtype):
    if dtype not in _CAST_TYPES:
        raise EngineError(f"MIL interpreter: cast to {dtype!r} is not supported")
    return np.asarray(x).astype(_CAST_TYPES[dtype])


# Each op: numpy function of the op's named inputs. The result is then stored in the MIL
# output type (float16 values rounded), see MILInterpreter._run_op.
OPS: dict[str, Callable[..., Any]] = {
    "cast": _cast,
    "transpose": lambda x, perm: np.transpose(x, [int(p) for p in perm]),
    "expand_dims": lambda x, axes: np.expand_dims(x, _axes(axes)),
    "squeeze": _squeeze,
    "reshape": _reshape,
    "conv": _conv,
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": _sigmoid,
    "tanh": lambda x: np.tanh(x),
    "softmax": _softmax,
    "pad": _pad,
    "add": lambda x, y: np.add(x, y),
    "sub": lambda x, y: np.subtract(x, y),
    "mul": lambda x, y: np.multiply(x, y),
    "real_div": lambda x, y: np.divide(x, y),
    "floor_div": lambda x, y: np.floor_divide(x, y),
    "minimum": lambda x, y: np.minimum(x, y),
    "less": lambda x, y: np.less(x, y),
    "slice_by_size": _slice_by_size,
    "maximum": lambda x, y: np.maximum(x, y),
    "sqrt": lambda x: np.sqrt(x),
    "reduce_mean": _reduce(np.mean),
    "reduce_sum": _reduce(np.sum),
    "reduce_l2_norm": _reduce(_l2),
    "shape": lambda x: np.array(x.shape, dtype=np.int32),
    "gather": _gather,
    "range_1d": lambda start, end, step: np.arange(start, end, step),
    "concat": _concat,
    "linear": _linear,
}


def _affine_dequantize(quantized_data, zero_point, scale, axis) -> np.ndarray:
    """MIL constexpr_affine_dequantize: (quantized_data - zero_point) * scale, where a
    zero point or scale that is a vector runs along `axis` (a scalar applies to all)."""
    data = np.asarray(quantized_data)
    axis = int(axis) % data.ndim

    def along(value) -> np.ndarray:
        value = np.asarray(value, dtype=np.float32)
        if value.ndim == 0:
            return value
        shape = [1] * data.ndim
        shape[axis] = value.size
        return value.reshape(shape)

    return (data.astype(np.float32) - along(zero_point)) * along(scale)


# Ops evaluated once, when the package is opened (weights stored compressed); their values
# are kept in the precision of their MIL output type, like the const weights.
CONSTEXPR_OPS: dict[str, Callable[..., np.ndarray]] = {
    "constexpr_affine_dequantize": _affine_dequantize,
}


# ---------------------------------------------------------------- the interpreter


def _numpy_type(var) -> type | None:
    """numpy dtype of a MIL var's element type (None for strings and other non-numbers)."""
    from coremltools.converters.mil.mil import types

    try:
        return types.nptype_from_builtin(var.dtype)
    except (TypeError, KeyError):
        return None


class MILInterpreter:
    """Runs the `main` function of a saved ML Program with numpy; `predict` like MLModel's."""

    def __init__(self, package: Path):
        self.path = Path(package)
        ct = import_coremltools()
        from coremltools.converters.mil.frontend.milproto import load as milproto

        try:
            model = ct.models.MLModel(str(self.path), skip_model_load=True)
            spec = model.get_spec()
            if spec.WhichOneof("Type") != "mlProgram":
                raise EngineError(f"{self.path}: not an ML Program (a neural network model?)")
            program = milproto.load(spec, spec.specificationVersion,
                                    file_weights_dir=model.weights_dir)
        except EngineError:
            raise
        except Exception as exc:  # protobuf, blob-reader and MIL errors: all mean "unreadable"
            raise EngineError(f"{self.path}: cannot read the Core ML package ({exc})") from None
        self.user_defined_metadata = dict(spec.description.metadata.userDefined)
        self.function = program.functions["main"]
        self.operations = list(self.function.operations)
        unknown = sorted({op.op_type for op in self.operations} - set(OPS) - set(CONSTEXPR_OPS)
                         - {"const"})
        if unknown:
            raise EngineError(
                f"{self.path}: the MIL interpreter does not implement op(s) {', '.join(unknown)} "
                f"(it runs only the ops the Core ML export emits: "
                f"{', '.join(sorted([*OPS, *CONSTEXPR_OPS]))})"
            )
        self.input_names = list(self.function.inputs)
        self.output_names = [v.name for v in self.function.outputs]
        self._ranges = {d.name: d.type.multiArrayType for d in spec.description.input}
        self._consts = {}
        for op in self.operations:
            if op.op_type == "const":
                self._consts[op.outputs[0].name] = self._const_value(op.outputs[0])
            elif op.op_type in CONSTEXPR_OPS:
                args = {k: self._consts[v.name] for k, v in op.inputs.items()}
                value = CONSTEXPR_OPS[op.op_type](**args)
                self._consts[op.outputs[0].name] = value.astype(_numpy_type(op.outputs[0]))
        self.operations = [op for op in self.operations if op.op_type not in CONSTEXPR_OPS]
        self._last_use = self._liveness()

    @staticmethod
    def _const_value(var):
        value = var.val
        if isinstance(value, np.ndarray) and value.dtype in (np.float16, np.float32):
            return value  # kept in its stored precision; upcast when an op reads it
        return value.item() if isinstance(value, np.generic) else value

    def _liveness(self) -> dict[str, int]:
        """Index of the last op reading each non-constant value, to free memory early."""
        last: dict[str, int] = {}
        for index, op in enumerate(self.operations):
            for value in op.inputs.values():
                for var in value if isinstance(value, (list, tuple)) else [value]:
                    last[var.name] = index
        for name in self.output_names:
            last[name] = len(self.operations)
        return last

    def _check_input(self, name: str, array: np.ndarray) -> np.ndarray:
        desc = self._ranges.get(name)
        if desc is None:
            raise EngineError(f"MIL interpreter: the model has no input {name!r}")
        ranges = list(desc.shapeRange.sizeRanges)
        if ranges:
            bounds = [(r.lowerBound, r.upperBound) for r in ranges]
        else:
            bounds = [(d, d) for d in desc.shape]
        if array.ndim != len(bounds) or any(
            size < lo or (hi >= 0 and size > hi)
            for size, (lo, hi) in zip(array.shape, bounds, strict=True)
        ):
            raise EngineError(
                f"MIL interpreter: input {name!r} has shape {array.shape}; the model accepts "
                + " x ".join(f"{lo}..{hi}" if lo != hi else str(lo) for lo, hi in bounds)
            )
        return array.astype(np.int32 if array.dtype.kind in "iu" else np.float32)

    def _read(self, value, env: dict[str, Any]):
        if isinstance(value, (list, tuple)):
            return [self._read(v, env) for v in value]
        if value.name in env:
            return env[value.name]
        if value.name in self._consts:
            return self._consts[value.name]
        raise EngineError(f"MIL interpreter: value {value.name!r} is used before it is computed")

    def _run_op(self, op, env: dict[str, Any]):
        args = {}
        for key, value in op.inputs.items():
            arg = self._read(value, env)
            if isinstance(arg, np.ndarray) and arg.dtype == np.float16:
                arg = arg.astype(np.float32)  # arithmetic in float32
            elif isinstance(arg, list):
                arg = [a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype ==
                       np.float16 else a for a in arg]
            args[key] = arg
        try:
            result = OPS[op.op_type](**args)
        except EngineError:
            raise
        except Exception as exc:
            raise EngineError(
                f"MIL interpreter: op {op.op_type} ({op.name}) failed: {exc}") from None
        out = op.outputs[0]
        dtype = _numpy_type(out)
        if dtype is not None:
            result = np.asarray(result).astype(dtype, copy=False)
        return result

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the program on {input name: array}; return {output name: float32 array}."""
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise EngineError(f"MIL interpreter: missing input(s) {', '.join(missing)}")
        env = {name: self._check_input(name, np.asarray(inputs[name]))
               for name in self.input_names}
        for index, op in enumerate(self.operations):
            if op.op_type == "const":
                continue
            if len(op.outputs) != 1:
                raise EngineError(f"MIL interpreter: op {op.op_type} has several outputs")
            env[op.outputs[0].name] = self._run_op(op, env)
            for value in op.inputs.values():
                for var in value if isinstance(value, (list, tuple)) else [value]:
                    if self._last_use.get(var.name) == index:
                        env.pop(var.name, None)
        return {name: np.asarray(env[name], dtype=np.float32) for name in self.output_names}
