"""The `audio` command through a subprocess: JSON output, determinism, resampling, bad input."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from signals import voiced, write_wav

from audio_cli import cosine_similarity

# What `--engine auto` must pick here, worked out independently of engines.resolve_engine_name:
# MLX on Apple Silicon (macOS on arm64), ONNX everywhere else.
AUTO_ENGINE = "mlx" if (sys.platform, platform.machine()) == ("darwin", "arm64") else "onnx"
# The optional package each non-default engine needs; tests of that engine skip without it.
ENGINE_PACKAGES = {"mlx": "mlx.core", "coreml": "coremltools"}


def run_audio(*args: str, stdin: bytes | None = None, env: dict | None = None):
    """Run `python -m audio_cli ARGS` and return the completed process (bytes output)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "audio_cli", *args], input=stdin,
                          capture_output=True, env=full_env, timeout=300)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s of 16 kHz mono voice-like audio."""
    return write_wav(tmp_path_factory.mktemp("audio") / "clip.wav", voiced(2.0))


def embed_json(path: str, small_model_dir: Path, *extra: str, stdin: bytes | None = None) -> dict:
    proc = run_audio("embed-speaker", path, "--model", str(small_model_dir), "--json", *extra,
                     stdin=stdin)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_json_output_is_one_object_with_the_vector(clip, small_model_dir):
    proc = run_audio("embed-speaker", str(clip), "--model", str(small_model_dir), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    vector = np.array(record["embedding"])
    assert record["dimension"] == len(vector) == 32
    assert abs(np.linalg.norm(vector) - 1) < 1e-5
    assert record["file"] == str(clip)
    assert record["sample_rate"] == 16000
    assert record["duration"] == pytest.approx(2.0)
    assert record["engine"] == AUTO_ENGINE
    assert record["model"] == str(small_model_dir)
    assert record["elapsed"] > 0


@pytest.mark.parametrize("first, second", [
    ("onnx", "mlx"),
    # coreml exports the model and (off macOS) runs the numpy MIL interpreter: 5-11 s each
    pytest.param("onnx", "coreml", marks=pytest.mark.slow),
    pytest.param("mlx", "coreml", marks=pytest.mark.slow),
])
def test_every_engine_gives_the_same_vector(first, second, clip, small_model_dir):
    for engine in (first, second):
        if engine in ENGINE_PACKAGES:
            pytest.importorskip(ENGINE_PACKAGES[engine],
                                reason=f"the {engine} engine's package is not installed")
    one = embed_json(str(clip), small_model_dir, "--engine", first)
    other = embed_json(str(clip), small_model_dir, "--engine", second)
    assert (one["engine"], other["engine"]) == (first, second)
    assert cosine_similarity(one["embedding"], other["embedding"]) >= 0.9999
    # two implementations never agree to the last bit of all 32 floats: identical vectors
    # mean one engine silently ran the other's computation under its own name
    assert one["embedding"] != other["embedding"]


def test_text_summary_shows_the_facts(clip, small_model_dir):
    proc = run_audio("embed-speaker", str(clip), "--model", str(small_model_dir))
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    for word in ("dimension", "32", "L2 norm", "1.000000", "first 8", "onnx", "duration"):
        assert word in text


def test_same_input_twice_gives_the_same_vector(clip, small_model_dir):
    a = embed_json(str(clip), small_model_dir)["embedding"]
    b = embed_json(str(clip), small_model_dir)["embedding"]
    assert a == b


def test_stdin_matches_the_file(clip, small_model_dir):
    from_file = embed_json(str(clip), small_model_dir)["embedding"]
    from_stdin = embed_json("-", small_model_dir, stdin=clip.read_bytes())
    assert from_stdin["file"] == "stdin"
    assert cosine_similarity(from_file, from_stdin["embedding"]) > 0.99999


def test_44k_stereo_copy_embeds_like_the_mono_original(clip, small_model_dir, tmp_path):
    mono, rate = sf.read(clip, dtype="float32")
    upsampled = soxr.resample(mono, rate, 44100, quality="VHQ")
    stereo = np.stack([upsampled, upsampled * 0.98], axis=1)
    copy = write_wav(tmp_path / "stereo44k.wav", stereo, 44100, subtype="FLOAT")
    original = embed_json(str(clip), small_model_dir)
    resampled = embed_json(str(copy), small_model_dir)
    assert resampled["sample_rate"] == 44100
    cosine = cosine_similarity(original["embedding"], resampled["embedding"])
    assert cosine >= 0.99, cosine


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_24"), ("OGG", "VORBIS"),
                                          ("OGG", "OPUS"), ("MP3", "MPEG_LAYER_III")])
def test_compressed_formats_decode(fmt, subtype, small_model_dir, tmp_path):
    path = tmp_path / f"clip.{fmt.lower()}"
    rate = 48000 if subtype == "OPUS" else 16000
    sf.write(str(path), voiced(1.5, rate), rate, format=fmt, subtype=subtype)
    record = embed_json(str(path), small_model_dir)
    assert record["dimension"] == 32
    assert record["duration"] == pytest.approx(1.5, abs=0.06)


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], int, str]]:
    """name -> (arguments, expected status, expected words in the message)."""
    empty = tmp / "empty.wav"
    empty.write_bytes(b"")
    corrupt = tmp / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    text = tmp / "notes.txt"
    text.write_text("this is not audio\n" * 20)
    nan = voiced(1.0)
    nan[100] = np.nan
    write_wav(tmp / "nan.wav", nan, subtype="FLOAT")
    write_wav(tmp / "silence.wav", np.zeros(16000, dtype=np.float32))
    write_wav(tmp / "short.wav", voiced(0.3))
    write_wav(tmp / "tiny.wav", voiced(0.1))
    return {
        "missing": ([str(tmp / "nope.wav")], 3, "no such file"),
        "empty": ([str(empty)], 3, "empty"),
        "corrupt": ([str(corrupt)], 3, "not a readable audio file"),
        "not audio": ([str(text)], 3, "not a readable audio file"),
        "non-finite": ([str(tmp / "nan.wav")], 3, "non-finite"),
        "silence": ([str(tmp / "silence.wav")], 3, "silence"),
        "too short": ([str(tmp / "short.wav")], 3, "too short"),
        "too short at a lower minimum": ([str(tmp / "tiny.wav"), "--min-duration", "0.2"], 3,
                                         "too short"),
        "minimum below the network's": ([str(tmp / "short.wav"), "--min-duration", "0.05"], 2,
                                        "min-duration"),
        "unknown engine": ([str(tmp / "short.wav"), "--engine", "tpu"], 2, "engine"),
        "unknown option": ([str(tmp / "short.wav"), "--frobnicate"], 2, "frobnicate"),
        "bad option value": ([str(tmp / "short.wav"), "--min-duration", "abc"], 2,
                             "min-duration"),
    }




@pytest.mark.parametrize("case", [
    "missing", "empty", "corrupt", "not audio", "non-finite", "silence",
    "too short", "too short at a lower minimum", "minimum below the network's",
    "unknown engine", "unknown option", "bad option value",
])
def test_bad_input_is_one_line_on_stderr_and_a_status(case, small_model_dir, tmp_path):
    args, status, words = _bad_inputs(tmp_path)[case]
    proc = run_audio("embed-speaker", *args, "--model", str(small_model_dir), "--json")
    stderr = proc.stderr.decode()
    assert proc.returncode == status, stderr
    assert proc.stdout == b""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("audio: error:")
    assert words in stderr.lower()
    assert "Traceback" not in stderr


def test_empty_stdin_is_an_error(small_model_dir):
    proc = run_audio("embed-speaker", "-", "--model", str(small_model_dir), stdin=b"")
    assert proc.returncode == 3
    assert "empty" in proc.stderr.decode()


def test_unknown_model_name(clip):
    proc = run_audio("embed-speaker", str(clip), "--model", "no-such-model")
    assert proc.returncode == 4
    assert "unknown model" in proc.stderr.decode()


def test_directory_without_weights_is_not_a_model(clip, tmp_path):
    proc = run_audio("embed-speaker", str(clip), "--model", str(tmp_path))
    assert proc.returncode == 4
    assert "not a model directory" in proc.stderr.decode()


def test_offline_hub_says_how_to_pass_a_local_model(clip, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = run_audio("embed-speaker", str(clip), env=env)
    stderr = proc.stderr.decode()
    assert proc.returncode == 4, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert "--model DIR" in stderr and "aufklarer/WeSpeaker-ResNet34-LM-MLX" in stderr


def test_version_and_help():
    version = run_audio("--version")
    assert version.returncode == 0
    assert version.stdout.decode().startswith("audio ")
    helptext = run_audio("embed-speaker", "--help")
    assert helptext.returncode == 0
    assert "--engine" in helptext.stdout.decode()


def test_default_model_downloads_from_the_hub(clip):
    """The real hub path; on machines without a route to the hub it skips, saying why."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    from audio_cli.models.registry import DEFAULT_MODEL

    try:
        snapshot_download(DEFAULT_MODEL, allow_patterns=["config.json"])
    except LocalEntryNotFoundError as exc:  # no route to the hub and nothing cached; any
        # other error (a bad repo id, a missing repo) is the project's and fails the test
        reason = exc.__cause__ or type(exc).__name__
        pytest.skip(f"Hugging Face hub unreachable from this machine ({reason}); "
                    "the default-model download runs on users' machines")
    proc = run_audio("embed-speaker", str(clip), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    record = json.loads(proc.stdout)
    assert record["dimension"] == 256
    assert record["model"] == DEFAULT_MODEL


@pytest.mark.slow
def test_export_coreml_writes_a_package_and_never_overwrites(small_model_dir, tmp_path):
    pytest.importorskip("coremltools")
    out = tmp_path / "speaker.mlpackage"
    first = run_audio("export-coreml", str(out), "--model", str(small_model_dir))
    assert first.returncode == 0, first.stderr.decode()
    assert (out / "Manifest.json").is_file()
    again = run_audio("export-coreml", str(out), "--model", str(small_model_dir))
    assert again.returncode == 2  # a usage error, as --output onto an existing file
    assert "not overwriting" in again.stderr.decode()
    bad = run_audio("export-coreml", str(tmp_path / "b.mlpackage"), "--precision", "int4",
                    "--model", str(small_model_dir))
    assert bad.returncode == 2
    assert "int4" in bad.stderr.decode() and not (tmp_path / "b.mlpackage").exists()
    int8 = run_audio("export-coreml", str(tmp_path / "c.mlpackage"), "--precision", "int8",
                     "--model", str(small_model_dir))
    assert int8.returncode == 0, int8.stderr.decode()
    assert (tmp_path / "c.mlpackage" / "Manifest.json").is_file()
