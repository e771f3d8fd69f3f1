"""ONNX Runtime engine: runs the trunk's ONNX model (made by engines/onnx_export.py).

The ONNX model is built once per weights file and cached beside it, as
`<model dir>/onnx/<sha256[:16]>-<GRAPH_VERSION>-<variant>.onnx`; when that directory is not
writable the user cache (`$XDG_CACHE_HOME` or `~/.cache`, then `audio-speaker/onnx/`) is
used. A cached model is loaded without reading the weights tensors and without importing the
`onnx` package (only onnxruntime), which keeps start-up short. A cached file that
onnxruntime cannot load (truncated, corrupt) is rebuilt and replaced.

The `masked` variant (for batches of clips of different lengths) costs 5-15 % of the run
time, so it is built only when a ragged batch first needs it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import numpy as np

from engines.errors import EngineError
from engines.files import cache_dirs, write_new
from engines.graph import FRAMES, INPUT, LENGTHS, Graph
from engines.head import TrunkEngine
from engines.model import ModelConfig, Weights, build_graph

GRAPH_VERSION = 3  # bump whenever the translation below changes the ONNX file
CACHE_KIND = "onnx"
ACCELERATED_PROVIDERS = ("CUDAExecutionProvider", "CoreMLExecutionProvider")
CPU_PROVIDER = "CPUExecutionProvider"
CACHE_FILE_MODE = 0o644
SHRINK_FRAMES = 6000  # feature frames (60 s) in one run above which the arena is shrunk after
WAVEFORM_STEP = 160  # samples per feature frame (10 ms at 16 kHz), to size a waveform run


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineError(
            f"the ONNX engine needs the 'onnxruntime' package ({exc}); "
            "install it with: pip install onnxruntime"
        ) from None
    return onnxruntime


def cache_file_name(weights: Weights, masked: bool = False) -> str:
    """The cached model's file name: weights hash, translation version, variant."""
    return f"{weights.digest()[:16]}-{GRAPH_VERSION}-{'masked' if masked else 'plain'}.onnx"


def _store(candidates: list[Path], name: str, data: bytes) -> Path | None:
    """Write the model into the first writable candidate directory; None if none is."""
    for directory in candidates:
        try:
            write_new(directory / name, data, replace=True, mode=CACHE_FILE_MODE)
        except OSError:
            continue
        return directory / name
    return None


_arena: list = []  # the CPU arena registered for stage sessions (once per process)


def _shared_arena(ort) -> None:
    """Register one CPU arena that sessions with `session.use_env_allocators` share; its
    blocks are as large as requested (extend strategy 1), not rounded up to powers of two."""
    if not _arena:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0,
                                 ort.OrtMemType.DEFAULT)
        try:
            ort.create_and_register_allocator(info,
                                              ort.OrtArenaCfg({"arena_extend_strategy": 1}))
        except Exception:  # noqa: BLE001 - one is registered already (by the host program)
            pass
        _arena.append(info)


# ---------------------------------------------------------------------------------------------
# The engine.


