"""Stores and signals from the command line: --db folders, read-only stores, "exists" refusals,
calibration on few pairs, and SIGTERM/SIGHUP leaving nothing behind. Real CLI: in-process, and
in child processes for signals and a read-only mount."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_run import audio_cmd, run_audio
from signals import voiced, write_wav
from store_helpers import make_model, make_speakers


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("stores")
    return {"model": make_model(root / "model"), "files": make_speakers(root / "audio"),
            "root": root}


def enrolled_store(env, path: Path) -> Path:
    for name, files in (("ann", env["files"][0]), ("bob", env["files"][1])):
        proc = run_audio("enroll", name, *files[:2], "--model", env["model"], "--db", path)
        assert proc.returncode == 0, proc.stderr
    return path


def test_db_in_a_missing_folder_is_refused_like_output(env, tmp_path):
    db = tmp_path / "no-such-folder" / "store.sqlite3"
    proc = run_audio("enroll", "ann", env["files"][0][0], "--model", env["model"], "--db", db)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("audio: error:") and "--db" in line and str(db.parent) in line
    assert not db.parent.exists()


def readonly_runner(folder: Path):
    """A function running `audio ARGS` that sees `folder` read-only: a read-only bind mount
    for root (who ignores file modes), else a 0444 file in a 0555 folder."""
    if os.geteuid() != 0:
        for path in folder.iterdir():
            path.chmod(0o444)
        folder.chmod(0o555)
        return lambda *args: run_audio(*args)
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare(1): no way to make a read-only store")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("running as root where mount namespaces are not allowed (unshare -m)")

    def run(*args):
        command = " ".join(f"'{a}'" for a in audio_cmd(*args))
        script = (f"mount --bind '{folder}' '{folder}' && mount -o remount,bind,ro '{folder}' "
                  f"&& exec {command}")
        return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True,
                              text=True, timeout=300)
    return run


def test_a_read_only_store_can_be_read_and_refuses_writes_in_one_line(env, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    db = enrolled_store(env, folder / "store.sqlite3")
    # what another process leaves while it has the store open: a -wal file without -shm
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("UPDATE speakers SET created = created")
    shutil.copy(db.with_name(db.name + "-wal"), tmp_path / "wal")
    conn.close()  # checkpoints and removes the -wal and -shm
    shutil.copy(tmp_path / "wal", db.with_name(db.name + "-wal"))
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    run = readonly_runner(folder)
    try:
        listed = run("speakers", "list", "--db", db, "--json")
        assert listed.returncode == 0, listed.stderr
        assert [s["name"] for s in json.loads(listed.stdout)["speakers"]] == ["ann", "bob"]
        who = run("identify", env["files"][0][2], "--model", env["model"], "--db", db, "--json")
        assert who.returncode in (0, 1), who.stderr
        assert json.loads(who.stdout)["candidates"][0]["name"] in ("ann", "bob")
        exported = run("speakers", "export", tmp_path / "out.json", "--db", db)
        assert exported.returncode == 0, exported.stderr
        assert "2 speakers" in exported.stdout
        for args in (["enroll", "cid", env["files"][2][0], "--model", env["model"]],
                     ["speakers", "remove", "ann"]):
            refused = run(*args, "--db", db)
            assert refused.returncode == 6, refused.stderr
            (line,) = refused.stderr.splitlines()
            assert line.startswith("audio: error:") and "read-only" in line
    finally:
        folder.chmod(0o755)
        for path in folder.iterdir():
            path.chmod(0o644)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_existing_outputs_are_refused_with_status_2_everywhere(env, tmp_path):
    existing = tmp_path / "taken.mlpackage"
    existing.mkdir()
    coreml = run_audio("export-coreml", existing, "--model", env["model"])
    assert coreml.returncode == 2, coreml.stderr
    assert "exists; not overwriting" in coreml.stderr
    taken = tmp_path / "taken.json"
    taken.write_text("{}")
    db = enrolled_store(env, tmp_path / "s.db")
    export = run_audio("speakers", "export", taken, "--db", db)
    assert export.returncode == 2 and "exists; not overwriting" in export.stderr
    taken_jsonl = tmp_path / "taken.jsonl"
    taken_jsonl.write_text("{}")
    output = run_audio("embed-speaker", env["files"][0][0], "--model", env["model"], "-o",
                       taken_jsonl)
    assert output.returncode == 2 and "exists; not overwriting" in output.stderr
    assert taken.read_text() == taken_jsonl.read_text() == "{}"


def test_calibration_on_few_pairs_warns_with_the_counts(env, tmp_path):
    db = enrolled_store(env, tmp_path / "s.db")
    proc = run_audio("calibrate", "--model", env["model"], "--db", db, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    (line,) = proc.stderr.splitlines()
    assert line.startswith("audio: warning:")
    assert f"{result['same_pairs']} same-speaker pair" in line
    assert f"{result['different_pairs']} different-speaker pair" in line


@pytest.fixture(scope="module")
def many_clips(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("many")
    clip = voiced(4.0)
    for i in range(300):
        write_wav(folder / f"c{i:03d}.wav", clip)
    return folder


@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP", "SIGINT"])
@pytest.mark.parametrize("suffix", [".npz", ".jsonl", pytest.param(".parquet", marks=(
    pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None,
                       reason="pyarrow (pip install 'audio-speaker[parquet]') is not installed")))
])  # .npy is only written at the end
def test_a_signal_during_output_leaves_nothing_behind(name, suffix, env, many_clips, tmp_path):
    number = getattr(signal, name, None)
    if number is None:
        pytest.skip(f"{name} does not exist on this platform")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / f"vectors{suffix}"
    # the child starts with the signal at its default, whatever this test run inherited
    # (under `nohup`, SIGHUP arrives ignored, and audio rightly keeps it ignored: see below)
    proc = subprocess.Popen(audio_cmd("embed-speaker", many_clips, "--model", env["model"],
                                      "-o", out),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(number, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not any(out_dir.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert any(out_dir.iterdir()), "the output's scratch file never appeared"
    assert proc.poll() is None, "the run ended before the signal could be sent"
    proc.send_signal(number)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + number, stderr
    assert stderr.strip().splitlines()[-1] == f"audio: error: interrupted by {name}"
    assert list(out_dir.iterdir()) == []


def test_an_ignored_sighup_stays_ignored(env, many_clips, tmp_path):
    """Under `nohup` (SIGHUP ignored) a hang-up does not stop the run."""
    if not hasattr(signal, "SIGHUP"):
        pytest.skip("SIGHUP does not exist on this platform")
    out = tmp_path / "vectors.npz"
    proc = subprocess.Popen(audio_cmd("embed-speaker", many_clips, "--model", env["model"],
                                      "-o", out),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while not any(tmp_path.iterdir()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGHUP)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert out.is_file()


def test_a_stopped_run_exits_128_plus_n_after_an_interrupt_inside_pyrun_string(tmp_path):
    """CPython ends a process by SIGINT, whatever its exit status, once a KeyboardInterrupt
    has escaped code run through PyRun_String (as extensions' imports can), even if the
    interrupt was caught later: a SIGTERM landing there gave status -2, not 143."""
    script = tmp_path / "child.py"
    script.write_text(
        "import ctypes, signal\n"
        "from audio_cli.cli import main\n"
        "from audio_cli.cli import signals as files\n"
        "run = ctypes.pythonapi.PyRun_String\n"
        "run.restype, run.argtypes = ctypes.py_object, [ctypes.c_char_p, ctypes.c_int,\n"
        "                                              ctypes.py_object, ctypes.py_object]\n"
        "try:\n"
        "    run(b'raise KeyboardInterrupt', 257, {}, {})\n"  # 257: Py_file_input
        "except KeyboardInterrupt:\n"
        "    files.received.append(signal.SIGTERM)\n"
        "main._stopped()\n", encoding="utf-8")
    # run with -m, as `audio` is: a script's SystemExit leaves through Py_Exit, which never
    # looks at that flag
    proc = subprocess.run([sys.executable, "-m", "child"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert proc.stderr.strip() == "audio: error: interrupted by SIGTERM"
