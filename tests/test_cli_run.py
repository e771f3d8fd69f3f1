"""The tests' CLI runner (tests/cli_run.py): an in-process run answers as a child process does
and leaves the test process as it found it."""

from __future__ import annotations

import os
import signal
import warnings

import pytest
from cli_run import run_audio, run_audio_process


def test_in_process_and_child_process_runs_answer_alike(tmp_path):
    args = ("embed-speaker", tmp_path / "missing.wav", tmp_path / "gone.wav", "--model",
            "no-such-model", "--json")
    here, child = run_audio(*args), run_audio_process(*args)
    assert (here.returncode, here.stdout, here.stderr) == (
        child.returncode, child.stdout, child.stderr)
    assert here.returncode == 3 and here.stderr.count("no such file") == 2


def test_a_run_leaves_the_process_as_it_found_it(tmp_path, small_model_dir):
    clip = tmp_path / "none.wav"
    before = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # main() installs its own over it
    try:
        show, filters = warnings.showwarning, list(warnings.filters)
        cwd, environ = os.getcwd(), dict(os.environ)
        proc = run_audio("embed-speaker", clip, "--model", small_model_dir, cwd=tmp_path,
                         env={"AUDIO_DB": str(tmp_path / "s.db")})
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, before)
    assert proc.returncode == 3
    assert (warnings.showwarning, warnings.filters) == (show, filters)
    assert (os.getcwd(), dict(os.environ)) == (cwd, environ)


def test_settings_read_at_import_need_a_child_process():
    with pytest.raises(ValueError, match="run_audio_process"):
        run_audio("--version", env={"HF_HUB_OFFLINE": "1"})
