"""Issue 26: a model folder's config.json is checked against the schema (the keys its
model_type needs, the front-end block of CAM++ and NeMo models) and against the weights (the
final layer's size is embedding_dim; the tensors are those of the named network). A mismatch
is a model error (exit 4) naming config.json and the key, not a run with default settings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_run import run_audio
from model_factory import small_campplus_config, write_campplus_model
from signals import voiced, write_wav

from engines.errors import ModelError
from engines.model import ModelConfig


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    return write_wav(tmp_path_factory.mktemp("cfg") / "a.wav", voiced(1.5))


def edited(source: Path, target: Path, edit) -> Path:
    """A copy of a model folder with its config.json changed by `edit(dict) -> dict`."""
    shutil.copytree(source, target)
    config = target / "config.json"
    config.write_text(json.dumps(edit(json.loads(config.read_text()))))
    return target


def refused(model: Path, wav: Path) -> str:
    proc = run_audio("embed-speaker", wav, "--model", model, "--json")
    assert proc.returncode == 4, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"audio: error: {model / 'config.json'}: "), line
    return line


@pytest.fixture(scope="module")
def campplus_model(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("campplus") / "model"
    write_campplus_model(directory, small_campplus_config())
    return directory


def without(key: str):
    return lambda d: {k: v for k, v in d.items() if k != key}


def test_campplus_config_without_its_front_end_is_refused(campplus_model, wav, tmp_path):
    line = refused(edited(campplus_model, tmp_path / "m", without("frontend")), wav)
    assert "no frontend" in line


def test_campplus_front_end_lacking_its_window_is_refused(campplus_model, wav, tmp_path):
    model = edited(campplus_model, tmp_path / "m",
                   lambda d: {**d, "frontend": without("window")(d["frontend"])})
    assert "frontend has no window" in refused(model, wav)


def test_wrong_embedding_dim_is_refused(small_model_dir, wav, tmp_path):
    line = refused(edited(small_model_dir, tmp_path / "m", lambda d: {**d,
                                                                      "embedding_dim": 999}), wav)
    assert "embedding_dim 999 does not match model.safetensors" in line


def test_a_config_of_nothing_beside_resnet_weights_is_refused(small_model_dir, wav, tmp_path):
    line = refused(edited(small_model_dir, tmp_path / "m", lambda d: {"foo": 1}), wav)
    assert "no model_type" in line


def test_campplus_type_beside_resnet_weights_is_refused(small_model_dir, wav, tmp_path):
    def as_campplus(d):
        return {**d, "model_type": "campplus", "layers": [1, 2, 1],
                "frontend": {**d["frontend"], "window": "povey", "input_scale": 1.0}}
    line = refused(edited(small_model_dir, tmp_path / "m", as_campplus), wav)
    assert "model_type 'campplus' does not match model.safetensors" in line


@pytest.mark.parametrize("edit,words", [
    (lambda d: {**d, "model_type": "transformer"}, "model_type: unsupported model type"),
    (lambda d: {**without("network")(d), "model_type": "nemo_speaker"}, "no network"),
    (without("layers"), "no layers"),
    (lambda d: {**d, "embedding_dim": "256"}, "embedding_dim '256' is not a positive integer"),
    (lambda d: {**d, "frontend": {**d["frontend"], "window": "blackman"}}, "frontend.window"),
])
def test_other_broken_configs_are_refused(small_model_dir, wav, tmp_path, edit, words):
    assert words in refused(edited(small_model_dir, tmp_path / "m", edit), wav)


def test_the_hub_resnet_config_loads_without_a_front_end_block(small_model_dir, tmp_path):
    hub_keys = ("model_type", "sample_rate", "n_mels", "embedding_dim", "layers", "channels",
                "pooling_output_dim")
    model = edited(small_model_dir, tmp_path / "m", lambda d: {
        **{k: d[k] for k in hub_keys}, "model_type": "wespeaker_resnet34_lm", "extra": True})
    from engines.model import check_weights

    config = ModelConfig.load(model)
    check_weights(config, model)
    proc = run_audio("embed-speaker", write_wav(tmp_path / "a.wav", voiced(1.5)),
                     "--model", model, "--json")
    assert proc.returncode == 0, proc.stderr


def test_check_weights_reads_the_final_layer(small_model_dir):
    from engines.model import check_weights

    config = ModelConfig.load(small_model_dir)
    check_weights(config, small_model_dir)
    with pytest.raises(ModelError, match="embedding_dim"):
        check_weights(ModelConfig.from_dict({**config.to_dict(), "embedding_dim": 3}),
                      small_model_dir)
