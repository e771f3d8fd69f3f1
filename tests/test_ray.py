"""`embed-speaker --ray`: a real local Ray cluster (started once for the session, 2 CPUs:
conftest.py `ray_address`) that CLI runs join (`--ray auto` with RAY_ADDRESS); their Parquet
shards are compared with the one-machine run's Parquet file, and a killed run is rerun to
completion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import kill_after_shards, run_audio
from store_helpers import make_model
from test_parquet import SAME, without

ray = pytest.importorskip("ray", reason="Ray (pip install 'audio-speaker[ray]') is not installed")
pytest.importorskip("ray.data", reason="Ray Data (pip install 'audio-speaker[ray]') is not "
                    "installed")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed")

SPEECH = ("data/speech/librispeech-test-other-10x10",
          "data/speech/librispeech-train-clean-100-251x1")


def audio(*args, address: str, env: dict | None = None) -> tuple[list, dict]:
    """argv and environment for `audio ARGS` joining the session's Ray."""
    return [sys.executable, "-m", "audio_cli", *map(str, args)], {
        **os.environ, "RAY_ADDRESS": address, **(env or {})}


def run(*args, address: str, env: dict | None = None) -> subprocess.CompletedProcess:
    argv, full_env = audio(*args, address=address, env=env)
    return subprocess.run(argv, capture_output=True, text=True, env=full_env, timeout=1200)


@pytest.fixture(scope="module")
def corpus(shared_dir, tmp_path_factory) -> dict:
    """Every shared LibriSpeech file, a few of them, and a corrupt file beside them."""
    files = sorted(p for d in SPEECH for p in (shared_dir / d).rglob("*.flac"))
    assert len(files) == 351
    root = tmp_path_factory.mktemp("ray-corpus")
    corrupt = root / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(300))
    few = files[:6] + files[-6:]
    (root / "few.txt").write_text("".join(f"{p}\n" for p in [*few, corrupt]))
    (root / "all.txt").write_text("".join(f"{p}\n" for p in [*files, corrupt]))
    return {"root": root, "few": f"@{root / 'few.txt'}", "all": f"@{root / 'all.txt'}",
            "count_few": len(few) + 1, "count_all": len(files) + 1, "corrupt": str(corrupt)}


def rows_by_path(path: Path) -> dict[str, dict]:
    rows = pq.read_table(path).to_pylist()
    by_path = {r["path"]: r for r in rows}
    assert len(by_path) == len(rows), "a path is written more than once"
    return by_path


def assert_same_rows(ray_out: Path, single_out: Path, corrupt: str, count: int) -> None:
    ray_rows, single_rows = rows_by_path(ray_out), rows_by_path(single_out)
    assert set(ray_rows) == set(single_rows) and len(ray_rows) == count
    worst = 1.0
    for path, one in single_rows.items():
        other = ray_rows[path]
        if path == corrupt:
            assert other["embedding"] is None and "not a readable audio file" in other["error"]
            continue
        assert other["error"] is None and (other["size"], other["mtime_ns"]) == (
            one["size"], one["mtime_ns"])
        a, b = np.asarray(one["embedding"]), np.asarray(other["embedding"])
        worst = min(worst, float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
    assert worst >= SAME
    print(f"lowest cosine over {count - 1} files: {worst:.7f}")


def one_machine(source: str, model: Path, out: Path) -> Path:
    proc = run_audio("embed-speaker", source, "--model", model, "--threads", "2", "-o", out)
    assert proc.returncode == 3, proc.stderr  # the corrupt file
    return out


def test_ray_run_gives_the_one_machine_vectors_and_resumes(ray_address, corpus, tmp_path):
    model = make_model(tmp_path / "model")
    out = tmp_path / "ray.parquet"
    proc = run("embed-speaker", corpus["few"], "--model", model, "--ray", "auto", "-o", out,
               address=ray_address)
    assert proc.returncode == 3, proc.stderr
    assert f"audio: error: {corpus['corrupt']}: not a readable audio file" in proc.stderr
    assert f"audio: ray: {corpus['count_few']}/{corpus['count_few']} inputs" in proc.stderr
    assert proc.stdout == ""
    assert not list(out.glob(".*")), "a scratch file was left behind"
    single = one_machine(corpus["few"], model, tmp_path / "one.parquet")
    assert_same_rows(out, single, corpus["corrupt"], corpus["count_few"])
    before = {p.name for p in out.iterdir()}
    again = run("embed-speaker", corpus["few"], "--model", model, "--ray", "auto", "-o", out,
                address=ray_address)
    assert again.returncode == 3, again.stderr  # only the failed input is tried again
    assert f"{corpus['count_few'] - 1} inputs already in {out}; 1 input to embed" in again.stderr
    assert_same_rows(out, single, corpus["corrupt"], corpus["count_few"])
    assert before - {p.name for p in out.iterdir()} == set()


def test_without_ray_the_option_is_one_line_and_status_2(tmp_path):
    proc = without("ray", "embed-speaker", tmp_path, "--ray", "local", "-o",
                   tmp_path / "o.parquet")
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "audio: error: --ray needs Ray, which is not installed here "
        "(pip install 'audio-speaker[ray]')"]


