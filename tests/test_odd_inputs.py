"""`audio embed-speaker` on odd inputs, in a child process where the process's own stdin and
stderr matter (in this process for regular files): pipes, FIFOs, process
substitution, /dev/stdin, text or a terminal on stdin, truncated WAVs, narrow-band audio and
MP3s whose decoder complains. Also the same warnings through the Python API."""

from __future__ import annotations

import json
import os
import pty
import random
import shutil
import struct
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_run import run_audio as run_in_process
from cli_run import run_audio_process
from signals import voiced, write_wav

from audio_cli import cosine_similarity
from audio_cli.frontend.audio import from_samples, load_audio
from audio_cli.frontend.checks import InputAudioWarning

TIMEOUT = 120  # seconds for one CLI run; a run that waits on a terminal hits it


def run_audio(*args: str, stdin=None, input: bytes | None = None):
    """Run `python -m audio_cli ARGS` in a child process (bytes output): a real stdin (a pipe,
    a terminal: `stdin` may be a file descriptor) and the real stderr file descriptor, which
    decoder libraries write to."""
    return run_audio_process(*args, stdin=stdin, input=input, text=False, timeout=TIMEOUT)


def run_here(*args: str):
    """Run `audio ARGS` in this process (bytes output): regular files, Python-level output."""
    return run_in_process(*args, text=False)


def embed_args(path: str, model: Path) -> list[str]:
    return ["embed-speaker", path, "--model", str(model), "--json"]


def ok_record(proc) -> dict:
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def stderr_lines(proc) -> list[str]:
    return proc.stderr.decode().splitlines()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """2 s of 16 kHz mono voice-like audio."""
    return write_wav(tmp_path_factory.mktemp("odd") / "clip.wav", voiced(2.0))


@pytest.fixture(scope="module")
def reference(clip, small_model_dir) -> list[float]:
    """The clip's vector, embedded from the regular file."""
    proc = run_here(*embed_args(str(clip), small_model_dir))
    assert stderr_lines(proc) == []
    return ok_record(proc)["embedding"]


# ---------------------------------------------------------------- unseekable inputs


def test_fifo_with_a_writer_is_read_as_a_stream(clip, reference, small_model_dir, tmp_path):
    fifo = tmp_path / "voice.wav"
    os.mkfifo(fifo)
    failures = []

    def write() -> None:
        try:
            with open(fifo, "wb") as stream:  # blocks until a reader opens the FIFO
                stream.write(clip.read_bytes())
        except BrokenPipeError as exc:  # the reader closed without reading everything
            failures.append(exc)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    proc = run_audio(*embed_args(str(fifo), small_model_dir))
    # If the run never opened the FIFO, open it here so the writer can finish.
    unblock = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer.join(timeout=30)
    os.close(unblock)
    record = ok_record(proc)
    assert not failures
    assert record["file"] == str(fifo)
    assert record["duration"] == pytest.approx(2.0)
    assert cosine_similarity(record["embedding"], reference) > 0.99999


def test_dev_stdin_on_a_pipe_is_read_as_a_stream(clip, reference, small_model_dir):
    proc = run_audio(*embed_args("/dev/stdin", small_model_dir), input=clip.read_bytes())
    record = ok_record(proc)
    assert record["file"] == "/dev/stdin"
    assert cosine_similarity(record["embedding"], reference) > 0.99999


def test_process_substitution(clip, reference, small_model_dir):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed (process substitution is a bash feature)")
    command = '"$0" -m audio_cli embed-speaker <(cat "$1") --model "$2" --json'
    proc = subprocess.run([bash, "-c", command, sys.executable, str(clip), str(small_model_dir)],
                          capture_output=True, timeout=TIMEOUT)
    record = ok_record(proc)
    assert record["file"].startswith("/dev/fd/")
    assert cosine_similarity(record["embedding"], reference) > 0.99999


def test_empty_fifo_is_an_input_error(small_model_dir, tmp_path):
    fifo = tmp_path / "nothing.wav"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True)
    writer.start()
    proc = run_audio(*embed_args(str(fifo), small_model_dir))
    unblock = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    writer.join(timeout=30)
    os.close(unblock)
    assert proc.returncode == 3, proc.stderr.decode()
    assert stderr_lines(proc) == [f"audio: error: {fifo}: no data (empty input)"]


