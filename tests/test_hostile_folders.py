"""Issue 26, hostile inputs inside folders: `embed-speaker DIR`, `index DIR` and `eval` take
regular files only. A FIFO, socket or dangling link found in a folder is a failed input (one
`audio: error:` line, never opened: a FIFO would block forever), the rest is processed and the
run exits 3. The FIFO runs go to a child process with a timeout, so a regression fails."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from cli_run import run_audio, run_audio_process
from signals import voiced, write_wav

TIMEOUT = 120  # seconds: a run that opens the FIFO would wait for a writer forever


@pytest.fixture
def folder(tmp_path) -> Path:
    """Two good recordings in a folder (more are added by each test)."""
    data = tmp_path / "data"
    data.mkdir()
    write_wav(data / "a.wav", voiced(1.5, f0=120.0, seed=1))
    write_wav(data / "c.wav", voiced(1.5, f0=200.0, seed=2))
    return data


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("audio: error:")]


def test_embed_skips_a_fifo_in_a_folder(folder, small_model_dir):
    os.mkfifo(folder / "b.wav")
    proc = run_audio_process("embed-speaker", folder, "--model", small_model_dir, "--json",
                             timeout=TIMEOUT)
    assert proc.returncode == 3, proc.stderr
    assert error_lines(proc.stderr) == [
        f"audio: error: {folder / 'b.wav'}: not a regular file (a FIFO); skipped",
        "audio: error: 1 of 3 inputs failed"]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    good = [r["file"] for r in records if r.get("embedding")]
    assert good == [str(folder / "a.wav"), str(folder / "c.wav")]


def test_index_skips_a_fifo_in_a_folder(folder, small_model_dir, tmp_path):
    os.mkfifo(folder / "b.wav")
    db = tmp_path / "store.db"
    proc = run_audio_process("index", folder, "--model", small_model_dir, "--db", db,
                             "--json", timeout=TIMEOUT)
    assert proc.returncode == 3, proc.stderr
    assert error_lines(proc.stderr) == [
        f"audio: error: {folder / 'b.wav'}: not a regular file (a FIFO); skipped"]
    report = json.loads(proc.stdout)
    assert (report["found"], report["added"], len(report["failed"])) == (3, 2, 1)


def test_index_skips_a_dangling_link_in_a_folder(folder, small_model_dir, tmp_path):
    (folder / "b.wav").symlink_to(tmp_path / "gone.wav")
    db = tmp_path / "store.db"
    for run in range(2):  # every run: the good files in, the link reported
        proc = run_audio("index", folder, "--model", small_model_dir, "--db", db, "--json")
        assert proc.returncode == 3, proc.stderr
        assert "internal error" not in proc.stderr
        assert error_lines(proc.stderr) == [
            f"audio: error: {folder / 'b.wav'}: a dangling link; skipped"]
        report = json.loads(proc.stdout)
        assert (report["added"], report["unchanged"]) == ((2, 0) if run == 0 else (0, 2))


def test_embed_and_index_skip_a_socket_in_a_folder(folder, small_model_dir, tmp_path):
    path = folder / "b.wav"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
    except OSError as exc:  # a path too long for AF_UNIX, or no such sockets here
        server.close()
        pytest.skip(f"cannot make a Unix socket here ({exc})")
    try:
        proc = run_audio("embed-speaker", folder, "--model", small_model_dir, "--json")
        assert proc.returncode == 3, proc.stderr
        assert error_lines(proc.stderr) == [
            f"audio: error: {path}: not a regular file (a socket); skipped",
            "audio: error: 1 of 3 inputs failed"]
        proc = run_audio("index", folder, "--model", small_model_dir,
                         "--db", tmp_path / "store.db", "--json")
        assert proc.returncode == 3, proc.stderr
        assert json.loads(proc.stdout)["added"] == 2
    finally:
        server.close()


def test_eval_skips_a_fifo_in_a_speaker_folder(small_model_dir, tmp_path):
    data = tmp_path / "eval"
    for s, f0 in enumerate((110.0, 220.0)):
        (data / f"spk{s}").mkdir(parents=True)
        for i in range(2):
            write_wav(data / f"spk{s}" / f"{i}.wav", voiced(1.5, f0=f0, seed=10 * s + i))
    os.mkfifo(data / "spk0" / "2.wav")
    proc = run_audio_process("eval", data, "--model", small_model_dir, "--json",
                             timeout=TIMEOUT)
    assert proc.returncode == 3, proc.stderr
    assert error_lines(proc.stderr) == [
        f"audio: error: {data / 'spk0' / '2.wav'}: not a regular file (a FIFO); skipped"]
    assert json.loads(proc.stdout)["files"] == 4


def test_diarize_skips_a_fifo_in_a_folder(folder, small_model_dir):
    os.mkfifo(folder / "b.wav")
    proc = run_audio_process("diarize", folder, "--model", small_model_dir, "--segmentation",
                             "none", "--json", timeout=TIMEOUT)
    assert proc.returncode == 3, proc.stderr
    assert error_lines(proc.stderr)[0] == (
        f"audio: error: {folder / 'b.wav'}: not a regular file (a FIFO); skipped")
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert {r["file"] for r in records if "error" in r} == {str(folder / "b.wav")}


def test_diarize_refuses_a_recording_over_max_duration(folder, small_model_dir):
    result = run_audio("diarize", folder / "a.wav", "--model", small_model_dir,
                       "--segmentation", "none", "--max-duration", "1")
    assert result.returncode == 3
    assert "too long (1.50 s); at most 1 s is accepted (--max-duration)" in result.stderr
