"""Inputs refused for their size or their nature, and the defaults the environment sets
(issue 26): --max-duration (from the header for files, while copying for streams), seconds
options checked against one sample, sample rates no speech front-end can use, constant (DC)
signals, `index` of a folder without audio, $AUDIO_MODEL, and the first int8 build's line."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_run import audio_cmd, run_audio, run_audio_process
from signals import voiced, write_wav

from audio_cli.frontend.audio import from_samples
from audio_cli.pipeline.options import EmbedOptions
from audio_cli.pipeline.speaker import SpeakerEmbedder
from engines.errors import InputAudioError

HOURS_25 = 25 * 3600  # seconds: over the default limit of a day
TIMEOUT = 120  # seconds for one child run


def wav_header(frames: int, rate: int = 16000) -> bytes:
    """A 16-bit mono PCM WAV header declaring `frames` frames (0xFFFFFFFF: unknown, as
    encoders writing to a pipe put it)."""
    data = 0xFFFFFFFF if frames < 0 else frames * 2
    riff = 0xFFFFFFFF if frames < 0 else 36 + data
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, 2 * rate, 2, 16)
            + b"data" + struct.pack("<I", data))


def one_error(proc) -> str:
    """The one stderr line of a refused run."""
    (line,) = proc.stderr.splitlines()
    assert line.startswith("audio: error: "), line
    return line


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s of 16 kHz voice-like audio."""
    return write_wav(tmp_path_factory.mktemp("limits") / "clip.wav", voiced(2.0))


@pytest.fixture
def never_decode(monkeypatch):
    """Make any decoding fail the test: a refusal must come from the header alone."""
    import audio_cli.frontend.audio as audio_module

    def decoded(*args, **kwargs):
        raise AssertionError("audio was decoded")

    monkeypatch.setattr(audio_module, "read_frames", decoded)


# ---------------------------------------------------------------- --max-duration


def test_a_25_hour_header_is_refused_without_reading_the_audio(tmp_path, small_model_dir,
                                                                never_decode):
    """A sparse file (no data blocks on disk) whose header says 25 h: refused by the default
    limit of a day from the header; on main it was read whole (131 s) and called silence."""
    path = tmp_path / "long.wav"
    with open(path, "wb") as out:
        header = wav_header(HOURS_25 * 16000)
        out.write(header)
        out.truncate(len(header) + HOURS_25 * 16000 * 2)
    proc = run_audio("embed-speaker", path, "--model", small_model_dir)
    assert proc.returncode == 3, proc.stderr
    line = one_error(proc)
    assert f"{path}: too long (90000.00 s)" in line and "86400" in line
    assert "--max-duration" in line


def test_max_duration_from_the_environment_fails_one_input_of_an_index(tmp_path, clip,
                                                                      small_model_dir):
    folder = tmp_path / "audio"
    folder.mkdir()
    shutil.copy(clip, folder / "long.wav")  # 2 s
    write_wav(folder / "short.wav", voiced(1.0, f0=180.0))
    db = tmp_path / "store.db"
    proc = run_audio("index", folder, "--db", db, "--model", small_model_dir, "--json",
                     env={"AUDIO_MAX_DURATION": "1.5"})
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert report["added"] == 1 and len(report["failed"]) == 1
    assert report["failed"][0]["file"].endswith("long.wav")
    assert "too long (2.00 s); at most 1.5 s" in report["failed"][0]["error"]
    again = run_audio("index", folder, "--db", db, "--model", small_model_dir,
                      "--max-duration", "3", env={"AUDIO_MAX_DURATION": "1.5"})
    assert again.returncode == 0, again.stderr  # the option beats the variable


def test_an_endless_stream_stops_as_soon_as_it_passes_the_maximum(tmp_path, small_model_dir):
    """A WAV header saying "unknown length", then noise forever: the copy stops just past
    60 s of 16-bit 16 kHz audio (1.9 MB and the first block), not at the 4 GiB stream cap."""
    writer = ("import sys, numpy as np\n"
              f"sys.stdout.buffer.write({wav_header(-1)!r})\n"
              "block = (np.random.default_rng(0).standard_normal(16000) * 3000)"
              ".astype('<i2').tobytes()\n"
              "try:\n"
              "    while True: sys.stdout.buffer.write(block)\n"
              "except BrokenPipeError: pass\n")
    feeder = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    try:
        proc = subprocess.run(audio_cmd("embed-speaker", "-", "--model", small_model_dir,
                                        "--max-duration", "60"),
                              stdin=feeder.stdout, capture_output=True, text=True,
                              env={**os.environ, "TMPDIR": str(scratch)}, timeout=TIMEOUT)
    finally:
        feeder.stdout.close()
        feeder.kill()
        feeder.wait()
    assert proc.returncode == 3, proc.stderr
    line = one_error(proc)
    assert line.startswith("audio: error: stdin: longer than 60 s (--max-duration); stopped "
                           "reading after "), line
    assert line.endswith(" MiB") and float(line.split()[-2]) <= 3.0, line
    assert [p.name for p in scratch.iterdir() if p.name != ".ses"] == []