# ---------------------------------------------------------------- stdin: text, a terminal


def test_text_on_stdin_is_one_line_naming_stdin(small_model_dir):
    proc = run_audio(*embed_args("-", small_model_dir), input=b"this is not audio\n" * 20)
    assert proc.returncode == 3
    assert proc.stdout == b""
    lines = stderr_lines(proc)
    assert len(lines) == 1, lines
    assert lines[0].startswith("audio: error: stdin: not a readable audio file")
    assert "BytesIO" not in lines[0] and "0x" not in lines[0]


@pytest.mark.parametrize("args", [["-"], ["-", "other.wav"], ["@-"]],
                         ids=["alone", "with a file", "a list"])
def test_terminal_on_stdin_is_refused_at_once(args, small_model_dir):
    leader, follower = pty.openpty()
    try:
        proc = run_audio("embed-speaker", *args, "--model", str(small_model_dir), "--json",
                         stdin=follower)
    except subprocess.TimeoutExpired:
        pytest.fail("embed-speaker waited on a terminal instead of refusing it")
    finally:
        os.close(follower)
        os.close(leader)
    assert proc.returncode == 2, proc.stderr.decode()
    assert proc.stdout == b""
    lines = stderr_lines(proc)
    assert len(lines) == 1, lines
    assert lines[0].startswith("audio: error:")
    assert "terminal" in lines[0] and "audio embed-speaker" in lines[0]


# ---------------------------------------------------------------- warnings: truncated, 8 kHz


def _cut_wav(tmp_path: Path, seconds: float, keep: float) -> tuple[Path, np.ndarray]:
    """A 16-bit WAV whose header declares `seconds` but which holds only `keep` of them."""
    samples = voiced(seconds, seed=4)
    whole = write_wav(tmp_path / "whole.wav", samples)
    data = whole.read_bytes()
    header = len(data) - 2 * len(samples)  # 16-bit mono: 2 bytes a sample after the header
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: header + 2 * int(keep * 16000)])
    return cut, samples[: int(keep * 16000)]


def test_truncated_wav_is_embedded_with_a_warning(small_model_dir, tmp_path):
    cut, present = _cut_wav(tmp_path, 15.0, 5.0)
    intact = write_wav(tmp_path / "intact5s.wav", present)
    proc = run_here(*embed_args(str(cut), small_model_dir))
    record = ok_record(proc)
    assert stderr_lines(proc) == [
        f"audio: warning: {cut}: truncated: header says 15.00 s, 5.00 s present"]
    assert record["duration"] == pytest.approx(5.0)
    expected = ok_record(run_here(*embed_args(str(intact), small_model_dir)))["embedding"]
    assert cosine_similarity(record["embedding"], expected) > 0.99999


def test_wav_streamed_with_an_unknown_length_is_not_called_truncated(small_model_dir, tmp_path):
    # A WAV written to a pipe cannot go back to fill in its sizes: RIFF and data say 0xFFFFFFFF.
    data = bytearray(write_wav(tmp_path / "clip.wav", voiced(2.0)).read_bytes())
    assert data[36:40] == b"data"
    data[4:8] = data[40:44] = struct.pack("<I", 0xFFFFFFFF)
    proc = run_audio(*embed_args("-", small_model_dir), input=bytes(data))
    record = ok_record(proc)
    assert record["duration"] == pytest.approx(2.0)
    assert stderr_lines(proc) == []


def test_narrow_band_audio_is_embedded_with_a_warning(small_model_dir, tmp_path):
    call = write_wav(tmp_path / "call.wav", voiced(2.0, 8000), 8000)
    proc = run_here(*embed_args(str(call), small_model_dir))
    record = ok_record(proc)
    assert record["sample_rate"] == 8000
    assert stderr_lines(proc) == [
        f"audio: warning: {call}: 8000 Hz audio upsampled to 16000 Hz; speaker vectors from "
        "narrow-band audio are less reliable"]


def test_many_inputs_warn_once_each_and_still_embed(small_model_dir, tmp_path):
    cut, _ = _cut_wav(tmp_path, 6.0, 2.0)
    call = write_wav(tmp_path / "call.wav", voiced(2.0, 8000), 8000)
    fine = write_wav(tmp_path / "fine.wav", voiced(2.0))
    proc = run_here("embed-speaker", str(cut), str(call), str(fine), "--model",
                    str(small_model_dir), "--json")
    assert proc.returncode == 0, proc.stderr.decode()
    records = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [r["file"] for r in records] == [str(cut), str(call), str(fine)]
    assert all("embedding" in r for r in records)
    lines = stderr_lines(proc)
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"audio: warning: {cut}: truncated")
    assert lines[1].startswith(f"audio: warning: {call}: 8000 Hz")