class ONNXEngine(TrunkEngine):
    """Runs the graph's trunk with ONNX Runtime (CPU, or CUDA / Core ML when available)."""

    name = "onnx"

    def __init__(self, config: ModelConfig, weights: Weights, threads: int | None = None,
                 cache_dir: Path | None = None, graph: Graph | None = None,
                 precision: str = "float32", calibration=None, log: TextIO | None = None):
        graph = build_graph(config) if graph is None else graph
        super().__init__(graph, weights)
        self._log = sys.stderr if log is None else log  # says what a first int8 build does
        self._ort = _import_onnxruntime()
        self.config = config
        self._weights = weights
        self._threads = threads
        self._options = self._session_options(threads)
        self._providers = self._pick_providers()
        self._candidates = cache_dirs(weights.directory, CACHE_KIND, cache_dir)
        self.precision = precision
        self.calibration: str | None = None  # identity of the int8 model's calibration set
        if precision == "int8":
            self.name = "onnx-int8"
            self.session, self.model_path = self._load_int8(calibration)
        else:
            self.session, self.model_path = self._load(masked=False)
        self.providers: list[str] = self.session.get_providers()
        self._masked_session = None  # built on the first ragged batch
        self._stage_sessions: dict = {}  # engines.stages.Stage -> session, built when first run
        self._run_options = self._ort.RunOptions()
        # After a run over more than SHRINK_FRAMES frames (a long clip of a model that runs in
        # one pass, like CAM++), the arena gives back what that run grew: 5 min of CAM++ through
        # the CLI peaked at 838 MiB so, against 1013 MiB. Not after ordinary runs, where
        # shrinking cost 6-10 % a run and raised the peak of 100 files (360 against 227 MiB).
        self._shrink_options = self._ort.RunOptions()
        self._shrink_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    @property
    def batches_pay(self) -> bool:
        """True when padded batches of clips beat clips run one by one: on an accelerator.

        On the CPU they do not: 60 LibriSpeech files through ResNet34 on 2 cores ran 1.2x
        faster one by one than in padded batches (masks and padding cost more than a batch
        saves), and the batches' buffers raised peak memory from ~365 to ~545 MiB. Nor with
        int8, whose graph has no masked variant.
        """
        return self.precision == "float32" and self.providers[0] != CPU_PROVIDER

    def _load(self, masked: bool):
        """(session, cached path or None) of a variant: from the cache, else built and cached."""
        name = cache_file_name(self._weights, masked)
        session, path = self._open_cached([d / name for d in self._candidates])
        if session is None:  # not cached yet, or every cached copy is corrupt: (re)build
            from engines.onnx_export import graph_to_onnx

            model = graph_to_onnx(self.graph, self._weights.tensors(), self.config, masked)
            data = model.SerializeToString()
            path = _store(self._candidates, name, data)
            session = self._open(str(path) if path is not None else data)
        return session, path

    def _int8_name(self, identity: str) -> str:
        return cache_file_name(self._weights).replace(".onnx", f"-int8-{identity}.onnx")

    def _choice_files(self) -> list[Path]:
        """Where `audio quantize` records the calibration a model's int8 runs use."""
        name = cache_file_name(self._weights).replace(".onnx", "-int8-choice.txt")
        return [d / name for d in self._candidates]

    def record_int8_choice(self, identity: str | None) -> None:
        """Make the int8 model of calibration `identity` the one later runs use (None: the
        shipped calibration set again)."""
        for path in self._choice_files():
            path.unlink(missing_ok=True)
        if identity is not None and _store(self._candidates, self._choice_files()[0].name,
                                           identity.encode()) is None:
            raise EngineError("int8: no writable cache directory to record the choice in")

    def _load_int8(self, calibration):
        """(session, cached path or None) of the int8 trunk (engines.quantize), built from the
        float32 model and `calibration` (an engines.quantize.Calibration) when not cached.
        The shipped set yields to one `audio quantize` recorded, while its model is cached."""
        if calibration.default:
            for choice in self._choice_files():
                if choice.is_file():
                    identity = choice.read_text(encoding="utf-8").strip()
                    session, path = self._open_cached(
                        [d / self._int8_name(identity) for d in self._candidates])
                    if session is not None:
                        self.calibration = identity
                        return session, path
        self.calibration = calibration.identity
        name = self._int8_name(calibration.identity)
        session, path = self._open_cached([d / name for d in self._candidates])
        if session is None:
            from engines.quantize import quantize_trunk

            _, float_path = self._load(masked=False)
            if float_path is None:
                raise EngineError("int8: no writable cache directory for the float32 model "
                                  "it is built from")
            # tens of seconds for a full-size model: said, as the Core ML export says its own
            print(f"onnx: building the int8 network (first use): quantizing the model and "
                  f"calibrating it on {calibration.description}; cached for later runs",
                  file=self._log, flush=True)
            data = quantize_trunk(float_path, calibration)
            path = _store(self._candidates, name, data)
            session = self._open(str(path) if path is not None else data)
        return session, path

    def _session_options(self, threads: int | None):
        ort = self._ort
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = int(threads) if threads else 0  # 0: onnxruntime's choice
        options.inter_op_num_threads = 1
        # Stop the intra-op threads spinning once a run returns (they still spin between the
        # ops of a run): otherwise they busy-wait on the cores the numpy front-end and head
        # (and other processes) need next. See bench/RESULTS.md, section (c).
        options.add_session_config_entry("session.force_spinning_stop", "1")
        # Memory patterns are planned and kept per input shape, so every new clip length grew
        # the process: 100 CAM++ files in one call peaked at 708 MiB with them, 227 MiB without,
        # and ran no slower. Without them the arena is reused across shapes, bounded by the
        # largest run, so it needs no shrinking after each run (which cost 6-10 % per run).
        options.enable_mem_pattern = False
        return options

    def _pick_providers(self) -> list[str]:
        available = self._ort.get_available_providers()
        return [p for p in ACCELERATED_PROVIDERS if p in available] + [CPU_PROVIDER]

    def _open(self, model: str | bytes, options=None):
        try:
            return self._ort.InferenceSession(model, sess_options=options or self._options,
                                              providers=self._providers)
        except Exception as exc:  # onnxruntime's errors share no base class
            raise EngineError(f"ONNX engine: cannot create the session ({exc})") from None

    def _open_cached(self, paths: list[Path]):
        """(session, path) for the first cached model that loads, or (None, None)."""
        for path in paths:
            if path.is_file():
                try:
                    return self._open(str(path)), path
                except EngineError:  # truncated or corrupt: try the next, else rebuild
                    continue
        return None, None

    def encode(self, features: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """(B, T, n_mels) features, or (B, N) samples for a waveform graph -> (B, T', D)."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        feeds, session = {INPUT: x}, self.session
        if lengths is not None and np.any(np.asarray(lengths) < x.shape[1]):
            if self._masked_session is None:
                self._masked_session, _ = self._load(masked=True)
            feeds[LENGTHS], session = np.asarray(lengths, dtype=np.int64), self._masked_session
        steps = x.shape[1] // WAVEFORM_STEP if self.graph.takes_waveform else x.shape[1]
        big = x.shape[0] * steps > SHRINK_FRAMES
        try:
            (frames,) = session.run([FRAMES], feeds,
                                    self._shrink_options if big else self._run_options)
        except Exception as exc:  # onnxruntime's errors share no base class
            raise EngineError(f"ONNX engine failed: {exc}") from None
        return frames

    def run_stage(self, stage, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one stage of a staged trunk (engines.stages) on a chunk: name -> value.

        Its session is built from the shared graph on the stage's first run, in memory (the
        105 stages of CAM++ build in about 0.3 s). Stage sessions share one arena
        (_shared_arena): with an arena each, the 105 held 2.9 GB after 5 min of CAM++."""
        session = self._stage_sessions.get(stage)
        if session is None:
            from engines.onnx_export import graph_to_onnx

            if not self._stage_sessions:
                self._stage_options = self._session_options(self._threads)
                self._stage_options.add_session_config_entry("session.use_env_allocators", "1")
                _shared_arena(self._ort)
            model = graph_to_onnx(self.graph, self._weights.tensors(), self.config,
                                  stage=stage)
            session = self._stage_sessions[stage] = self._open(model.SerializeToString(),
                                                               self._stage_options)
        try:
            values = session.run(list(stage.outputs), feeds, self._run_options)
        except Exception as exc:  # onnxruntime's errors share no base class
            raise EngineError(f"ONNX engine failed: {exc}") from None
        return dict(zip(stage.outputs, values, strict=True))
