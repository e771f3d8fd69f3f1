"""The ONNX Runtime engine: numerics against the references, batching, the model cache."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from model_factory import random_resnet_weights, small_config, write_model
from numpy_resnet import forward
from platforms import needs_mlx

from engines import build_graph, onnx_engine, onnx_export
from engines.errors import EngineError
from engines.graph import Relu
from engines.model import WEIGHTS_FILE, ModelConfig, Weights
from engines.onnx_engine import GRAPH_VERSION, ONNXEngine
from engines.onnx_export import graph_to_onnx

ROOT = Path(__file__).resolve().parents[1]
MIN_COSINE = 0.9999
MIN_FRAMES = build_graph(small_config()).min_frames()  # 9: two frames left after layer4 for the std


def features(frames: int, batch: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, frames, 80)).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def small():
    config = small_config()
    return config, random_resnet_weights(config)


@pytest.fixture(scope="module")
def small_engine(small, tmp_path_factory):
    config, tensors = small
    return ONNXEngine(config, Weights(tensors=tensors), cache_dir=tmp_path_factory.mktemp("onnx"))


@pytest.fixture(autouse=True)
def user_cache(tmp_path, monkeypatch) -> Path:
    """Keep every test away from the real ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "audio-speaker" / "onnx"


@pytest.fixture()
def model_dir(tmp_path):
    config = small_config()
    write_model(tmp_path / "model", config)
    return config, tmp_path / "model"


def test_engine_name_providers_and_cache_file(small_engine, small):
    config, tensors = small
    assert small_engine.name == "onnx"
    assert "CPUExecutionProvider" in small_engine.providers
    digest = Weights(tensors=tensors).digest()
    assert small_engine.model_path.name == f"{digest[:16]}-{GRAPH_VERSION}-plain.onnx"


@pytest.mark.parametrize("frames", [MIN_FRAMES, 10, 57, 201])
def test_matches_numpy_reference(small_engine, small, frames):
    config, tensors = small
    x = features(frames, seed=frames)
    got = small_engine.embed(x)
    assert got.dtype == np.float32 and got.shape == (1, config.embedding_dim)
    assert abs(np.linalg.norm(got[0]) - 1.0) < 1e-5
    _, _, want = forward(x[0], tensors, config.layers)
    assert cosine(got[0], want) >= MIN_COSINE


@pytest.mark.parametrize("frames", [MIN_FRAMES, 33, 150])
@needs_mlx
def test_matches_mlx_engine(small_engine, small, frames):
    from engines.mlx_engine import MLXEngine  # a broken engine module fails here, never skips

    config, tensors = small
    mlx = MLXEngine(build_graph(config), tensors)
    x = features(frames, seed=100 + frames)
    assert cosine(small_engine.embed(x)[0], mlx.embed(x)[0]) >= MIN_COSINE


def test_full_size_model_matches_numpy_reference(tmp_path):
    config = ModelConfig()
    tensors = random_resnet_weights(config)
    engine = ONNXEngine(config, Weights(tensors=tensors), threads=2, cache_dir=tmp_path)
    x = features(123, seed=7)
    got = engine.embed(x)
    assert got.shape == (1, 256)
    _, _, want = forward(x[0], tensors, config.layers)
    assert cosine(got[0], want) >= MIN_COSINE


def test_batch_equals_each_alone(small_engine):
    x = features(64, batch=3, seed=3)
    batched = small_engine.embed(x)
    assert batched.shape == (3, 32)
    for i in range(3):
        np.testing.assert_allclose(batched[i], small_engine.embed(x[i : i + 1])[0], atol=1e-5)


def test_variable_lengths_and_non_contiguous_input(small_engine):
    for frames in (300, 11, 90):
        assert small_engine.embed(features(frames, batch=2)).shape == (2, 32)
    x = features(40, batch=2, seed=5)
    flipped = np.asfortranarray(x.astype(np.float64))
    np.testing.assert_allclose(small_engine.embed(flipped), small_engine.embed(x), atol=1e-6)


