"""A Core ML-only model directory (compiled `wespeaker.mlmodelc` + config.json): resolution,
the hub download patterns, and the errors off macOS or with another engine."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_audio
from model_factory import small_config
from signals import voiced, write_wav

from audio_cli.models.registry import HUB_FILES, check_model_dir, compiled_models, resolve_model
from engines import compiled_only_model, create_engine
from engines.coreml_compiled import HUB_COMPILED_MODEL, HUB_FIXED_LENGTHS, embed_clips
from engines.errors import EngineError, ModelError
from engines.model import WEIGHTS_FILE, Weights

off_macos = pytest.mark.skipif(sys.platform == "darwin", reason="checks the non-macOS error")


def compiled_dir(root: Path) -> Path:
    """A directory laid out like aufklarer/WeSpeaker-ResNet34-LM-CoreML (no real model)."""
    directory = root / "coreml-only"
    (directory / HUB_COMPILED_MODEL / "weights").mkdir(parents=True)
    (directory / HUB_COMPILED_MODEL / "model.mil").write_text("program(1.0)\n")
    (directory / HUB_COMPILED_MODEL / "weights" / "weight.bin").write_bytes(b"\0" * 16)
    small_config().save(directory)
    return directory


@pytest.fixture
def clip(tmp_path) -> Path:
    return write_wav(tmp_path / "clip.wav", voiced(1.5))


def test_core_ml_only_directory_resolves_without_weights(tmp_path):
    directory = compiled_dir(tmp_path)
    assert resolve_model(str(directory)) == (str(directory), directory)
    assert compiled_models(directory) == [directory / HUB_COMPILED_MODEL]
    assert compiled_only_model(Weights(directory / WEIGHTS_FILE)) == directory / HUB_COMPILED_MODEL
    # weights present: the exported-package path is used, not the compiled model
    (directory / WEIGHTS_FILE).write_bytes(b"")
    assert compiled_only_model(Weights(directory / WEIGHTS_FILE)) is None


def test_directory_with_neither_weights_nor_compiled_model_is_refused(tmp_path):
    small_config().save(tmp_path)
    with pytest.raises(ModelError, match=f"missing {WEIGHTS_FILE}"):
        check_model_dir(tmp_path)


def test_hub_download_patterns_fetch_the_compiled_model_directory():
    from huggingface_hub.utils import filter_repo_objects

    files = ["config.json", "README.md", f"{HUB_COMPILED_MODEL}/model.mil",
             f"{HUB_COMPILED_MODEL}/weights/weight.bin", f"{HUB_COMPILED_MODEL}/coremldata.bin",
             "other/unrelated.bin", WEIGHTS_FILE]
    kept = set(filter_repo_objects(files, allow_patterns=HUB_FILES))
    assert kept == set(files) - {"other/unrelated.bin"}


@pytest.mark.parametrize("engine", ["onnx", "mlx"])
def test_other_engines_refuse_a_core_ml_only_model(tmp_path, engine):
    directory = compiled_dir(tmp_path)
    with pytest.raises(ModelError, match="only a compiled Core ML model"):
        create_engine(engine, small_config(), Weights(directory / WEIGHTS_FILE))


@off_macos
def test_cli_off_macos_is_one_line_engine_error(tmp_path, clip):
    proc = run_audio("embed-speaker", str(clip), "--model", str(compiled_dir(tmp_path)),
                     "--engine", "coreml", "--json")
    err = proc.stderr
    assert proc.returncode == 5, err
    assert proc.stdout == ""
    assert err.count("\n") == 1 and err.startswith("audio: error: a compiled Core ML model "
                                                   "runs only on macOS"), err


def test_cli_onnx_engine_on_core_ml_only_model_is_a_model_error(tmp_path, clip):
    proc = run_audio("embed-speaker", str(clip), "--model", str(compiled_dir(tmp_path)),
                     "--engine", "onnx", "--json")
    err = proc.stderr
    assert proc.returncode == 4, err
    assert proc.stdout == ""
    assert err.count("\n") == 1 and "--engine coreml" in err, err


@pytest.mark.parametrize("name", ["wespeaker-resnet34-lm-coreml",
                                  "aufklarer/WeSpeaker-ResNet34-LM-CoreML"])
def test_known_core_ml_only_model_is_refused_by_other_engines_before_downloading(name,
                                                                                monkeypatch):
    def no_download(repo_id):
        raise AssertionError(f"{repo_id} should not be downloaded")

    monkeypatch.setattr("audio_cli.models.registry.download_from_hub", no_download)
    with pytest.raises(ModelError, match="runs only with --engine coreml"):
        resolve_model(name, "onnx")
    with pytest.raises(ModelError, match="runs only with --engine coreml"):
        resolve_model(name, "mlx")


def test_padded_batch_clips_are_windowed_on_their_real_frames_only():
    rng = np.random.default_rng(3)
    seen = []

    def predict(window):  # a stand-in network: the window's mean over time, as a vector
        seen.append(window.copy())
        return window.mean(axis=1) + 1.0

    a, b = rng.standard_normal((2345, 8)), rng.standard_normal((700, 8))
    batch = np.zeros((2, 2345, 8), np.float32)
    batch[0], batch[1, :700] = a, b
    together = embed_clips(predict, batch, np.array([2345, 700]), HUB_FIXED_LENGTHS)
    assert all(w.shape[1] in HUB_FIXED_LENGTHS for w in seen)
    assert not any(np.all(w[0, -1] == 0) for w in seen)  # no padding row reached predict
    alone = embed_clips(predict, b[None].astype(np.float32), None, HUB_FIXED_LENGTHS)
    np.testing.assert_array_equal(together[1], alone[0])
    with pytest.raises(EngineError, match="do not fit"):
        embed_clips(predict, batch, np.array([2346, 1]), HUB_FIXED_LENGTHS)
