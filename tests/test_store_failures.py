"""Issue 26: a failed command leaves no new store behind and an existing one as it was; a full
disk or an I/O error while writing an output, an export or the store is one line naming the
path, exit 7 (README "Exit status"), with nothing half-written.

Full disks are made two ways: a real 64 KiB tmpfs where this process may mount one (root on
Linux; the tests skip otherwise, saying why), and in this process by making the lowest write
call we reach fail as the system would (SQLite's `database or disk is full`, an OSError with
ENOSPC or EIO from the array writer)."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import run_audio
from signals import voiced, write_wav
from store_helpers import make_model

import audio_cli.store.db as db_module

SIDE = ("-wal", "-shm", "-journal", ".vectors")


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("failures")
    audio = root / "audio"
    audio.mkdir()
    files = [write_wav(audio / f"v{i}.wav", voiced(1.5, f0=110 + 45 * i, seed=i))
             for i in range(3)]
    silent = write_wav(audio / "silent.wav", voiced(1.5) * 0)
    return {"root": root, "model": make_model(root / "model"), "files": files,
            "silent": silent}


def leftovers(db: Path) -> list[str]:
    """The store file and the files SQLite or the vector files keep beside it, if present."""
    return [p.name for p in [db, *(db.with_name(db.name + s) for s in SIDE)] if p.exists()]


def dump(db: Path) -> list:
    """Every speaker and exemplar of a store (to compare before and after)."""
    with sqlite3.connect(db) as conn:
        return [conn.execute("SELECT id, name FROM speakers ORDER BY id").fetchall(),
                conn.execute("SELECT id, speaker_id, source, vector FROM exemplars ORDER BY id"
                             ).fetchall()]


# ---------------------------------------------------------------- a failed command, no new store

def test_index_from_a_corrupt_parquet_leaves_no_new_store(env, tmp_path):
    bad = tmp_path / "corrupt.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    db = tmp_path / "new.db"
    proc = run_audio("index", "--from", bad, "--model", env["model"], "--db", db)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and str(bad) in proc.stderr
    assert leftovers(db) == []


def test_enroll_of_silent_audio_into_a_new_store_leaves_none(env, tmp_path):
    db = tmp_path / "new.db"
    proc = run_audio("enroll", "ann", env["silent"], "--model", env["model"], "--db", db)
    assert proc.returncode == 3, proc.stderr
    assert leftovers(db) == []


def test_index_of_a_folder_where_every_file_fails_leaves_no_new_store(env, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.wav").write_bytes(b"RIFF not audio")
    db = tmp_path / "new.db"
    proc = run_audio("index", folder, "--model", env["model"], "--db", db)
    assert proc.returncode == 3, proc.stderr
    assert leftovers(db) == []


def test_a_failed_command_never_removes_an_existing_store(env, tmp_path):
    db = tmp_path / "s.db"
    ok = run_audio("enroll", "ann", *env["files"][:2], "--model", env["model"], "--db", db)
    assert ok.returncode == 0, ok.stderr
    before = dump(db)
    failed = run_audio("enroll", "bob", env["files"][2], env["silent"], "--model",
                       env["model"], "--db", db)
    assert failed.returncode == 3, failed.stderr
    assert db.exists() and dump(db) == before


def export_with_bad_exemplars(env, tmp_path: Path) -> Path:
    """An export of one speaker, `ann`, whose every exemplar holds NaN."""
    source = tmp_path / "source.db"
    ok = run_audio("enroll", "ann", *env["files"][:2], "--model", env["model"], "--db", source)
    assert ok.returncode == 0, ok.stderr
    out = tmp_path / "ann.json"
    assert run_audio("speakers", "export", out, "--db", source).returncode == 0
    document = json.loads(out.read_text())
    for exemplar in document["speakers"][0]["exemplars"]:
        exemplar["vector"] = [float("nan")] * len(exemplar["vector"])
    out.write_text(json.dumps(document))
    return out


def test_import_of_only_refused_exemplars_adds_no_speaker(env, tmp_path):
    export = export_with_bad_exemplars(env, tmp_path)
    db = tmp_path / "s.db"
    assert run_audio("enroll", "bob", env["files"][2], "--model", env["model"],
                     "--db", db).returncode == 0
    proc = run_audio("speakers", "import", export, "--db", db)
    assert proc.returncode == 3, proc.stderr
    listing = json.loads(run_audio("speakers", "list", "--db", db, "--json").stdout)
    assert [s["name"] for s in listing["speakers"]] == ["bob"]


def test_import_of_only_refused_exemplars_into_a_new_store_leaves_none(env, tmp_path):
    export = export_with_bad_exemplars(env, tmp_path)
    db = tmp_path / "new.db"
    proc = run_audio("speakers", "import", export, "--db", db)
    assert proc.returncode == 3, proc.stderr
    assert leftovers(db) == []


# ---------------------------------------------------------------- a full disk, simulated

class _FullDisk:
    """An SQLite connection whose writes of rows fail as SQLite's do on a full disk."""

    def __init__(self, conn: sqlite3.Connection, message: str):
        self._conn, self._message = conn, message

    def _check(self, sql: str) -> None:
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise sqlite3.OperationalError(self._message)

    def execute(self, sql, *args):
        self._check(sql)
        return self._conn.execute(sql, *args)

    def executemany(self, sql, *args):
        self._check(sql)
        return self._conn.executemany(sql, *args)

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.fixture
def full_store(monkeypatch):
    """Every store opened from now on writes no row (`database or disk is full`)."""
    connect = db_module.Store._connect

    def failing(self, uri_mode=None):
        return _FullDisk(connect(self, uri_mode), "database or disk is full")

    monkeypatch.setattr(db_module.Store, "_connect", failing)