class BuildCounter:
    """Counts the ONNX models built (graph_to_onnx calls) while it is installed."""

    def __init__(self, monkeypatch):
        self.count = 0
        build = onnx_export.graph_to_onnx

        def counted(*args, **kwargs):
            self.count += 1
            return build(*args, **kwargs)

        monkeypatch.setattr(onnx_export, "graph_to_onnx", counted)


@pytest.fixture
def builds(monkeypatch) -> BuildCounter:
    return BuildCounter(monkeypatch)


def test_bad_input_is_engine_error(small_engine):
    with pytest.raises(EngineError, match="ONNX engine failed"):
        small_engine.embed(np.zeros((1, 50, 40), dtype=np.float32))


def test_model_is_cached_beside_the_weights_and_reused(model_dir, monkeypatch):
    config, directory = model_dir
    first = ONNXEngine(config, Weights(directory / WEIGHTS_FILE))
    assert first.model_path.parent == directory / "onnx"
    assert oct(first.model_path.stat().st_mode & 0o777) == oct(onnx_engine.CACHE_FILE_MODE)
    # nothing else is left in the cache folder: no scratch file (`.NAME.XXXX.part`)
    assert list(first.model_path.parent.iterdir()) == [first.model_path]
    mtime = first.model_path.stat().st_mtime_ns

    def no_build(*args):
        raise AssertionError("the cached model should have been used")

    weights = Weights(directory / WEIGHTS_FILE)
    monkeypatch.setattr(onnx_export, "graph_to_onnx", no_build)
    monkeypatch.setattr(weights, "tensors", no_build)
    second = ONNXEngine(config, weights)
    assert second.model_path == first.model_path
    assert second.model_path.stat().st_mtime_ns == mtime
    x = features(30)
    np.testing.assert_array_equal(first.embed(x), second.embed(x))


def test_explicit_cache_dir_is_reused(small, tmp_path, builds):
    config, tensors = small
    ONNXEngine(config, Weights(tensors=tensors), cache_dir=tmp_path)
    built = builds.count
    engine = ONNXEngine(config, Weights(tensors=tensors), cache_dir=tmp_path)
    assert builds.count == built
    assert engine.model_path.parent == tmp_path


def test_cached_start_up_reads_no_tensors_and_does_not_import_onnx(model_dir):
    config, directory = model_dir
    ONNXEngine(config, Weights(directory / WEIGHTS_FILE))  # fills the cache
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from engines.model import ModelConfig
        from engines.model import Weights
        from engines.onnx_engine import ONNXEngine
        def no_tensors(self):
            raise AssertionError("the weights were loaded")
        Weights.tensors = no_tensors
        weights = Weights(Path({str(directory / WEIGHTS_FILE)!r}))
        engine = ONNXEngine(ModelConfig.load(Path({str(directory)!r})), weights)
        assert engine.embed(__import__("numpy").zeros((1, 20, 80), "f4")).shape == (1, 32)
        assert "onnx" not in sys.modules, "onnx was imported"
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_corrupt_cache_file_is_rebuilt(model_dir, builds):
    config, directory = model_dir
    first = ONNXEngine(config, Weights(directory / WEIGHTS_FILE))
    x = features(25)
    want = first.embed(x)
    first.model_path.write_bytes(b"not an onnx model")
    built = builds.count
    second = ONNXEngine(config, Weights(directory / WEIGHTS_FILE))
    assert builds.count == built + 1
    assert second.model_path == first.model_path
    assert second.model_path.stat().st_size > 1000
    np.testing.assert_array_equal(second.embed(x), want)


