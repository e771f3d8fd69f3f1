"""int8 networks (engines/quantize.py): built once from the float32 graph with onnxruntime's
static per-channel quantization, calibrated on the shipped LibriSpeech utterances, cached;
close to float32 on real speech with the real CAM++ weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_audio

from audio_cli.frontend.audio import load_audio
from audio_cli.pipeline.calibration import CALIBRATION_DIR, calibration
from audio_cli.pipeline.speaker import WeSpeaker
from engines.model import FrontendConfig

SPEECH_DIR = "data/speech/librispeech-test-other-10x10"
SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "1688-142285-0002.flac"


@pytest.fixture()
def model_copy(small_model_dir, tmp_path) -> Path:
    """A private copy of the small random ResNet, so its cache starts empty."""
    return Path(shutil.copytree(small_model_dir, tmp_path / "model"))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_an_int8_model_is_built_once_and_cached_beside_the_float32_one(model_copy):
    import onnx
    int8 = WeSpeaker.from_pretrained(model_copy, engine="onnx", precision="int8")
    path = int8.engine.model_path
    assert int8.engine_name == "onnx-int8"
    assert path.parent == model_copy / "onnx" and "int8" in path.name
    floats = [p for p in path.parent.glob("*.onnx") if "int8" not in p.name]
    assert len(floats) == 1
    assert path.stat().st_size < floats[0].stat().st_size  # int8 weights (tiny model here)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert "QLinearConv" in ops and "Conv" not in ops
    built = path.stat().st_mtime_ns
    again = WeSpeaker.from_pretrained(model_copy, engine="onnx", precision="int8")
    assert again.engine.model_path == path and path.stat().st_mtime_ns == built


def test_int8_vectors_are_unit_vectors_near_float32(model_copy):
    audio = load_audio(SAMPLE)
    int8 = WeSpeaker.from_pretrained(model_copy, engine="onnx", precision="int8")
    full = WeSpeaker.from_pretrained(model_copy, engine="onnx")
    a, b = int8.embed_audio(audio).embedding, full.embed_audio(audio).embedding
    assert np.isfinite(a).all() and abs(np.linalg.norm(a) - 1) < 1e-5
    assert 0.9 <= cosine(a, b) < 1.0  # close, and not the float32 model under another name


def test_the_calibration_identity_follows_the_files_and_the_front_end(tmp_path):
    default = calibration(FrontendConfig())
    assert default.identity == calibration(FrontendConfig()).identity
    assert default.identity != calibration(FrontendConfig(num_mel_bins=64)).identity
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted(CALIBRATION_DIR.glob("*.flac"))[0], one)
    assert calibration(FrontendConfig(), one).identity != default.identity
    clips = list(calibration(FrontendConfig(), one).features())
    assert len(clips) == 1 and clips[0].shape[1] == 80


def test_the_shipped_calibration_set_carries_its_attribution():
    files = sorted(CALIBRATION_DIR.glob("*.flac"))
    text = (CALIBRATION_DIR / "README.md").read_text()
    assert len(files) == 8 and (CALIBRATION_DIR / "LICENSE.TXT").is_file()
    assert "CC-BY-4.0" in text or "Creative Commons Attribution 4.0" in text
    assert all(f.name in text for f in files)


def test_campplus_int8_stays_close_to_float32_on_real_speech(campplus_dir, shared_dir):
    files = sorted((shared_dir / SPEECH_DIR).glob("*/*.flac"))[::10]
    int8 = WeSpeaker.from_pretrained(campplus_dir, engine="onnx", precision="int8")
    full = WeSpeaker.from_pretrained(campplus_dir, engine="onnx")
    cosines = [cosine(int8.embed(f), full.embed(f)) for f in files]
    assert np.median(cosines) >= 0.985 and min(cosines) >= 0.97, cosines


def test_int8_says_when_a_long_campplus_clip_runs_in_float32(tmp_path):
    from model_factory import small_campplus_config, write_campplus_model

    from audio_cli.frontend.checks import InputAudioWarning

    directory = tmp_path / "campplus"
    write_campplus_model(directory, small_campplus_config(), seed=2)
    int8 = WeSpeaker.from_pretrained(directory, engine="onnx", precision="int8")
    full = WeSpeaker.from_pretrained(directory, engine="onnx")
    audio = load_audio(SAMPLE)
    short = int8.embed_audio(audio).embedding  # one pass of the int8 graph: no warning
    for speaker in (int8, full):
        speaker.inference.chunk_frames = 200  # this 2.8 s clip now runs stage by stage
    with pytest.warns(InputAudioWarning, match="--precision int8: clips over 2 s run stage by "
                      "stage in float32"):
        staged = int8.embed_audio(audio).embedding
    assert cosine(staged, full.embed_audio(audio).embedding) > 0.99999  # float32's vector
    assert cosine(staged, short) < 0.99999


def test_the_cli_embeds_in_int8_and_says_so(model_copy):
    proc = run_audio("embed-speaker", SAMPLE, "--model", model_copy, "--precision", "int8",
                     "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["engine"] == "onnx-int8" and len(record["embedding"]) == record["dimension"]


@pytest.mark.parametrize(("args", "words"), [
    (("--precision", "int4"), ["--precision", "int4", "float32, int8"]),
    (("--precision", "int8", "--engine", "mlx"), ["--precision int8", "onnx and coreml"]),
])
def test_bad_precision_requests_are_one_line_usage_errors(model_copy, args, words):
    proc = run_audio("embed-speaker", SAMPLE, "--model", model_copy, *args)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("audio: error:") and all(w in line for w in words), line


def test_quantize_records_a_users_calibration_and_can_return_to_the_shipped_one(model_copy,
                                                                                tmp_path):
    own = tmp_path / "own"
    own.mkdir()
    for path in sorted(CALIBRATION_DIR.glob("*.flac"))[:2]:  # a different set: 2 files
        shutil.copy(path, own)
    proc = run_audio("quantize", "--model", model_copy, "--calibration", own)
    assert proc.returncode == 0, proc.stderr
    users = Path(proc.stdout.strip())
    assert users.is_file() and str(own) in proc.stderr
    later = WeSpeaker.from_pretrained(model_copy, engine="onnx", precision="int8")
    assert later.engine.model_path == users  # --precision int8 now runs the user's model
    back = run_audio("quantize", "--model", model_copy)
    assert back.returncode == 0, back.stderr
    shipped = Path(back.stdout.strip())
    assert shipped != users and shipped.is_file()
    again = WeSpeaker.from_pretrained(model_copy, engine="onnx", precision="int8")
    assert again.engine.model_path == shipped


def test_quantize_refuses_a_calibration_folder_without_audio(model_copy, tmp_path):
    proc = run_audio("quantize", "--model", model_copy, "--calibration", tmp_path)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("audio: error: --calibration:") and "no audio files" in line


def test_compare_runs_in_int8(model_copy):
    other = SAMPLE.with_name("367-130732-0000.flac")
    proc = run_audio("compare", SAMPLE, other, "--model", model_copy, "--precision", "int8",
                     "--json")
    assert proc.returncode in (0, 1), proc.stderr
    document = json.loads(proc.stdout)
    assert document["engine"] == "onnx-int8" and -1 <= document["score"] <= 1
