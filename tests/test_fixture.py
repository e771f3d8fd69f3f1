"""End to end against the independent reference in ../shared/fixtures/wespeaker-random."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_audio

from audio_cli import WeSpeaker, cosine_similarity
from audio_cli.frontend.audio import load_audio

FIXTURE = "fixtures/wespeaker-random"
MIN_COSINE = 0.9999


@pytest.fixture(scope="module")
def fixture_dir(shared_dir: Path) -> Path:
    return shared_dir / FIXTURE


@pytest.fixture(scope="module")
def converted(fixture_dir: Path, tmp_path_factory) -> Path:
    """The fixture checkpoint converted by the `audio convert` command."""
    out = tmp_path_factory.mktemp("fixture") / "model"
    proc = run_audio("convert", fixture_dir / "pytorch_model.bin", out)
    assert proc.returncode == 0, proc.stderr
    return out


def _inputs(fixture_dir: Path) -> list[dict]:
    return json.loads((fixture_dir / "manifest.json").read_text())["files"]


@pytest.mark.parametrize("engine", ["onnx", pytest.param("mlx", marks=pytest.mark.slow)])
def test_engine_matches_reference_embeddings(engine, converted, fixture_dir):
    model = WeSpeaker.from_pretrained(converted, engine=engine)
    for item in _inputs(fixture_dir):
        vector = model.embed(audio_file=fixture_dir / item["audio"])
        expected = np.load(fixture_dir / item["emb"])
        cosine = cosine_similarity(vector, expected)
        print(f"{engine} {item['name']}: cosine {cosine:.9f}")
        assert cosine >= MIN_COSINE, (item["name"], cosine)
        assert abs(np.linalg.norm(vector) - 1) < 1e-5


def test_features_feed_the_reference_frame_count(converted, fixture_dir):
    model = WeSpeaker.from_pretrained(converted, engine="onnx")
    for item in _inputs(fixture_dir):
        features = model.features(load_audio(fixture_dir / item["audio"]))
        assert features.shape == (item["num_fbank_frames"], 80)


def test_converted_directory_carries_the_attribution(converted):
    text = " ".join(p.read_text() for p in converted.glob("*.md"))
    assert "CC-BY-4.0" in text or "creativecommons.org/licenses/by/4.0" in text
