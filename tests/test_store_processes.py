"""The store under concurrent writers and a killed indexer (real processes, real SQLite)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_run import audio_cmd, run_audio
from signals import voiced, write_wav
from store_helpers import make_model, make_speakers

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="uses SIGKILL")


def test_four_processes_enrolling_at_once_lose_nothing(tmp_path):
    model = make_model(tmp_path / "model")
    files = make_speakers(tmp_path / "audio", per_speaker=3)
    db = tmp_path / "s.db"  # does not exist yet: the four also race to create it
    procs = [subprocess.Popen(audio_cmd("enroll", f"spk{s}", *files[s], "--model", model,
                                        "--db", db, "--json"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for s in range(4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outputs]
    listing = json.loads(run_audio("speakers", "list", "--db", db, "--json").stdout)
    counts = {s["name"]: sum(s["exemplars"].values()) for s in listing["speakers"]}
    assert counts == {f"spk{s}": 3 for s in range(4)}


def _rows(db) -> list[tuple[str, bytes]]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return conn.execute("SELECT path, vector FROM recordings").fetchall()
    finally:
        conn.close()


@pytest.mark.slow
def test_killed_index_leaves_a_store_the_next_run_completes(tmp_path):
    model = make_model(tmp_path / "model")
    folder = tmp_path / "lib"
    folder.mkdir()
    total = 400
    for i in range(total):
        write_wav(folder / f"f{i:03d}.wav", voiced(1.0, f0=90 + i % 200, seed=i))
    db = tmp_path / "s.db"
    proc = subprocess.Popen(audio_cmd("index", folder, "--model", model, "--db", db),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    committed = 0
    while committed == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
        if db.exists():
            try:
                conn = sqlite3.connect(db, timeout=5)
                committed = conn.execute("SELECT count(*) FROM recordings").fetchone()[0]
                conn.close()
            except sqlite3.OperationalError:  # schema not created yet
                pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "index finished before it could be killed"
    rows = _rows(db)
    print(f"killed with {len(rows)} of {total} recordings committed")
    assert 0 < len(rows) < total
    assert all(len(blob) == 4 * 32 and np.isfinite(np.frombuffer(blob, "<f4")).all()
               for _, blob in rows)
    rerun = run_audio("index", folder, "--model", model, "--db", db, "--json")
    assert rerun.returncode == 0, rerun.stderr
    doc = json.loads(rerun.stdout)
    assert doc["unchanged"] >= len(rows) and doc["added"] + doc["unchanged"] == total
    final = _rows(db)
    assert sorted(p for p, _ in final) == sorted(str(p) for p in folder.glob("*.wav"))