def test_python_api_warns_too(tmp_path):
    cut, _ = _cut_wav(tmp_path, 15.0, 5.0)
    call = write_wav(tmp_path / "call.wav", voiced(2.0, 8000), 8000)
    with pytest.warns(InputAudioWarning, match="truncated: header says 15.00 s, 5.00 s"):
        assert load_audio(cut).duration == pytest.approx(5.0)
    with pytest.warns(InputAudioWarning, match="8000 Hz audio upsampled to 16000 Hz"):
        load_audio(call)
    with pytest.warns(InputAudioWarning, match="<samples>: 8000 Hz"):
        from_samples(voiced(1.0, 8000), 8000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ordinary 16 kHz file warns about nothing
        load_audio(write_wav(tmp_path / "fine.wav", voiced(1.0)))


# ---------------------------------------------------------------- MP3: decoder noise


def _mp3(path: Path, seconds: float) -> bytes:
    if "MP3" not in sf.available_formats():
        pytest.skip(f"libsndfile {sf.__libsndfile_version__} cannot write MP3 (needs >= 1.1 "
                    "built with LAME and mpg123)")
    sf.write(str(path), voiced(seconds), 16000, format="MP3")
    return path.read_bytes()


def _damage_side_info(data: bytes, frames: int, seed: int = 0) -> bytes:
    """Scramble the side information (bytes 4-8 after the sync word) of a few MPEG frames in
    the middle: libmpg123 reports each such frame on stderr and decodes on."""
    syncs = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] & 0xE0 == 0xE0]
    middle = syncs[len(syncs) // 4 : len(syncs) * 3 // 4]
    rng = random.Random(seed)
    damaged = bytearray(data)
    for start in rng.sample(middle, frames):
        for k in range(4, 9):
            damaged[start + k] = rng.randrange(256)
    return bytes(damaged)


def _raw_decoder_stderr(path: Path) -> str:
    """What libsndfile's MP3 decoder prints on stderr when `path` is read without the CLI."""
    code = "import soundfile, sys; soundfile.read(sys.argv[1])"
    return subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=TIMEOUT).stderr


def test_mp3_decoder_noise_never_reaches_the_terminal(small_model_dir, tmp_path):
    path = tmp_path / "noisy.mp3"
    path.write_bytes(_damage_side_info(_mp3(tmp_path / "clean.mp3", 5.0), frames=3))
    if not _raw_decoder_stderr(path).strip():
        pytest.skip("this libmpg123 prints nothing for the damaged frames")
    proc = run_audio(*embed_args(str(path), small_model_dir))
    record = ok_record(proc)
    assert record["duration"] == pytest.approx(5.0, abs=0.06)
    assert proc.stderr == b""


def test_mp3_that_fails_to_decode_is_one_line(small_model_dir, tmp_path):
    data = bytearray(_mp3(tmp_path / "clean.mp3", 3.0))
    rng = random.Random(1)
    for i in range(len(data) // 3, len(data) // 3 + 400):  # 400 bytes of garbage mid-stream
        data[i] = rng.randrange(256)
    path = tmp_path / "broken.mp3"
    path.write_bytes(bytes(data))
    proc = run_audio(*embed_args(str(path), small_model_dir))
    assert proc.returncode == 3, proc.stderr.decode()
    assert proc.stdout == b""
    lines = stderr_lines(proc)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"audio: error: {path}: ")


def test_decoding_in_threads_leaves_stderr_working(tmp_path, capfd):
    path = tmp_path / "noisy.mp3"
    path.write_bytes(_damage_side_info(_mp3(tmp_path / "clean.mp3", 5.0), frames=3))
    expected = load_audio(path).samples
    results: list[np.ndarray] = []
    threads = [threading.Thread(target=lambda: results.append(load_audio(path).samples))
               for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 4 and all(np.array_equal(r, expected) for r in results)
    os.write(2, b"still here\n")
    assert capfd.readouterr().err == "still here\n"
