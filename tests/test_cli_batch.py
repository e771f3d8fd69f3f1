"""`audio embed-speaker` over many inputs: JSON Lines, tables, output files, windows, failures."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_audio
from signals import voiced, write_wav

from audio_cli import cosine_similarity
from audio_cli.cli.embed import is_single_file
from audio_cli.cli.errors import combined_status
from audio_cli.cli.inputs import expand_inputs
from audio_cli.cli.outcomes import Outcome
from audio_cli.cli.writers import OutputFile
from audio_cli.pipeline.results import EmbeddingResult
from engines.errors import EngineError, InputAudioError

SAME = 0.99999  # cosine of a vector to itself computed in another call


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A folder: three recordings of different lengths and formats, one corrupt file, notes."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "sub").mkdir()
    write_wav(root / "a.wav", voiced(1.5, seed=1))
    write_wav(root / "sub" / "b.wav", voiced(3.2, f0=210, seed=2))
    import soundfile as sf

    sf.write(str(root / "c.FLAC"), voiced(1.0, f0=160, seed=3), 16000, format="FLAC")
    (root / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt " + os.urandom(200))
    (root / "notes.txt").write_text("not audio, and not picked up\n")
    (root / ".hidden.wav").write_bytes(b"not picked up either")
    return root


GOOD = ["a.wav", "c.FLAC", "sub/b.wav"]  # the corpus's readable files, in directory order


def embed(*args: str, stdin: bytes | None = None):
    return run_audio("embed-speaker", *args, stdin=stdin)


def jsonl(proc) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def single(corpus, small_model_dir) -> dict[str, np.ndarray]:
    """Each good file's vector from a one-file call (the reference for every batch output)."""
    vectors = {}
    for name in GOOD:
        proc = embed(str(corpus / name), "--model", str(small_model_dir), "--json")
        assert proc.returncode == 0, proc.stderr
        vectors[name] = np.array(json.loads(proc.stdout)["embedding"])
    return vectors


def assert_same(vector, reference) -> None:
    assert cosine_similarity(vector, reference) >= SAME


def test_directory_with_a_corrupt_file_yields_the_others_an_error_record_and_a_status(
        corpus, small_model_dir, single):
    proc = embed(str(corpus), "--model", str(small_model_dir), "--json")
    stderr = proc.stderr
    assert proc.returncode == 3, stderr
    records = jsonl(proc)
    names = ["a.wav", "c.FLAC", "corrupt.wav", "sub/b.wav"]  # sorted, hidden/.txt skipped
    assert [r["file"] for r in records] == [str(corpus / n) for n in names]
    bad = records[2]
    assert set(bad) == {"file", "error"}
    assert "not a readable audio file" in bad["error"]
    for record, name in zip([records[0], records[1], records[3]], GOOD, strict=True):
        assert "error" not in record
        assert_same(record["embedding"], single[name])
    assert f"audio: error: {corpus / 'corrupt.wav'}: not a readable audio file" in stderr
    assert "1 of 4 inputs failed" in stderr
    assert "Traceback" not in stderr


def test_json_lines_follow_the_input_order_with_failures_in_place(corpus, small_model_dir, single):
    order = ["sub/b.wav", "missing.wav", "a.wav", "c.FLAC"]
    proc = embed(*(str(corpus / n) for n in order), "--model", str(small_model_dir), "--json")
    assert proc.returncode == 3
    records = jsonl(proc)
    assert [r["file"] for r in records] == [str(corpus / n) for n in order]
    assert "no such file" in records[1]["error"]
    for i, name in ((0, "sub/b.wav"), (2, "a.wav"), (3, "c.FLAC")):
        assert_same(records[i]["embedding"], single[name])
        assert records[i]["dimension"] == 32


def test_list_file_paths_are_relative_to_the_list_and_stdin_comes_once(
        corpus, small_model_dir, single, tmp_path):
    listing = corpus / "sub" / "list.txt"
    listing.write_text("# two files, one blank line\n\nb.wav\n  ../a.wav  \n")
    proc = embed(f"@{listing}", "-", "--model", str(small_model_dir), "--json",
                 stdin=(corpus / "c.FLAC").read_bytes())
    assert proc.returncode == 0, proc.stderr
    records = jsonl(proc)
    assert [r["file"] for r in records] == [str(corpus / "sub" / "b.wav"),
                                           str(corpus / "sub" / "../a.wav"), "stdin"]
    for record, name in zip(records, ["sub/b.wav", "a.wav", "c.FLAC"], strict=True):
        assert_same(record["embedding"], single[name])


def test_a_list_on_stdin_is_relative_to_the_current_directory(corpus, small_model_dir, single):
    proc = embed("@-", "--model", str(small_model_dir), "--json",
                 stdin=f"{corpus / 'a.wav'}\n{corpus / 'nope.wav'}\n".encode())
    assert proc.returncode == 3
    records = jsonl(proc)
    assert_same(records[0]["embedding"], single["a.wav"])
    assert "no such file" in records[1]["error"]