def test_a_short_stream_over_the_maximum_is_refused_from_its_header(clip, small_model_dir):
    proc = run_audio("embed-speaker", "-", "--model", small_model_dir, "--max-duration", "1",
                     stdin=clip.read_bytes())
    assert proc.returncode == 3, proc.stderr
    assert one_error(proc) == ("audio: error: stdin: too long (2.00 s); at most 1 s is "
                               "accepted (--max-duration)")


def test_a_minimum_above_the_maximum_is_a_usage_error(clip, small_model_dir):
    proc = run_audio("embed-speaker", clip, "--model", small_model_dir, "--min-duration", "2",
                     "--max-duration", "1")
    assert proc.returncode == 2, proc.stderr
    assert one_error(proc) == "audio: error: --min-duration 2 s is more than --max-duration 1 s"


# ---------------------------------------------------------------- seconds against one sample


@pytest.mark.parametrize(("command", "option", "args"), [
    ("embed-speaker", "--hop", ["--window", "1", "--hop", "0.00005"]),
    ("embed-speaker", "--window", ["--window", "0.00005", "--min-duration", "0"]),
    ("embed-speaker", "--min-duration", ["--min-duration", "0.00005"]),
    ("embed-speaker", "--max-duration", ["--max-duration", "0.00005"]),
    ("search", "--max-duration", ["--max-duration", "1e-9"]),
    ("enroll", "--min-duration", ["--min-duration", "1e-7"]),
])
def test_seconds_below_one_sample_are_usage_errors(command, option, args, clip,
                                                   small_model_dir, tmp_path):
    """On main `--window 1 --hop 0.00005` ran 16000 windows of a 2 s clip (45 s, exit 0)."""
    lead = ["enroll", "bob", clip] if command == "enroll" else [command, clip]
    proc = run_audio(*lead, "--model", small_model_dir, "--db", tmp_path / "s.db", *args) \
        if command != "embed-speaker" else run_audio(*lead, "--model", small_model_dir, *args)
    assert proc.returncode == 2, proc.stderr
    line = one_error(proc)
    assert f"'{option}'" in line and "one sample" in line, line
    assert not (tmp_path / "s.db").exists()


# ---------------------------------------------------------------- no speech signal


def test_a_1_hz_recording_of_10_samples_is_refused(tmp_path, small_model_dir):
    """On main: embedded as "10.00 s" after a warning."""
    path = tmp_path / "onehz.wav"
    sf.write(path, np.linspace(-0.5, 0.5, 10).astype(np.float32), 1, subtype="FLOAT")
    proc = run_audio("embed-speaker", path, "--model", small_model_dir)
    assert proc.returncode == 3, proc.stderr
    assert one_error(proc) == (f"audio: error: {path}: 1 Hz audio is no speech signal; at "
                               "least 4000 Hz is needed")


def test_rates_under_4_khz_are_refused_and_4_khz_is_upsampled(tmp_path, small_model_dir):
    low, usable = tmp_path / "low.wav", tmp_path / "usable.wav"
    write_wav(low, voiced(2.0, 3000), 3000)
    write_wav(usable, voiced(2.0, 4000), 4000)
    proc = run_audio("embed-speaker", low, usable, "--model", small_model_dir, "--json")
    assert proc.returncode == 3, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert "3000 Hz audio is no speech signal" in records[0]["error"]
    assert records[1]["sample_rate"] == 4000 and len(records[1]["embedding"]) > 0


@pytest.mark.parametrize(("rate", "channels", "level", "args"), [
    (16000, 1, 0.25, []), (44100, 2, -0.3, []), (22050, 1, 0.6, ["--window", "1"])])
def test_a_constant_signal_is_refused_like_silence(tmp_path, small_model_dir, rate, channels,
                                                   level, args):
    path = tmp_path / "dc.wav"
    sf.write(path, np.full((2 * rate, channels), level, np.float32), rate, subtype="PCM_16")
    proc = run_audio("embed-speaker", path, "--model", small_model_dir, *args)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines()[0] == (f"audio: error: {path}: the audio is a constant "
                                           "level (no variation), not a signal")


