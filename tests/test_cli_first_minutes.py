"""The first ten minutes with `audio`: bad option values, the help, output that reads well at
80 columns, missing inputs said first, plurals. Runs the real CLI: in-process through its
entry point, and in a child process on a pseudo-terminal where the terminal matters."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
from pathlib import Path

import pytest
from cli_run import audio_cmd, run_audio
from signals import voiced, write_wav


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("clips")
    return [write_wav(folder / f"clip{i}.wav", voiced(1.5, seed=i)) for i in range(3)]


def one_error_line(proc, *words: str) -> None:
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("audio: error:"), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    for word in words:
        assert word in lines[0], proc.stderr


@pytest.mark.parametrize("command, option", [
    (["embed-speaker", "CLIP", "--window", "nan"], "--window"),
    (["embed-speaker", "CLIP", "--window", "inf"], "--window"),
    (["embed-speaker", "CLIP", "--window", "1", "--hop", "inf"], "--hop"),
    (["embed-speaker", "CLIP", "--window", "-1"], "--window"),
    (["embed-speaker", "CLIP", "--min-duration", "nan"], "--min-duration"),
    (["embed-speaker", "CLIP", "--min-duration", "-0.5"], "--min-duration"),
    (["search", "CLIP", "--min-score", "nan"], "--min-score"),
    (["search", "CLIP", "--min-score", "2"], "--min-score"),
    (["compare", "CLIP", "CLIP", "--threshold", "nan"], "--threshold"),
    (["identify", "CLIP", "--threshold", "-inf"], "--threshold"),
    (["enroll", "x", "CLIP", "--min-duration", "inf"], "--min-duration"),
    (["eval", "DIR", "--min-duration", "nan"], "--min-duration"),
])
def test_bad_number_values_exit_2_naming_the_option(command, option, clips, small_model_dir,
                                                    tmp_path):
    args = [str(clips[0]) if a == "CLIP" else str(clips[0].parent) if a == "DIR" else a
            for a in command]
    proc = run_audio(*args, "--model", small_model_dir, env={"AUDIO_DB": str(tmp_path / "s.db")})
    assert proc.returncode == 2, proc.stderr
    one_error_line(proc, option)
    assert proc.stdout == "" and not (tmp_path / "s.db").exists()


def test_too_many_threads_are_capped_with_a_warning(clips, small_model_dir):
    proc = run_audio("embed-speaker", clips[0], "--model", small_model_dir, "--json",
                     "--threads", "1000")
    assert proc.returncode == 0, proc.stderr
    assert '"embedding"' in proc.stdout
    (line,) = proc.stderr.splitlines()
    assert line.startswith("audio: warning:") and "--threads 1000" in line
    assert str(len(os.sched_getaffinity(0))) in line
    zero = run_audio("embed-speaker", clips[0], "--model", small_model_dir, "--threads", "0")
    assert zero.returncode == 2
    one_error_line(zero, "--threads")


@pytest.mark.parametrize("command", [["embed-speaker"], ["identify"], ["enroll"], ["search"],
                                     ["speakers", "export"], ["eval"], []])
def test_help_shows_no_type_labels(command):
    proc = run_audio(*command, "--help", env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    for label in ("<bool>", "<str>", "<list[str]>", "<float>", "<int>", "{", "<Path>"):
        assert label not in proc.stdout, (label, proc.stdout)
    if command == ["embed-speaker"]:
        assert "INPUT..." in proc.stdout and "SECONDS" in proc.stdout
        assert "--json " in proc.stdout and "--output" in proc.stdout
    if command == ["speakers", "export"]:
        assert "New JSON file" in proc.stdout  # the argument is described


@pytest.mark.parametrize("command", [[], ["speakers"]])
def test_bare_group_prints_help_without_an_empty_error(command):
    proc = run_audio(*command)
    assert proc.returncode == 2
    assert "Usage: audio" in proc.stdout + proc.stderr
    assert "error" not in proc.stderr


def test_summary_never_cuts_a_long_path(small_model_dir, tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / ("and-another-one-" * 4)
    deep.mkdir(parents=True)
    clip = write_wav(deep / "recording-with-a-long-name.wav", voiced(1.5))
    proc = run_audio("embed-speaker", clip, "--model", small_model_dir, env={"COLUMNS": "80"})
    assert proc.returncode == 0, proc.stderr
    assert str(clip) in proc.stdout and "…" not in proc.stdout


def run_in_terminal(args: list, columns: int = 80) -> str:
    """Run the CLI with stdout on a pseudo-terminal `columns` wide; returns what it showed."""
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "TERM": "xterm"}
    proc = subprocess.Popen(audio_cmd(*args), stdout=follower, stderr=subprocess.DEVNULL, env=env)
    os.close(follower)
    shown = read_terminal(leader)
    proc.wait(timeout=300)
    os.close(leader)
    return shown.decode()


def read_terminal(leader: int) -> bytes:
    """All a pseudo-terminal shows until the process on it closes it."""
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 300)
        try:
            chunk = os.read(leader, 65536) if ready else b""
        except OSError:  # the terminal closed
            chunk = b""
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_many_file_table_keeps_each_path_on_one_line_at_80_columns(small_model_dir, tmp_path):
    folder = tmp_path / "a-folder-with-a-fairly-long-name" / "another-long-folder-name"
    folder.mkdir(parents=True)
    files = [write_wav(folder / f"speaker-{i}-session-recording.wav", voiced(1.5, seed=i))
             for i in range(3)]
    text = run_in_terminal(["embed-speaker", *files, "--model", small_model_dir])
    lines = [line for line in text.replace("\r", "").splitlines() if line.strip()]
    assert len(lines) == 4, text  # the header and one line per file
    for path in files:
        assert sum(str(path) in line for line in lines) == 1, text


def test_the_progress_bar_moves_while_the_files_are_embedded(small_model_dir, tmp_path):
    """With stderr on a terminal the bar shows counts between none and all done: the files
    go to the model a few at a time, not all in one call that ends with the run."""
    files = [write_wav(tmp_path / f"long{i}.wav", voiced(20.0, seed=i)) for i in range(12)]
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "100", "LINES": "50", "TERM": "xterm"}
    proc = subprocess.Popen(audio_cmd("embed-speaker", *files, "--model", small_model_dir,
                                      "--json"), stdout=subprocess.PIPE, stderr=follower,
                            env=env)
    os.close(follower)
    shown = read_terminal(leader)
    out, _ = proc.communicate(timeout=300)
    os.close(leader)
    assert proc.returncode == 0
    assert len(out.splitlines()) == 12
    counts = {int(n) for n in re.findall(rb"embedding\S*\s.*?(\d+)/12", shown)}
    assert counts & set(range(1, 12)), shown.decode(errors="replace")


def test_counts_are_singular_or_plural(clips, small_model_dir, tmp_path):
    one = run_audio("embed-speaker", clips[0], "--model", small_model_dir, "-o",
                    tmp_path / "one.npz")
    assert one.returncode == 0, one.stderr
    assert "wrote 1 embedding to" in one.stderr
    three = run_audio("embed-speaker", *clips, "--model", small_model_dir, "-o",
                      tmp_path / "three.npz")
    assert "wrote 3 embeddings to" in three.stderr
    db = tmp_path / "s.db"
    enrolled = run_audio("enroll", "ann", clips[0], "--model", small_model_dir, "--db", db)
    assert enrolled.returncode == 0, enrolled.stderr
    assert "1 exemplar " in enrolled.stdout and "1 exemplars" not in enrolled.stdout


@pytest.mark.parametrize("command", [
    ["embed-speaker", "MISSING"],
    ["embed-speaker", "MISSING", "MISSING2"],
    ["embed-speaker", "MISSING", "--json"],
])
def test_a_missing_input_is_said_before_the_model_is_fetched(command, tmp_path):
    """No model can be had (an unknown name), yet the missing file is what the user hears of."""
    args = [str(tmp_path / "missing.wav") if a == "MISSING" else
            str(tmp_path / "gone.wav") if a == "MISSING2" else a for a in command]
    proc = run_audio(*args, "--model", "no-such-model")  # resolving it is a model error, 4
    assert proc.returncode == 3, proc.stderr
    assert "no such file" in proc.stderr and "model" not in proc.stderr


@pytest.mark.parametrize("command, status", [
    # compare and identify answer with their status: every error is 2 (README, Exit status)
    (["compare", "MISSING", "MISSING"], 2), (["identify", "MISSING"], 2),
    # the other commands: bad input audio is 3
    (["search", "MISSING"], 3), (["enroll", "x", "MISSING"], 3)])
def test_store_commands_check_inputs_before_the_model(command, status, tmp_path):
    args = [str(tmp_path / "missing.wav") if a == "MISSING" else a for a in command]
    proc = run_audio(*args, "--model", "no-such-model", env={"AUDIO_DB": str(tmp_path / "s.db")})
    assert proc.returncode == status, proc.stderr
    one_error_line(proc, "no such file")


def test_every_command_names_the_model_alike_with_its_digest(clips, small_model_dir, tmp_path):
    import hashlib
    import json

    model = str(small_model_dir)
    sha = hashlib.sha256()  # the identity: config and weights files, by name then bytes
    for path in sorted(small_model_dir.iterdir()):
        if path.suffix in (".json", ".safetensors"):
            sha.update(path.name.encode() + b"\0" + path.read_bytes())
    digest = sha.hexdigest()[:16]
    db = tmp_path / "s.db"
    documents = []
    for args in (["embed-speaker", clips[0]], ["embed-speaker", *clips],
                 ["compare", clips[0], clips[1], "--threshold", "-1"],
                 ["enroll", "ann", clips[0], "--db", db], ["identify", clips[1], "--db", db],
                 ["index", clips[2], "--db", db], ["search", clips[2], "--db", db]):
        proc = run_audio(*args, "--model", model, "--json")
        assert proc.returncode in (0, 1), proc.stderr
        documents += [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(documents) == 9
    assert {d["model"] for d in documents} == {model}
    assert {d["model_digest"] for d in documents} == {digest}
    text = run_audio("enroll", "bob", clips[1], "--db", db, "--model", model)
    assert f"({model})" in text.stdout