def test_empty_directory_and_missing_list_are_failed_inputs(small_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    proc = embed(str(tmp_path / "empty"), f"@{tmp_path / 'nope.txt'}", "--model",
                 str(small_model_dir), "--json")
    assert proc.returncode == 3
    records = jsonl(proc)
    assert "no audio files" in records[0]["error"]
    assert records[1]["file"] == f"@{tmp_path / 'nope.txt'}"
    assert "no such list file" in records[1]["error"]


@pytest.mark.parametrize("args,words", [
    (["-", "-"], "stdin"),
    (["-", "@-"], "stdin"),
    (["X", "--hop", "1"], "--hop needs --window"),
    (["X", "--window", "0.2"], "shorter than --min-duration"),
    (["X", "--output", "vectors.csv"], "unknown format"),
    (["X", "--output", "no/such/dir/v.npz"], "does not exist"),
])
def test_usage_mistakes_stop_before_any_work(args, words, corpus, small_model_dir):
    args = [str(corpus / "a.wav") if a == "X" else a for a in args]
    proc = embed(*args, "--model", str(small_model_dir), "--json")
    stderr = proc.stderr
    assert proc.returncode == 2, stderr
    assert proc.stdout == ""
    assert len(stderr.splitlines()) == 1 and words in stderr


@pytest.mark.parametrize("suffix", [".npz", ".npy", ".jsonl"])
def test_output_files_round_trip(suffix, corpus, small_model_dir, single, tmp_path):
    out = tmp_path / f"vectors{suffix}"
    proc = embed(str(corpus), "--model", str(small_model_dir), "--output", str(out))
    assert proc.returncode == 3  # the corrupt file
    assert proc.stdout == ""  # text mode with --output prints no table
    assert f"wrote 3 embeddings to {out}" in proc.stderr
    expected = {str(corpus / n): single[n] for n in GOOD}
    if suffix == ".npz":
        with np.load(out) as data:
            assert sorted(data.files) == sorted(expected)
            for key, vector in expected.items():
                assert data[key].dtype == np.float32 and data[key].shape == (32,)
                assert_same(data[key], vector)
    elif suffix == ".npy":
        matrix = np.load(out)
        rows = Path(f"{out}.paths.txt").read_text().splitlines()
        assert rows == list(expected) and matrix.shape == (3, 32)
        for row, key in zip(matrix, rows, strict=True):
            assert_same(row, expected[key])
    else:
        records = [json.loads(line) for line in out.read_text().splitlines()]
        assert [r["file"] for r in records] == sorted([*expected, str(corpus / "corrupt.wav")])
        assert "error" in records[2]
        for record in records[:2] + records[3:]:
            assert_same(record["embedding"], expected[record["file"]])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_an_existing_output_file_is_refused_and_untouched(corpus, small_model_dir, tmp_path):
    out = tmp_path / "vectors.npy"
    sidecar = tmp_path / "vectors.npy.paths.txt"
    sidecar.write_text("mine\n")
    proc = embed(str(corpus / "a.wav"), str(corpus / "c.FLAC"), "--model", str(small_model_dir),
                 "--output", str(out))
    assert proc.returncode == 2
    assert "exists" in proc.stderr and "--force" in proc.stderr
    assert sidecar.read_text() == "mine\n" and not out.exists()
    forced = embed(str(corpus / "a.wav"), str(corpus / "c.FLAC"), "--model", str(small_model_dir),
                   "--output", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert sidecar.read_text().splitlines() == [str(corpus / "a.wav"), str(corpus / "c.FLAC")]
    assert np.load(out).shape == (2, 32)


def test_windows_have_times_counts_and_the_vector_of_the_cut_audio(corpus, small_model_dir,
                                                                   tmp_path):
    proc = embed(str(corpus / "sub" / "b.wav"), "--window", "1", "--hop", "0.5", "--model",
                 str(small_model_dir), "--json")
    assert proc.returncode == 0, proc.stderr
    records = jsonl(proc)
    # 3.2 s: windows start every 0.5 s while they fit, then one more ends at the last sample.
    assert [(r["start"], r["end"]) for r in records] == [
        (0.0, 1.0), (0.5, 1.5), (1.0, 2.0), (1.5, 2.5), (2.0, 3.0), (2.2, 3.2)]
    assert all(r["file"] == str(corpus / "sub" / "b.wav") for r in records)
    samples = voiced(3.2, f0=210, seed=2)
    cut = write_wav(tmp_path / "cut.wav", samples[8000:24000])  # written like b.wav: PCM_16
    alone = json.loads(embed(str(cut), "--model", str(small_model_dir), "--json").stdout)
    assert_same(records[1]["embedding"], alone["embedding"])
    assert not np.allclose(records[0]["embedding"], records[1]["embedding"])


def test_window_hop_defaults_to_the_window_and_npz_holds_times(corpus, small_model_dir, tmp_path):
    out = tmp_path / "windows.npz"
    proc = embed(str(corpus / "sub" / "b.wav"), str(corpus / "corrupt.wav"),
                 str(corpus / "a.wav"), "--window", "1.2", "--model", str(small_model_dir),
                 "--output", str(out))
    assert proc.returncode == 3
    with np.load(out) as data:
        b = str(corpus / "sub" / "b.wav")
        a = str(corpus / "a.wav")
        assert sorted(data.files) == sorted([b, f"{b}:start", f"{b}:end",
                                             a, f"{a}:start", f"{a}:end"])
        np.testing.assert_allclose(data[f"{b}:start"], [0.0, 1.2, 2.0])
        np.testing.assert_allclose(data[f"{b}:end"], [1.2, 2.4, 3.2])
        assert data[b].shape == (3, 32)
        np.testing.assert_allclose(data[f"{a}:start"], [0.0, 0.3])  # 1.5 s: last ends at 1.5
        np.testing.assert_allclose(np.linalg.norm(data[a], axis=1), 1.0, atol=1e-5)


def test_many_inputs_in_text_mode_print_a_table(corpus, small_model_dir, single):
    proc = embed(str(corpus), "--model", str(small_model_dir))
    assert proc.returncode == 3
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["duration", "L2", "norm", "first", "3", "status", "file"]
    assert len(lines) == 5  # the header, 4 inputs
    (failed,) = [line for line in lines if f"{corpus / 'corrupt.wav'}: " in line]
    assert " error " in failed and "not a readable audio file" in failed
    for name, seconds in zip(GOOD, (1.5, 1.0, 3.2), strict=True):
        (row,) = [line for line in lines if line.endswith(f" {corpus / name}")]
        cells = row[:-len(str(corpus / name))]
        values = [float(x) for x in re.findall(r"[-+]?\d+\.\d+", cells)]
        vector = single[name]
        duration, norm, first = values[0], values[1], values[2:]
        assert duration == pytest.approx(seconds) and cells.split()[-1] == "ok"
        assert norm == pytest.approx(np.linalg.norm(vector), abs=1e-6)
        assert first == pytest.approx(list(vector[:3]), abs=1e-3)  # printed to 3 decimals


def test_directories_expand_sorted_recursive_audio_only_and_each_path_once(corpus):
    items = expand_inputs([str(corpus), str(corpus / "a.wav"), "-"])
    paths = [i.path for i in items]
    assert paths == [str(corpus / n) for n in ["a.wav", "c.FLAC", "corrupt.wav", "sub/b.wav"]
                     ] + ["-"]
    assert not is_single_file([str(corpus)])
    assert is_single_file([str(corpus / "nope.wav")])  # the loader reports it, as before


def test_exit_status_is_the_failures_status_or_3_when_mixed():
    from audio_cli.store.db import StoreError
    from engines.errors import AudioCliError, EngineError, ModelError, UsageError

    bug = RuntimeError("a bug")  # no kind: an internal error, status 1
    # the README's exit-status table, kind by kind
    alone = {EngineError("e"): 5, InputAudioError("i"): 3, ModelError("m"): 4,
             UsageError("u"): 2, StoreError("s"): 6, AudioCliError("x"): 1, bug: 1}
    for error, status in alone.items():
        assert combined_status([error]) == status, error
        assert combined_status([error, error]) == status, error  # all agree
    assert combined_status([]) == 0
    # mixed failures: 3, whichever statuses are mixed (not the least, nor the greatest)
    assert combined_status([bug, EngineError("e")]) == 3
    assert combined_status([EngineError("e"), ModelError("m")]) == 3
    assert combined_status([InputAudioError("i"), StoreError("s")]) == 3


def test_an_unfinished_output_file_leaves_nothing_behind(tmp_path):
    out = OutputFile(tmp_path / "v.npz", False, "m", "onnx")
    out.start()
    vector = np.ones(4, dtype=np.float32) / 2
    out.add(Outcome("x.wav", result=EmbeddingResult(vector, "x.wav", 1.0, 16000, "m", "onnx",
                                                    0.1)))
    out.add(Outcome("y.wav", error=InputAudioError("y.wav: no such file")))
    assert any(tmp_path.iterdir())  # the temporary file exists while writing
    out.discard()
    assert list(tmp_path.iterdir()) == []


def test_failure_lines_name_the_file_once():
    assert Outcome("a.wav", error=InputAudioError("a.wav: empty file")).message == \
        "a.wav: empty file"
    assert Outcome("a.wav", error=EngineError("non-finite vector")).message == \
        "a.wav: non-finite vector"