def test_a_constant_signal_cannot_be_enrolled_nor_given_as_samples(tmp_path, small_model_dir):
    path = tmp_path / "dc.wav"
    sf.write(path, np.full(32000, 0.1, np.float32), 16000, subtype="PCM_16")
    db = tmp_path / "s.db"
    proc = run_audio("enroll", "bob", path, "--db", db, "--model", small_model_dir)
    assert proc.returncode == 3, proc.stderr
    assert "constant level" in one_error(proc)
    speaker = SpeakerEmbedder.from_pretrained(small_model_dir)
    with pytest.raises(InputAudioError, match="constant level"):
        speaker.embed(samples=np.full((22050, 2), 7, np.int16), sample_rate=22050)
    with pytest.raises(InputAudioError, match="constant level"):
        speaker.embed_audio(from_samples(np.full(16000, -0.5, np.float32), 16000))


# ---------------------------------------------------------------- index of a folder


def test_index_of_a_folder_without_audio_exits_3_like_embed(tmp_path, small_model_dir):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("no audio here\n")
    db = tmp_path / "store.db"
    embed = run_audio("embed-speaker", folder, "--model", small_model_dir)
    proc = run_audio("index", folder, "--db", db, "--model", small_model_dir)
    assert embed.returncode == proc.returncode == 3, proc.stderr
    assert one_error(proc) == embed.stderr.splitlines()[0]
    assert proc.stdout == "0 found: 0 added, 0 updated, 0 unchanged, 0 pruned, 1 failed\n"
    assert not db.exists()  # nothing to index: no store made


def test_index_of_an_empty_folder_and_a_file_indexes_the_file(tmp_path, clip, small_model_dir):
    empty = tmp_path / "empty"
    empty.mkdir()
    db = tmp_path / "store.db"
    proc = run_audio("index", empty, clip, "--db", db, "--model", small_model_dir, "--json")
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    assert report["added"] == 1 and [f["file"] for f in report["failed"]] == [str(empty)]
    pruned = run_audio("index", empty, "--prune", "--db", db, "--model", small_model_dir)
    assert pruned.returncode == 0, pruned.stderr  # --prune of a folder emptied on purpose


# ---------------------------------------------------------------- $AUDIO_MODEL


def test_audio_model_sets_the_default_model(clip, small_model_dir, tmp_path):
    """Offline, without --model: on main the built-in hub model, not cached (exit 4)."""
    env = {"AUDIO_MODEL": str(small_model_dir), "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}
    proc = run_audio_process("embed-speaker", clip, "--json", env=env, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == str(small_model_dir)
    missing = tmp_path / "no-such-model"
    named = run_audio_process("compare", clip, clip, "--model", small_model_dir,
                              env={**env, "AUDIO_MODEL": str(missing)}, timeout=TIMEOUT)
    assert named.returncode == 0, named.stderr  # --model beats the variable
    wrong = run_audio_process("embed-speaker", clip, env={**env, "AUDIO_MODEL": str(missing)},
                              timeout=TIMEOUT)
    assert wrong.returncode == 4 and str(missing) in wrong.stderr, wrong.stderr


def test_the_options_object_resolves_the_default_model(monkeypatch, small_model_dir):
    from audio_cli.models.registry import DEFAULT_MODEL

    monkeypatch.delenv("AUDIO_MODEL", raising=False)
    assert EmbedOptions().model == DEFAULT_MODEL
    monkeypatch.setenv("AUDIO_MODEL", str(small_model_dir))
    assert EmbedOptions().model == str(small_model_dir)
    assert EmbedOptions(model="campplus").model == "campplus"


# ---------------------------------------------------------------- first int8 build


def test_the_first_int8_run_says_what_it_builds(clip, small_model_dir, tmp_path):
    model = Path(shutil.copytree(small_model_dir, tmp_path / "model"))
    first = run_audio("embed-speaker", clip, "--model", model, "--precision", "int8", "--json")
    assert first.returncode == 0, first.stderr
    (line,) = first.stderr.splitlines()
    assert line.startswith("onnx: building the int8 network (first use)"), line
    assert "8 recordings (the shipped LibriSpeech set)" in line
    again = run_audio("embed-speaker", clip, "--model", model, "--precision", "int8", "--json")
    assert again.returncode == 0 and again.stderr == "", again.stderr  # cached: silent
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(clip, own / "a.wav")
    built = run_audio("quantize", "--model", model, "--calibration", own)
    assert built.returncode == 0, built.stderr
    assert f"calibrating it on 1 recording ({own})" in built.stderr.splitlines()[0]