def test_enroll_into_a_new_store_on_a_full_disk_is_exit_7_and_leaves_no_file(
        env, tmp_path, full_store):
    db = tmp_path / "new.db"
    proc = run_audio("enroll", "ann", env["files"][0], "--model", env["model"], "--db", db)
    assert proc.returncode == 7, proc.stderr
    assert proc.stderr.splitlines() == [
        f"audio: error: {db}: no space left on device; the unfinished change was rolled back"]
    assert leftovers(db) == []


def test_enroll_into_an_existing_store_on_a_full_disk_keeps_it_as_it_was(env, tmp_path,
                                                                         monkeypatch):
    db = tmp_path / "s.db"
    assert run_audio("enroll", "ann", env["files"][0], "--model", env["model"],
                     "--db", db).returncode == 0
    before = dump(db)
    connect = db_module.Store._connect
    monkeypatch.setattr(db_module.Store, "_connect", lambda self, uri_mode=None: _FullDisk(
        connect(self, uri_mode), "disk I/O error"))
    proc = run_audio("enroll", "bob", env["files"][1], "--model", env["model"], "--db", db)
    monkeypatch.undo()
    assert proc.returncode == 7, proc.stderr
    assert proc.stderr.splitlines() == [
        f"audio: error: {db}: input/output error; the unfinished change was rolled back"]
    assert dump(db) == before


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_an_output_the_disk_refuses_is_one_line_exit_7_and_nothing_written(
        env, tmp_path, monkeypatch, code):
    import numpy as np

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(np.lib.format, "write_array", refuse)
    out = tmp_path / "out.npz"
    proc = run_audio("embed-speaker", *env["files"], "--model", env["model"], "-o", out)
    assert proc.returncode == 7, proc.stderr
    assert proc.stderr.splitlines()[-1] == (
        f"audio: error: {out}: {os.strerror(code).lower()}")
    assert list(tmp_path.iterdir()) == []  # no output, no scratch file


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_diarize_output_the_disk_refuses_is_one_line_exit_7(env, tmp_path, monkeypatch,
                                                              code):
    def refuse(self, *args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Path, "write_text", refuse)
    out = tmp_path / "turns.rttm"
    proc = run_audio("diarize", env["files"][0], "--model", env["model"], "--segmentation",
                     "none", "-o", out)
    assert proc.returncode == 7, proc.stderr
    assert proc.stderr.splitlines()[-1] == f"audio: error: {out}: {os.strerror(code).lower()}"
    assert list(tmp_path.iterdir()) == []  # no output, no scratch file