@pytest.mark.parametrize("args,words", [
    (["--ray", "nowhere"], "use local, auto or ray://HOST:PORT"),
    (["--ray", "local"], "--ray writes to --output DIR.parquet"),
    (["--ray", "local", "-o", "v.npz"], "--ray writes to --output DIR.parquet"),
    (["--ray", "local", "-o", "v.parquet", "--json"], "--json is not available"),
    (["--ray", "local", "-o", "F"], "a file; with --ray the output is a folder"),
    (["-", "--ray", "local", "-o", "v.parquet"], "not stdin"),
])
def test_ray_usage_mistakes_stop_before_ray_starts(args, words, tmp_path):
    (tmp_path / "taken.parquet").write_text("a file")
    args = [str(tmp_path / "taken.parquet") if a == "F" else a for a in args]
    target = [] if args[0] == "-" else [str(tmp_path)]
    proc = run_audio("embed-speaker", *target, *args, "--model", "no-such-model", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert words in line and line.startswith("audio: error:")


def test_a_finished_folder_is_not_run_again_and_another_model_is_refused(tmp_path):
    """Decided from the shards before Ray starts: a one-machine Parquet file is a valid shard."""
    from signals import voiced, write_wav

    model, other = make_model(tmp_path / "model"), make_model(tmp_path / "other", seed=4)
    clips = [write_wav(tmp_path / f"c{i}.wav", voiced(1.5 + i, seed=i)) for i in range(3)]
    out = tmp_path / "out.parquet"
    out.mkdir()
    shard = out / "part-0.parquet"
    proc = run_audio("embed-speaker", *clips, "--model", model, "-o", shard)
    assert proc.returncode == 0, proc.stderr
    before = shard.read_bytes()

    def again(model_dir: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "audio_cli", "embed-speaker",
                               *map(str, clips), "--model", str(model_dir), "--ray", "local",
                               "-o", str(out)], capture_output=True, text=True, timeout=300)

    done = again(model)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [f"audio: 3 inputs already in {out}; 0 inputs to embed"]
    refused = again(other)
    assert refused.returncode == 2
    (line,) = refused.stderr.splitlines()
    assert line.startswith(f"audio: error: --output {out}: holds vectors of another model")
    assert [p.name for p in out.iterdir()] == ["part-0.parquet"] and shard.read_bytes() == before


@pytest.mark.slow
def test_a_killed_run_rerun_writes_each_input_exactly_once_with_the_one_machine_vectors(
        ray_address, corpus, campplus_dir, tmp_path):
    """All 351 shared files with the real CAM++ on Ray: killed with SIGKILL after its third
    shard, then rerun; the folder then holds every input once, with the vectors one process
    gives (the comparison also covers a whole Ray run: the rerun embeds most inputs)."""
    out = tmp_path / "ray.parquet"
    args = ("embed-speaker", corpus["all"], "--model", campplus_dir, "--ray", "auto", "-o", out)
    argv, env = audio(*args, address=ray_address, env={"AUDIO_RAY_SHARD_ROWS": "8"})
    kill_after_shards(argv, env, out, 3)
    partial = pq.read_table(out)
    written = partial.column("error").null_count  # inputs embedded before the kill
    assert 0 < written and len(partial) < corpus["count_all"]
    again = run(*args, address=ray_address)
    assert again.returncode == 3, again.stderr
    assert f"audio: {written} inputs already in {out}" in again.stderr
    paths = pq.read_table(out).column("path").to_pylist()
    assert len(paths) == len(set(paths)) == corpus["count_all"]
    assert not list(out.glob(".*")), "a scratch file was left behind"
    print(f"killed after {written} of {corpus['count_all']} inputs; rerun completed the rest")
    single = one_machine(corpus["all"], campplus_dir, tmp_path / "one.parquet")
    assert_same_rows(out, single, corpus["corrupt"], corpus["count_all"])
