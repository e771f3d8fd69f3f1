"""Every command exits as the README's exit-status table says, kind of error by kind of error.

The expected statuses are the README's table (0 success, 2 usage, 3 input audio, 4 model,
5 engine, 6 store; compare and identify answer 0/1 and exit 2 on any error), written here by
hand, not read from the code. An engine failure is made real: a model whose weights are NaN
makes the onnx engine return a non-finite vector, which the pipeline refuses (EngineError).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_run import run_audio
from model_factory import random_resnet_weights, small_config
from store_helpers import make_speakers

from engines.model import WEIGHTS_FILE, save_safetensors

OK, DIFFERENT, USAGE, INPUT, MODEL, ENGINE, STORE = 0, 1, 2, 3, 4, 5, 6


@pytest.fixture(scope="module")
def world(tmp_path_factory, small_model_dir) -> dict[str, str]:
    """Models (good, missing, failing), recordings, stores (good, not a store, enrolled)."""
    root = tmp_path_factory.mktemp("statuses")
    nan_model = root / "nan-model"
    nan_model.mkdir()
    config = small_config()
    weights = random_resnet_weights(config)
    weights["embedding.weight"] = np.full_like(weights["embedding.weight"], np.nan)
    config.save(nan_model)
    save_safetensors(nan_model / WEIGHTS_FILE, weights)
    speakers = make_speakers(root / "voices", per_speaker=2)
    dataset = root / "dataset"
    for s, files in enumerate(speakers):
        (dataset / f"spk{s}").mkdir(parents=True)
        for f in files:
            (dataset / f"spk{s}" / f.name).symlink_to(f)
    not_a_store = root / "notes.db"
    not_a_store.write_text("my notes\n")
    world = {"model": str(small_model_dir), "nan": str(nan_model),
             "no_model": str(root / "no" / "such-model"), "a": str(speakers[0][0]),
             "a2": str(speakers[0][1]), "b": str(speakers[1][0]),
             "missing": str(root / "missing.wav"), "dataset": str(dataset),
             "not_a_store": str(not_a_store), "db": str(root / "store.db"),
             "export": str(root / "export.json"), "root": str(root)}
    enrolled = run_audio("enroll", "alice", world["a"], world["a2"], "--model", world["model"],
                         "--db", world["db"])
    assert enrolled.returncode == OK, enrolled.stderr
    indexed = run_audio("index", str(root / "voices"), "--model", world["model"], "--db",
                        world["db"])
    assert indexed.returncode == OK, indexed.stderr
    return world


def status(*args: str) -> tuple[int, str]:
    result = run_audio(*args)
    lines = result.stderr.strip().splitlines()
    if result.returncode not in (OK, DIFFERENT):
        assert lines and lines[-1].startswith("audio: error: "), result.stderr
        assert "Traceback" not in result.stderr
    return result.returncode, result.stderr


def check(world: dict[str, str], cases: list[tuple[int, list[str], str]]) -> None:
    wrong = []
    for expected, args, says in cases:
        args = [a.format(**world) for a in args]
        code, err = status(*args)
        if code != expected or says not in err:
            wrong.append(f"audio {' '.join(args)}: exit {code}, expected {expected} "
                         f"(with {says!r}); stderr: {err.strip()[-300:]}")
    assert not wrong, "\n".join(wrong)


def test_embed_speaker(world):
    check(world, [
        (OK, ["embed-speaker", "{a}", "--model", "{model}"], ""),
        (USAGE, ["embed-speaker", "{a}", "--model", "{model}", "--threads", "0"], "--threads"),
        (USAGE, ["embed-speaker", "{a}", "--model", "{model}", "--engine", "tpu"], "engine"),
        (INPUT, ["embed-speaker", "{missing}", "--model", "{model}"], "no such file"),
        (MODEL, ["embed-speaker", "{a}", "--model", "{no_model}"], "model"),
        (ENGINE, ["embed-speaker", "{a}", "--model", "{nan}"], "non-finite"),
        # many inputs: the failures' status when they agree, 3 when they differ
        (ENGINE, ["embed-speaker", "{a}", "{b}", "--model", "{nan}"], "2 of 2 inputs failed"),
        (INPUT, ["embed-speaker", "{a}", "{missing}", "--model", "{model}"], "1 of 2"),
    ])


def test_compare_answers_0_or_1_and_every_error_is_2(world):
    check(world, [
        (OK, ["compare", "{a}", "{a2}", "--model", "{model}", "--threshold", "-1"], ""),
        (DIFFERENT, ["compare", "{a}", "{b}", "--model", "{model}", "--threshold", "1"], ""),
        (USAGE, ["compare", "{a}", "{b}", "--model", "{model}", "--threshold", "2"], "cosine"),
        (USAGE, ["compare", "{a}", "{missing}", "--model", "{model}"], "no such file"),
        (USAGE, ["compare", "{a}", "{b}", "--model", "{no_model}"], "model"),
        (USAGE, ["compare", "{a}", "{b}", "--model", "{nan}"], "non-finite"),
        (USAGE, ["compare", "{a}", "{b}", "--model", "{model}", "--db", "{not_a_store}"],
         "not an audio store"),
    ])


def test_identify_answers_0_or_1_and_every_error_is_2(world):
    check(world, [
        (OK, ["identify", "{a}", "--model", "{model}", "--db", "{db}", "--threshold", "-1"], ""),
        (DIFFERENT, ["identify", "{b}", "--model", "{model}", "--db", "{db}", "--threshold",
                     "1"], ""),
        (USAGE, ["identify", "{a}", "--model", "{model}", "--db", "{db}", "--top", "0"], "top"),
        (USAGE, ["identify", "{missing}", "--model", "{model}", "--db", "{db}"], "no such file"),
        (USAGE, ["identify", "{a}", "--model", "{no_model}", "--db", "{db}"], "model"),
        (USAGE, ["identify", "{a}", "--model", "{nan}", "--db", "{db}"], ""),
        (USAGE, ["identify", "{a}", "--model", "{model}", "--db", "{not_a_store}"],
         "not an audio store"),
    ])


def test_enroll(world):
    check(world, [
        (USAGE, ["enroll", "", "{a}", "--model", "{model}", "--db", "{db}"], "name"),
        (INPUT, ["enroll", "bob", "{missing}", "--model", "{model}", "--db", "{db}"],
         "no such file"),
        (MODEL, ["enroll", "bob", "{b}", "--model", "{no_model}", "--db", "{db}"], "model"),
        (ENGINE, ["enroll", "bob", "{b}", "--model", "{nan}", "--db", "{db}"], "non-finite"),
        (STORE, ["enroll", "bob", "{b}", "--model", "{model}", "--db", "{not_a_store}"],
         "not an audio store"),
    ])


def test_calibrate(world):
    check(world, [
        # calibrate reads vectors already made: it takes no engine options
        (USAGE, ["calibrate", "--model", "{model}", "--db", "{db}", "--engine", "onnx"],
         "--engine"),
        (MODEL, ["calibrate", "--model", "{no_model}", "--db", "{db}"], "model"),
        (STORE, ["calibrate", "--model", "{model}", "--db", "{not_a_store}"],
         "not an audio store"),
    ])


def test_index(world):
    voices = "{root}/voices"
    check(world, [
        (USAGE, ["index", voices, "--model", "{model}", "--db", "{db}", "--min-duration",
                 "-1"], "--min-duration"),
        (USAGE, ["index", "--from", "{root}/v.parquet", "--vad", "--model", "{model}", "--db",
                 "{db}"], "--vad"),
        (INPUT, ["index", "{missing}", "--model", "{model}", "--db", "{db}"], ""),
        (MODEL, ["index", voices, "--model", "{no_model}", "--db", "{db}"], "model"),
        (ENGINE, ["index", voices, "--model", "{nan}", "--db", "{root}/nan.db"], "non-finite"),
        (STORE, ["index", voices, "--model", "{model}", "--db", "{not_a_store}"],
         "not an audio store"),
    ])


def test_search(world):
    check(world, [
        (OK, ["search", "{a}", "--model", "{model}", "--db", "{db}"], ""),
        (USAGE, ["search", "{a}", "--model", "{model}", "--db", "{db}", "--top", "0"], "top"),
        (INPUT, ["search", "{missing}", "--model", "{model}", "--db", "{db}"], "no such file"),
        (MODEL, ["search", "{a}", "--model", "{no_model}", "--db", "{db}"], "model"),
        (ENGINE, ["search", "{a}", "--model", "{nan}", "--db", "{db}"], "non-finite"),
        (ENGINE, ["search", "{a}", "{b}", "--model", "{nan}", "--db", "{db}"], "non-finite"),
        (STORE, ["search", "{a}", "--model", "{model}", "--db", "{not_a_store}"],
         "not an audio store"),
    ])


def test_eval(world):
    check(world, [
        (OK, ["eval", "{dataset}", "--model", "{model}"], ""),
        (USAGE, ["eval", "{dataset}", "--model", "{model}", "--threads", "0"], "--threads"),
        (INPUT, ["eval", "{root}/no-dataset", "--model", "{model}"], ""),
        (MODEL, ["eval", "{dataset}", "--model", "{no_model}"], "model"),
        (ENGINE, ["eval", "{dataset}", "--model", "{nan}"], "non-finite"),
    ])


def test_speakers_commands(world):
    Path(world["export"]).unlink(missing_ok=True)
    check(world, [
        (OK, ["speakers", "list", "--db", "{db}"], ""),
        (USAGE, ["speakers", "remove", "nobody", "--db", "{db}"], "nobody"),
        (USAGE, ["speakers", "rename", "nobody", "x", "--db", "{db}"], "nobody"),
        (OK, ["speakers", "export", "{export}", "--db", "{db}"], ""),
        (USAGE, ["speakers", "export", "{export}", "--db", "{db}"], "exists"),
        (STORE, ["speakers", "list", "--db", "{not_a_store}"], "not an audio store"),
        (STORE, ["speakers", "import", "{export}", "--db", "{not_a_store}"],
         "not an audio store"),
    ])


def test_model_commands(world):
    check(world, [
        (MODEL, ["convert", "{missing}", "{root}/converted"], "not found"),
        (MODEL, ["quantize", "--model", "{no_model}"], "model"),
        (MODEL, ["export-coreml", "{root}/x.mlpackage", "--model", "{no_model}"], "model"),
        (USAGE, ["export-coreml", "{export}", "--model", "{model}"], "exists"),
    ])
