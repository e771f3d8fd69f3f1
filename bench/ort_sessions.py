"""Bare onnxruntime sessions described as plain data, so that the in-process baselines and the
child processes of the benchmark build exactly the sessions the report names.

A spec is a JSON-able dict:

    {"label": "...",
     "options": {SessionOptions attribute: value},      # only those that differ from defaults
     "session_config": {key: value},                     # add_session_config_entry
     "run_config": {key: value},                         # add_run_config_entry, every run
     "providers": ["CPUExecutionProvider"]}

`engine_spec(engine)` reads the spec off a loaded ONNX engine (its SessionOptions, RunOptions
and providers), so the "same options" baseline follows the engine when its options change.

Also a script: `python bench/ort_sessions.py MODEL.onnx FRAMES SPEC_JSON` imports onnxruntime,
opens the model with the spec and runs it once on random features (the cold-start and memory
baselines). It imports only numpy and onnxruntime, so it starts as fast as a bare script.
"""

from __future__ import annotations

import json
import sys

# SessionOptions attributes compared with onnxruntime's defaults; enums are stored by name.
ENUM_ATTRS = {"graph_optimization_level": "GraphOptimizationLevel",
              "execution_mode": "ExecutionMode", "execution_order": "ExecutionOrder"}
PLAIN_ATTRS = ("intra_op_num_threads", "inter_op_num_threads", "enable_cpu_mem_arena",
               "enable_mem_pattern", "enable_mem_reuse", "use_deterministic_compute",
               "use_per_session_threads")
# Config keys probed on the engine's options (onnxruntime cannot list the keys that are set).
SESSION_KEYS = ("session.force_spinning_stop", "session.intra_op.allow_spinning",
                "session.inter_op.allow_spinning", "session.dynamic_block_base",
                "session.set_denormal_as_zero", "session.disable_prepacking",
                "session.use_env_allocators", "session.intra_op_thread_affinities")
RUN_KEYS = ("memory.enable_memory_arena_shrinkage", "run.disable_synchronize_execution_providers")
CPU = "CPUExecutionProvider"

DEFAULTS = {"label": "onnxruntime defaults", "options": {}, "session_config": {},
            "run_config": {}, "providers": [CPU]}

# What ONNXEngine._session_options and its RunOptions set when this benchmark was written; used
# only when the engine's options cannot be read (the report then says so).
ENGINE_AS_WRITTEN = {"label": "engine's options (bench's copy)",
                     "options": {"inter_op_num_threads": 1, "enable_mem_pattern": False},
                     "session_config": {"session.force_spinning_stop": "1"},
                     "run_config": {},
                     "providers": [CPU]}


def session_options(spec: dict):
    import onnxruntime as ort

    options = ort.SessionOptions()
    for name, value in spec.get("options", {}).items():
        if name in ENUM_ATTRS:
            value = getattr(getattr(ort, ENUM_ATTRS[name]), value)
        setattr(options, name, value)
    for key, value in spec.get("session_config", {}).items():
        options.add_session_config_entry(key, value)
    return options


def run_options(spec: dict):
    """RunOptions with the spec's run config, or None (onnxruntime's default run)."""
    if not spec.get("run_config"):
        return None
    import onnxruntime as ort

    options = ort.RunOptions()
    for key, value in spec["run_config"].items():
        options.add_run_config_entry(key, value)
    return options


def open_session(model_path: str, spec: dict):
    """A function `run(x) -> outputs` on a fresh session built from the spec."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), sess_options=session_options(spec),
                                   providers=list(spec.get("providers") or [CPU]))
    name = session.get_inputs()[0].name
    per_run = run_options(spec)
    return lambda x: session.run(None, {name: x}, per_run)


def with_entries(spec: dict, label: str, session_config: dict) -> dict:
    """A copy of the spec with more session config entries."""
    return {**spec, "label": label,
            "session_config": {**spec.get("session_config", {}), **session_config}}


def _value(options, name: str):
    value = getattr(options, name)
    return value.name if name in ENUM_ATTRS else value


def engine_spec(engine) -> tuple[dict, list[str]]:
    """(spec, notes) of the session options, run options and providers an ONNXEngine uses."""
    import onnxruntime as ort

    options = getattr(engine, "_options", None)
    per_run = getattr(engine, "_run_options", None)
    session = getattr(engine, "session", None)
    if not isinstance(options, ort.SessionOptions) or session is None:
        return dict(ENGINE_AS_WRITTEN), [
            "could not read the engine's SessionOptions; the 'engine's options' baseline uses "
            f"bench's copy of them: {describe(ENGINE_AS_WRITTEN)}"]
    fresh = ort.SessionOptions()
    spec = {"label": "engine's options", "options": {}, "session_config": {},
            "run_config": {}, "providers": list(session.get_providers())}
    for name in (*ENUM_ATTRS, *PLAIN_ATTRS):
        if _value(options, name) != _value(fresh, name):
            spec["options"][name] = _value(options, name)
    for key in SESSION_KEYS:
        try:
            spec["session_config"][key] = options.get_session_config_entry(key)
        except RuntimeError:  # not set
            pass
    notes = []
    if per_run is None:
        notes.append("the engine has no RunOptions attribute: its runs are taken to use "
                     "onnxruntime's default run options")
    else:
        for key in RUN_KEYS:
            try:
                spec["run_config"][key] = per_run.get_run_config_entry(key)
            except RuntimeError:
                pass
    return spec, notes


def describe(spec: dict) -> str:
    """One line: what the spec changes from onnxruntime's defaults."""
    parts = [f"`{k}={v}`" for k, v in spec.get("options", {}).items()]
    parts += [f"`{k}={v}`" for k, v in spec.get("session_config", {}).items()]
    parts += [f"run option `{k}={v}`" for k, v in spec.get("run_config", {}).items()]
    providers = spec.get("providers") or [CPU]
    if list(providers) != [CPU]:
        parts.append(f"providers {', '.join(providers)}")
    return ", ".join(parts) if parts else "onnxruntime defaults (nothing set)"


def child_command(model_path: str, frames: int, spec: dict, features: str | None = None
                  ) -> list[str]:
    """Command line of a bare child process: import, open the model with the spec, run once
    on random features of `frames` frames, or on every array of the `features` .npz file."""
    return [sys.executable, __file__, str(model_path), str(frames), json.dumps(spec),
            *([features] if features else [])]


def _main(argv: list[str]) -> None:
    import numpy as np

    model_path, frames, spec = argv[0], int(argv[1]), json.loads(argv[2])
    run = open_session(model_path, spec)
    if len(argv) > 3:
        with np.load(argv[3]) as arrays:
            for name in arrays.files:
                run(arrays[name])
        return
    run(np.random.default_rng(0).standard_normal((1, frames, 80)).astype(np.float32))


if __name__ == "__main__":
    _main(sys.argv[1:])
