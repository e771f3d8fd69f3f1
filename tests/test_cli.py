"""The `audio` command (in-process, through its entry point): JSON output, determinism,
resampling, bad input."""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from cli_run import run_audio, run_audio_process
from platforms import MLX_PLATFORM, NO_MLX_REASON
from signals import voiced, write_wav

from audio_cli import cosine_similarity

# The default model (README, Quick start and --model): its hub id and the short name outputs use.
DEFAULT_HUB_ID = "aufklarer/WeSpeaker-ResNet34-LM-MLX"
DEFAULT_SHORT_NAME = "wespeaker-resnet34-lm"
# What `--engine auto` must pick here, worked out independently of engines.resolve_engine_name:
# MLX on Apple Silicon (macOS on arm64), ONNX everywhere else.
AUTO_ENGINE = "mlx" if (sys.platform, platform.machine()) == ("darwin", "arm64") else "onnx"
# The optional package the coreml engine needs; its tests skip without it (MLX is a dependency
# where it runs at all).
ENGINE_PACKAGES = {"coreml": "coremltools"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s of 16 kHz mono voice-like audio."""
    return write_wav(tmp_path_factory.mktemp("audio") / "clip.wav", voiced(2.0))


def embed_json(path: str, small_model_dir: Path, *extra: str, stdin: bytes | None = None) -> dict:
    proc = run_audio("embed-speaker", path, "--model", str(small_model_dir), "--json", *extra,
                     stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_json_output_is_one_object_with_the_vector(clip, small_model_dir):
    proc = run_audio("embed-speaker", str(clip), "--model", str(small_model_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert list(record) == ["embedding", "dimension", "elapsed", "file", "duration",
                            "sample_rate", "model", "model_digest", "engine"]
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
        if engine == "mlx" and not MLX_PLATFORM:
            pytest.skip(NO_MLX_REASON)
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


def summary_fields(text: str) -> dict[str, str]:
    """The one-file summary's lines as label -> value (label and value apart by 2+ spaces)."""
    fields = {}
    for line in text.splitlines():
        label, value = re.split(r"\s{2,}", line.strip(), maxsplit=1)
        fields[label] = value
    return fields


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d+\.\d+", text)]


def test_text_summary_shows_the_vector_it_computed(clip, small_model_dir):
    proc = run_audio("embed-speaker", str(clip), "--model", str(small_model_dir))
    assert proc.returncode == 0, proc.stderr
    fields = summary_fields(proc.stdout)
    vector = np.array(embed_json(str(clip), small_model_dir)["embedding"])
    assert fields["file"] == str(clip)
    assert numbers(fields["duration"]) == pytest.approx([2.0]) and "16000 Hz" in fields["duration"]
    assert fields["dimension"] == "32"
    assert numbers(fields["L2 norm"]) == pytest.approx([np.linalg.norm(vector)], abs=1e-6)
    assert numbers(fields["range"]) == pytest.approx([vector.min(), vector.max()], abs=1e-4)
    # the first 8 values, in order (printed to 4 decimals)
    assert numbers(fields["first 8"]) == pytest.approx(list(vector[:8]), abs=1e-4)
    assert fields["engine"] == AUTO_ENGINE
    assert fields["model"] == str(small_model_dir)
    assert "status" not in fields  # the many-input table's column, not the summary's


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
    stderr = proc.stderr
    assert proc.returncode == status, stderr
    assert proc.stdout == ""
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert stderr.startswith("audio: error:")
    assert words in stderr.lower()
    assert "Traceback" not in stderr


def test_empty_stdin_is_an_error(small_model_dir):
    proc = run_audio("embed-speaker", "-", "--model", str(small_model_dir), stdin=b"")
    assert proc.returncode == 3
    assert "empty" in proc.stderr


def test_unknown_model_name(clip):
    proc = run_audio("embed-speaker", str(clip), "--model", "no-such-model")
    assert proc.returncode == 4
    assert "unknown model" in proc.stderr


def test_directory_without_weights_is_not_a_model(clip, tmp_path):
    proc = run_audio("embed-speaker", str(clip), "--model", str(tmp_path))
    assert proc.returncode == 4
    assert "not a model directory" in proc.stderr


def test_offline_hub_says_how_to_pass_a_local_model(clip, tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = run_audio_process("embed-speaker", str(clip), env=env)  # the hub reads them at import
    stderr = proc.stderr
    assert proc.returncode == 4, stderr
    assert len(stderr.strip().splitlines()) == 1
    assert "--model DIR" in stderr and DEFAULT_HUB_ID in stderr


def test_version_and_help():
    version = run_audio("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("audio ")
    helptext = run_audio("embed-speaker", "--help")
    assert helptext.returncode == 0
    assert "--engine" in helptext.stdout


def test_default_model_downloads_from_the_hub(clip):
    """The real hub path; on machines without a route to the hub it skips, saying why."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(DEFAULT_HUB_ID, allow_patterns=["config.json"])
    except LocalEntryNotFoundError as exc:  # no route to the hub and nothing cached; any
        # other error (a bad repo id, a missing repo) is the project's and fails the test
        reason = exc.__cause__ or type(exc).__name__
        pytest.skip(f"Hugging Face hub unreachable from this machine ({reason}); "
                    "the default-model download runs on users' machines")
    proc = run_audio("embed-speaker", str(clip), "--json")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["dimension"] == 256
    assert record["model"] == DEFAULT_SHORT_NAME


def hub_cache(root: Path, repo_id: str, files: list[Path]) -> Path:
    """A Hugging Face cache (HF_HOME=root) holding `files` as repo_id's main revision, in the
    hub's documented cache layout: what a finished download leaves."""
    repo = root / "hub" / f"models--{repo_id.replace('/', '--')}"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in files:
        shutil.copy(path, snapshot / path.name)
    return snapshot


def test_the_default_model_from_the_hub_cache_is_named_by_its_short_name(clip, small_model_dir,
                                                                        tmp_path):
    """Offline, with the default model in the cache (here the small model under its id), the
    CLI loads it and names it by the short name (README, --model) in every output."""
    files = [small_model_dir / "config.json", small_model_dir / "model.safetensors"]
    hub_cache(tmp_path / "hf", DEFAULT_HUB_ID, files)
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = run_audio_process("embed-speaker", clip, "--json", env=env)  # read at import
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert (record["model"], record["dimension"]) == (DEFAULT_SHORT_NAME, 32)
    text = run_audio_process("embed-speaker", clip, env=env)
    assert summary_fields(text.stdout)["model"] == DEFAULT_SHORT_NAME


def test_a_download_fetches_what_a_model_directory_needs_and_nothing_else(clip, small_model_dir,
                                                                          tmp_path):
    """The hub files a download asks for (HUB_FILES, filtered as huggingface_hub filters them)
    make a directory the CLI runs; the repo's other weights formats are left behind."""
    from huggingface_hub.utils import filter_repo_objects

    from audio_cli.models.registry import HUB_FILES

    repo = tmp_path / "repo"  # a hub repo: the model, its card, and weights in other formats
    shutil.copytree(small_model_dir, repo, ignore=shutil.ignore_patterns("onnx*", "*.onnx"))
    (repo / "README.md").write_text("# model card\n")
    (repo / "pytorch_model.bin").write_bytes(b"\0" * 1000)
    (repo / "mlx").mkdir()
    (repo / "mlx" / "weights.npz").write_bytes(b"\0" * 1000)
    listing = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    fetched = list(filter_repo_objects(listing, allow_patterns=HUB_FILES))
    assert {"config.json", "model.safetensors", "README.md"} <= set(fetched)
    assert "pytorch_model.bin" not in fetched and "mlx/weights.npz" not in fetched
    download = tmp_path / "download"
    for name in fetched:
        (download / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(repo / name, download / name)
    proc = run_audio("embed-speaker", clip, "--model", download, "--json")
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_export_coreml_writes_a_package_and_never_overwrites(small_model_dir, tmp_path):
    pytest.importorskip("coremltools")
    out = tmp_path / "speaker.mlpackage"
    first = run_audio("export-coreml", str(out), "--model", str(small_model_dir))
    assert first.returncode == 0, first.stderr
    assert (out / "Manifest.json").is_file()
    again = run_audio("export-coreml", str(out), "--model", str(small_model_dir))
    assert again.returncode == 2  # a usage error, as --output onto an existing file
    assert "not overwriting" in again.stderr
    bad = run_audio("export-coreml", str(tmp_path / "b.mlpackage"), "--precision", "int4",
                    "--model", str(small_model_dir))
    assert bad.returncode == 2
    assert "int4" in bad.stderr and not (tmp_path / "b.mlpackage").exists()
    int8 = run_audio("export-coreml", str(tmp_path / "c.mlpackage"), "--precision", "int8",
                     "--model", str(small_model_dir))
    assert int8.returncode == 0, int8.stderr
    assert (tmp_path / "c.mlpackage" / "Manifest.json").is_file()
