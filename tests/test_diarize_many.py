"""`audio diarize DIR --output turns.parquet` over a folder of recordings: a broken file is an
error row and status 3, the others are diarized; a progress bar on a terminal's stderr; and
the usage mistakes of `--ray` that stop before anything runs."""

from __future__ import annotations

import os
import pty
import subprocess

import numpy as np
import pytest
import soundfile as sf
from cli_run import audio_cmd, run_audio
from signals import write_wav

SPEECH = "data/speech/librispeech-test-other-10x10"
# (reader, first utterance): two readers alternate in each conversation
PAIRS = [(("1688", 0), ("3080", 0)), (("3080", 2), ("1688", 2))]


def conversation(folder, pair) -> np.ndarray:
    """Two LibriSpeech readers taking two turns each, 0.5 s apart, at 16 kHz."""
    pieces = []
    for k in range(2):
        for reader, first in pair:
            files = sorted((folder / reader).glob("*.flac"))
            samples, rate = sf.read(files[first + k], dtype="float32")
            assert rate == 16000
            pieces += [samples, np.zeros(8000, np.float32)]
    return np.concatenate(pieces)


def write_talks(root, speech, pairs):
    """`root` holding a conversation per pair (talk0.wav, ...), a silent file and a corrupt
    one."""
    for i, pair in enumerate(pairs):
        write_wav(root / f"talk{i}.wav", conversation(speech, pair))
    write_wav(root / "quiet.wav", np.zeros(16000 * 4, np.float32))
    (root / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(300))
    return root


@pytest.fixture(scope="module")
def talks(shared_dir, tmp_path_factory):
    """A folder of two conversations, a silent file and a corrupt one."""
    return write_talks(tmp_path_factory.mktemp("talks"), shared_dir / SPEECH, PAIRS)


@pytest.mark.slow
def test_a_folder_to_parquet_keeps_going_past_a_broken_file(talks, campplus_dir, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")
    out = tmp_path / "turns.parquet"
    result = run_audio("diarize", talks, "--model", campplus_dir, "--segmentation", "none",
                       "--output", out)
    assert result.returncode == 3, result.stderr
    corrupt = str(talks / "corrupt.wav")
    assert f"audio: error: {corrupt}: not a readable audio file" in result.stderr
    assert "audio: error: 1 of 4 inputs failed" in result.stderr
    rows = pq.read_table(out).to_pylist()
    errors = [r for r in rows if r["error"] is not None]
    assert [r["file"] for r in errors] == [corrupt] and errors[0]["speaker"] is None
    for i in range(len(PAIRS)):
        speakers = {r["speaker"] for r in rows if r["file"] == str(talks / f"talk{i}.wav")}
        assert len(speakers) == 2
    assert not any(r["file"].endswith("quiet.wav") for r in rows)  # no speech, no turns


@pytest.mark.slow
def test_a_progress_bar_on_a_terminal_and_the_turns_on_stdout(talks, campplus_dir):
    """stderr a terminal (a pseudo-terminal), stdout a pipe: the bar says `diarizing` and
    counts the inputs; stdout holds the tables only."""
    main, child = pty.openpty()
    proc = subprocess.Popen(audio_cmd("diarize", talks, "--model", campplus_dir,
                                      "--segmentation", "none"),
                            stdout=subprocess.PIPE, stderr=child, text=True,
                            env={**os.environ, "COLUMNS": "100"})
    os.close(child)
    seen = b""
    while True:
        try:
            block = os.read(main, 4096)
        except OSError:  # the child closed its end
            break
        if not block:
            break
        seen += block
    stdout = proc.stdout.read()
    assert proc.wait(timeout=300) == 3
    os.close(main)
    screen = seen.decode(errors="replace")
    assert "diarizing" in screen and "4/4" in screen
    assert "not a readable audio file" in screen
    assert "diarizing" not in stdout and "talk0.wav: 2 speakers" in stdout


@pytest.mark.parametrize("args,words", [
    (["DIR", "--ray", "local", "-o", "t.parquet", "--db", "S.db"],
     "--db, --plot and --reference are not available"),
    (["DIR", "--ray", "local", "-o", "t.parquet", "--plot", "p.png"],
     "--db, --plot and --reference are not available"),
    (["DIR", "--ray", "nowhere", "-o", "t.parquet"], "use local, auto or ray://HOST:PORT"),
    (["DIR", "--ray", "local"], "--ray writes to --output DIR.parquet"),
    (["DIR", "--ray", "local", "-o", "t.rttm"], "--ray writes to --output DIR.parquet"),
    (["DIR", "--ray", "local", "-o", "t.parquet", "--json"], "--json is not available"),
    (["-", "--ray", "local", "-o", "t.parquet"], "not stdin"),
])
def test_ray_usage_mistakes_are_one_line_and_status_2(args, words, tmp_path):
    """Refused before Ray starts or a model is read (the model named does not exist)."""
    write_wav(tmp_path / "a.wav", np.zeros(16000, np.float32))
    args = [str(tmp_path) if a == "DIR" else a for a in args]
    proc = run_audio("diarize", *args, "--model", "no-such-model", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("audio: error:") and words in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_one_missing_input_is_one_line(tmp_path):
    """A single input that cannot be read: its one error line, no "1 of 1 input failed"
    summary after it, and status 3."""
    proc = run_audio("diarize", tmp_path / "gone.wav", "--segmentation", "none")
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [f"audio: error: {tmp_path / 'gone.wav'}: no such file"]