def test_an_export_the_disk_refuses_is_one_line_exit_7(env, tmp_path, monkeypatch):
    db = tmp_path / "s.db"
    assert run_audio("enroll", "ann", env["files"][0], "--model", env["model"],
                     "--db", db).returncode == 0
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "speakers.json"

    def refuse(self, *args, **kwargs):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(Path, "write_text", refuse)
    proc = run_audio("speakers", "export", out, "--db", db)
    monkeypatch.undo()
    assert proc.returncode == 7, proc.stderr
    assert proc.stderr.splitlines() == [
        f"audio: error: {out}: {os.strerror(errno.EDQUOT).lower()}"]
    assert list(out_dir.iterdir()) == []


# ---------------------------------------------------------------- a real full disk (tmpfs)

@pytest.fixture
def small_disk(tmp_path, request):
    """A 64 KiB tmpfs (or the size a test's parameter says) at tmp_path/disk, unmounted
    afterwards; skips where this process may not mount one (root, or CAP_SYS_ADMIN, on
    Linux)."""
    size = getattr(request, "param", "64k")
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("a real full disk needs a tmpfs, which only root may mount (Linux)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()})")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def fill(disk: Path) -> None:
    """Use up the file system's free space."""
    with open(disk / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 1024)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_on_a_real_full_disk_enroll_output_and_export_are_exit_7(env, tmp_path, small_disk):
    fill(small_disk)
    db = small_disk / "new.db"
    enroll = run_audio("enroll", "ann", env["files"][0], "--model", env["model"], "--db", db)
    assert enroll.returncode == 7, enroll.stderr
    assert enroll.stderr.splitlines()[-1].startswith(f"audio: error: {db}: ")
    assert leftovers(db) == []
    out = small_disk / "out.jsonl"
    embed = run_audio("embed-speaker", *env["files"], "--model", env["model"], "-o", out)
    assert embed.returncode == 7, embed.stderr
    assert embed.stderr.splitlines()[-1] == f"audio: error: {out}: no space left on device"
    store = tmp_path / "s.db"
    assert run_audio("enroll", "ann", env["files"][0], "--model", env["model"],
                     "--db", store).returncode == 0
    export = run_audio("speakers", "export", small_disk / "x.json", "--db", store)
    assert export.returncode == 7, export.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_on_a_read_only_file_system_an_export_or_output_is_exit_7(env, tmp_path, small_disk):
    remount = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True,
                             text=True)
    if remount.returncode != 0:
        pytest.skip(f"cannot remount the tmpfs read-only here ({remount.stderr.strip()})")
    store = tmp_path / "s.db"
    assert run_audio("enroll", "ann", env["files"][0], "--model", env["model"],
                     "--db", store).returncode == 0
    out = small_disk / "x.json"
    export = run_audio("speakers", "export", out, "--db", store)
    assert export.returncode == 7, export.stderr
    assert export.stderr.splitlines() == [f"audio: error: {out}: read-only file system"]
    npz = small_disk / "out.npz"
    embed = run_audio("embed-speaker", *env["files"], "--model", env["model"], "-o", npz)
    assert embed.returncode == 7, embed.stderr
    assert embed.stderr.splitlines()[-1] == f"audio: error: {npz}: read-only file system"


@pytest.mark.parametrize("small_disk", ["1m"], indirect=True)
def test_on_a_real_full_disk_an_existing_store_keeps_its_last_state(env, small_disk):
    db = small_disk / "s.db"
    ok = run_audio("enroll", "ann", env["files"][0], "--model", env["model"], "--db", db)
    assert ok.returncode == 0, ok.stderr
    before = dump(db)
    fill(small_disk)
    proc = run_audio("enroll", "bob", *env["files"][1:], "--model", env["model"], "--db", db)
    assert proc.returncode == 7, proc.stderr
    assert proc.stderr.splitlines() == [
        f"audio: error: {db}: no space left on device; the unfinished change was rolled back"]
    (small_disk / "filler").unlink()
    assert dump(db) == before
