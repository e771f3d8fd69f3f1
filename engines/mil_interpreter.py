"""A small reference interpreter for the ML Programs `engines.coreml_export` writes.

Core ML itself only runs on Apple systems. To keep the Core ML path tested elsewhere, this
module executes a saved `.mlpackage` with numpy: the package is read with coremltools' own
loaders (`MLModel(..., skip_model_load=True)` for the spec and the weight blobs, then the
`milproto` frontend for the MIL program), and each operation of its `main` function is
evaluated in order.

Only the operations the export emits are implemented (engines.mil_ops); any other op is an
EngineError naming it, raised when the package is opened. Arithmetic is float32; a value
whose MIL type is float16 (the float16 package's feature maps and weights) is rounded to
float16 after each op, so the float16 package's storage precision is reproduced. (Core ML on
the Neural Engine may also accumulate in float16; this interpreter accumulates in float32.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engines.coreml_import import import_coremltools
from engines.errors import EngineError
from engines.mil_ops import CONSTEXPR_OPS, OPS


def _numpy_type(var) -> type | None:
    """numpy dtype of a MIL var's element type (None for strings and other non-numbers)."""
    from coremltools.converters.mil.mil import types

    try:
        return types.nptype_from_builtin(var.dtype)
    except (TypeError, KeyError):
        return None


def _input_vars(op) -> list:
    """The MIL vars an op reads (an input may be one var or a list of them)."""
    found = []
    for value in op.inputs.values():
        found.extend(value if isinstance(value, (list, tuple)) else [value])
    return found


def _as_float32(value):
    """A float16 array upcast for arithmetic in float32; anything else as it is."""
    if isinstance(value, np.ndarray) and value.dtype == np.float16:
        return value.astype(np.float32)
    return value


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
        known = {*OPS, *CONSTEXPR_OPS, "const"}
        unknown = sorted({op.op_type for op in self.operations} - known)
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
            for var in _input_vars(op):
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
            if isinstance(arg, list):
                args[key] = [_as_float32(a) for a in arg]
            else:
                args[key] = _as_float32(arg)
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
            for var in _input_vars(op):
                if self._last_use.get(var.name) == index:
                    env.pop(var.name, None)
        return {name: np.asarray(env[name], dtype=np.float32) for name in self.output_names}
