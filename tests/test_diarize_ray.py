"""`diarize --ray`: runs join the session's local Ray (conftest.py `ray_address`) with the real
CAM++ weights; a run killed after its second shard is rerun to completion, and its turns are
those of the one-machine run; a further rerun takes only the failed input; other options
are refused on the same folder."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cli_run import kill_after_shards, run_audio
from signals import write_wav
from test_diarize_many import write_talks

pytest.importorskip("ray", reason="Ray (pip install 'audio-speaker[ray]') is not installed")
pytest.importorskip("ray.data", reason="Ray Data (pip install 'audio-speaker[ray]') is not "
                    "installed")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")

pytestmark = pytest.mark.slow

SPEECH = "data/speech/librispeech-test-other-10x10"
PAIRS = [(("1688", 0), ("3080", 0)), (("3080", 2), ("1688", 2)), (("1688", 4), ("3080", 4)),
         (("3080", 6), ("1688", 6))]


@pytest.fixture(scope="module")
def talks(shared_dir, tmp_path_factory):
    """Four conversations, a silent file and a corrupt one."""
    return write_talks(tmp_path_factory.mktemp("ray-talks"), shared_dir / SPEECH, PAIRS)


def inputs(count: int) -> str:
    return f"{count} input" + ("" if count == 1 else "s")


def turns_by_file(rows: list[dict]) -> dict[str, list]:
    found: dict[str, list] = {}
    for r in rows:
        found.setdefault(r["file"], []).append((r["start"], r["end"], r["speaker"], r["error"]))
    return {file: sorted(turns, key=str) for file, turns in found.items()}


def test_a_killed_run_resumes_to_the_one_machine_turns(ray_address, talks, campplus_dir,
                                                       tmp_path):
    out = tmp_path / "turns.parquet"
    args = [sys.executable, "-m", "audio_cli", "diarize", str(talks), "--model",
            str(campplus_dir), "--segmentation", "none", "--ray", "auto", "-o", str(out)]
    env = {**os.environ, "RAY_ADDRESS": ray_address}
    kill_after_shards(args, {**env, "AUDIO_RAY_SHARD_ROWS": "1"}, out, 2)
    partial = turns_by_file(pq.read_table(out).to_pylist())
    kept = [f for f, turns in partial.items() if turns[0][3] is None]  # not failed
    assert 0 < len(kept) < 6

    again = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 3, again.stderr
    assert f"audio: {inputs(len(kept))} already in {out}; {inputs(6 - len(kept))} to diarize" \
        in again.stderr
    assert again.stdout == ""
    assert not list(out.glob(".*")), "a scratch file was left behind"
    shards = [pq.read_table(s).column("file").to_pylist() for s in out.glob("part-*.parquet")]
    files = [f for shard in shards for f in set(shard)]
    assert sorted(files) == sorted(set(files)) and len(files) == 6  # each in one shard
    rows = pq.read_table(out).to_pylist()
    assert len({r["settings"] for r in rows}) == 1
    ray_turns = turns_by_file(rows)
    corrupt, quiet = str(talks / "corrupt.wav"), str(talks / "quiet.wav")
    assert "not a readable audio file" in ray_turns.pop(corrupt)[0][3]
    assert ray_turns.pop(quiet) == [(None, None, None, None)]  # done, without speech

    one = tmp_path / "one.parquet"
    single = run_audio("diarize", talks, "--model", campplus_dir, "--segmentation", "none",
                       "-o", one)
    assert single.returncode == 3, single.stderr
    one_turns = turns_by_file(pq.read_table(one).to_pylist())
    one_turns.pop(corrupt)
    assert ray_turns == one_turns and len(one_turns) == len(PAIRS)

    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 3, rerun.stderr  # only the corrupt file is tried again
    assert f"audio: 5 inputs already in {out}; 1 input to diarize" in rerun.stderr
    assert turns_by_file(pq.read_table(out).to_pylist()) == turns_by_file(rows)

    before = sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir())
    other = run_audio("diarize", talks, "--model", campplus_dir, "--segmentation", "none",
                      "--speakers", "1", "--ray", "auto", "-o", out)
    assert other.returncode == 2
    (line,) = other.stderr.splitlines()
    assert line.startswith(f"audio: error: --output {out}: holds turns made with other "
                           "models or options")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in out.iterdir()) == before


def test_a_folder_of_embeddings_is_refused_before_ray_starts(small_model_dir, tmp_path):
    """Shards of another kind (embed-speaker's rows: a one-machine Parquet file is one) are
    refused in one line, left as they were."""
    from signals import voiced

    clip = write_wav(tmp_path / "c.wav", voiced(2.0, seed=1))
    out = tmp_path / "out.parquet"
    out.mkdir()
    shard = out / "part-0.parquet"
    made = run_audio("embed-speaker", clip, clip, "--model", small_model_dir, "-o", shard)
    assert made.returncode == 0, made.stderr
    before = shard.read_bytes()
    proc = run_audio("diarize", clip, "--model", small_model_dir, "--segmentation", "none",
                     "--ray", "local", "-o", out)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"audio: error: {shard}: not a diarize --ray shard of audio (no column file, settings)"]
    assert [p.name for p in out.iterdir()] == ["part-0.parquet"] and shard.read_bytes() == before
