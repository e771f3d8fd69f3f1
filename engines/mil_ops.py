"""The MIL operations the reference interpreter (engines.mil_interpreter) runs, as numpy.

OPS maps each op type the Core ML export emits to a function of the op's named inputs (float32
arithmetic; the interpreter rounds a float16-typed result afterwards); CONSTEXPR_OPS are the
ops evaluated once, when a package is opened (weights stored compressed). An op or an option
of one the export does not emit is an EngineError naming it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engines.errors import EngineError

_CAST_TYPES = {"fp16": np.float16, "fp32": np.float32, "int32": np.int32, "bool": np.bool_}


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
    ho = (hp - dh * (kh - 1) - 1) // sh + 1
    wo = (wp - dw * (kw - 1) - 1) // sw + 1
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
    """MIL gather along `axis`; validate_indices is a MIL input, accepted and not needed here."""
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