def test_truncated_cache_file_is_rebuilt(small, tmp_path, builds):
    config, tensors = small
    first = ONNXEngine(config, Weights(tensors=tensors), cache_dir=tmp_path)
    data = first.model_path.read_bytes()
    first.model_path.write_bytes(data[: len(data) // 2])
    built = builds.count
    ONNXEngine(config, Weights(tensors=tensors), cache_dir=tmp_path)
    assert builds.count == built + 1
    assert first.model_path.read_bytes() == data


def refuse_writes_to(monkeypatch, directory: Path) -> None:
    """Make cache writes into `directory` fail as if it were read-only (tests run as root)."""
    write = onnx_engine.write_new

    def write_elsewhere(path: Path, data: bytes, **options) -> None:
        if path.parent == directory:
            raise PermissionError(13, "Permission denied", str(path))
        write(path, data, **options)

    monkeypatch.setattr(onnx_engine, "write_new", write_elsewhere)


def test_falls_back_to_user_cache_when_model_dir_is_read_only(model_dir, user_cache, monkeypatch,
                                                              builds):
    config, directory = model_dir
    refuse_writes_to(monkeypatch, directory / "onnx")
    engine = ONNXEngine(config, Weights(directory / WEIGHTS_FILE))
    assert engine.model_path.parent == user_cache
    built = builds.count
    again = ONNXEngine(config, Weights(directory / WEIGHTS_FILE))  # found in the user cache
    assert builds.count == built and again.model_path == engine.model_path


def test_in_memory_weights_use_the_user_cache(small, user_cache):
    config, tensors = small
    engine = ONNXEngine(config, Weights(tensors=tensors))
    assert engine.model_path.parent == user_cache


def test_runs_from_memory_when_no_cache_is_writable(small, tmp_path, monkeypatch):
    config, tensors = small

    def refuse(path: Path, data: bytes, **options) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(onnx_engine, "write_new", refuse)
    engine = ONNXEngine(config, Weights(tensors=tensors), cache_dir=tmp_path)
    assert engine.model_path is None
    assert engine.embed(features(20)).shape == (1, 32)


def test_threads_option_sets_the_session_threads(small, tmp_path):
    config, tensors = small
    engine = ONNXEngine(config, Weights(tensors=tensors), threads=1, cache_dir=tmp_path)
    assert engine.session.get_session_options().intra_op_num_threads == 1
    default = ONNXEngine(config, Weights(tensors=tensors), cache_dir=tmp_path)
    assert default.session.get_session_options().intra_op_num_threads == 0  # onnxruntime's
    np.testing.assert_allclose(engine.embed(features(20)), default.embed(features(20)),
                               atol=1e-6)


def test_accelerated_providers_come_first(small_engine, monkeypatch):
    available = ["CUDAExecutionProvider", "AzureExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(small_engine._ort, "get_available_providers", lambda: available)
    assert small_engine._pick_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_unknown_op_is_engine_error(small, tmp_path, monkeypatch):
    config, tensors = small

    class Gelu(Relu):
        pass

    graph = build_graph(config)
    graph.ops.insert(3, Gelu("stem", "odd"))
    with pytest.raises(EngineError, match="unsupported op Gelu"):
        graph_to_onnx(graph, tensors, config)
    with pytest.raises(EngineError, match="Gelu"):
        ONNXEngine(config, Weights(tensors=tensors), cache_dir=tmp_path, graph=graph)


def test_missing_onnxruntime_is_engine_error(small, tmp_path, monkeypatch):
    config, tensors = small
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(EngineError, match="pip install onnxruntime"):
        ONNXEngine(config, Weights(tensors=tensors), cache_dir=tmp_path)


def test_corrupt_copy_in_read_only_model_dir_is_skipped(model_dir, user_cache, monkeypatch,
                                                        builds):
    config, directory = model_dir
    first = ONNXEngine(config, Weights(directory / WEIGHTS_FILE))
    first.model_path.write_bytes(b"\0" * 100)  # corrupt, and the directory turns read-only
    refuse_writes_to(monkeypatch, directory / "onnx")
    rebuilt = ONNXEngine(config, Weights(directory / WEIGHTS_FILE))
    assert rebuilt.model_path.parent == user_cache
    built = builds.count
    again = ONNXEngine(config, Weights(directory / WEIGHTS_FILE))  # no rebuild on every start
    assert builds.count == built and again.model_path == rebuilt.model_path
