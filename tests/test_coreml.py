"""The Core ML engine: export, the reference MIL interpreter, the package cache, window plans.

Off macOS, Core ML cannot run; the exported packages are executed by the engine's reference
MIL interpreter, so everything but Core ML's own `predict` is tested here. Tests marked
`macos` run the packages through Core ML and are skipped elsewhere.
"""

from __future__ import annotations

import json
import random
import shutil
import sys

import numpy as np
import pytest
from platforms import needs_mlx

ct = pytest.importorskip("coremltools", reason="coremltools is not installed (pip install "
                         "'coremltools>=8'); the Core ML engine cannot be tested")

from model_factory import (  # noqa: E402
    random_resnet_weights,
    small_campplus_config,
    small_config,
    write_campplus_model,
    write_model,
)
from numpy_resnet import forward  # noqa: E402

from engines import build_graph  # noqa: E402
from engines.coreml_compiled import (  # noqa: E402
    HUB_COMPILED_MODEL,
    HUB_FIXED_LENGTHS,
    CompiledModelRunner,
    combine_windows,
    embed_fixed_length,
    plan_windows,
)
from engines.coreml_engine import (  # noqa: E402
    INTERPRETER_NOTE,
    CoreMLEngine,
    find_or_export_package,
    package_name,
)
from engines.coreml_export import (  # noqa: E402
    EXPORT_VERSION,
    MAX_FRAMES,
    QUANTIZE_ABOVE,
    export_coreml,
)
from engines.coreml_program import EMBEDDING_OUTPUT, FRAMES_OUTPUT, MEL_INPUT  # noqa: E402
from engines.errors import EngineError, InputAudioError, ModelError, UsageError  # noqa: E402
from engines.mil_interpreter import MILInterpreter  # noqa: E402
from engines.model import (  # noqa: E402
    WEIGHTS_FILE,
    ModelConfig,
    Weights,  # noqa: E402
)

macos = pytest.mark.skipif(sys.platform != "darwin", reason="Core ML predict needs macOS")
LICENCE = "CC-BY-4.0"


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def features(frames: int, n_mels: int = 80, seed: int = 0) -> np.ndarray:
    """Random CMN'd log-mel-like features (T, n_mels) float32."""
    x = np.random.default_rng(seed).standard_normal((frames, n_mels)).astype(np.float32) * 3
    return x - x.mean(axis=0)


def reference(x: np.ndarray, tensors: dict, config: ModelConfig) -> np.ndarray:
    return forward(x, tensors, layers=config.layers)[2]


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def small():
    config = small_config(license=LICENCE)
    tensors = random_resnet_weights(config, seed=3)
    return config, tensors, Weights(tensors=tensors)


@pytest.fixture(scope="module")
def small_packages(small, tmp_path_factory):
    config, _, weights = small
    out = tmp_path_factory.mktemp("packages")
    return {p: export_coreml(config, weights, out / f"small-{p}.mlpackage", p)
            for p in ("float32", "float16")}


@pytest.fixture(scope="module")
def small_engine(small, tmp_path_factory):
    config, _, weights = small
    return CoreMLEngine(config, weights, cache_dir=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def full():
    config = ModelConfig(model_id="test/full-random", license=LICENCE)
    tensors = random_resnet_weights(config, seed=5)
    return config, tensors, Weights(tensors=tensors)


# ---------------------------------------------------------------- the exported package


def test_package_has_flexible_length_and_metadata(small, small_packages):
    config, _, weights = small
    model = ct.models.MLModel(str(small_packages["float32"]), skip_model_load=True)
    spec = model.get_spec()
    assert spec.WhichOneof("Type") == "mlProgram"
    (mel,) = spec.description.input
    assert mel.name == MEL_INPUT
    ranges = [(r.lowerBound, r.upperBound) for r in mel.type.multiArrayType.shapeRange.sizeRanges]
    assert ranges == [(1, 1), (build_graph(config).min_frames(), MAX_FRAMES), (80, 80)]
    out, frames = spec.description.output
    assert out.name == EMBEDDING_OUTPUT
    assert list(out.type.multiArrayType.shape) == [1, config.embedding_dim]
    assert frames.name == FRAMES_OUTPUT  # the trunk's frames, pooled by the engine
    meta = model.user_defined_metadata
    assert meta["model_id"] == config.model_id == "test/small-random"
    assert meta["license"] == LICENCE and model.license == LICENCE
    assert meta["weights_sha256"] == weights.digest()
    assert meta["precision"] == "float32"
    assert config.model_id in model.short_description


@needs_mlx
def test_float32_package_matches_numpy_reference_and_mlx(small, small_packages):
    from engines.mlx_engine import MLXEngine  # a broken engine module fails here, never skips

    config, tensors, _ = small
    interpreter = MILInterpreter(small_packages["float32"])
    mlx = MLXEngine(build_graph(config), tensors)
    for frames, seed in ((200, 1), (57, 2)):
        x = features(frames, seed=seed)
        got = interpreter.predict({MEL_INPUT: x[None]})[EMBEDDING_OUTPUT][0]
        assert got.dtype == np.float32
        assert abs(np.linalg.norm(got) - 1) < 1e-5
        assert cosine(got, reference(x, tensors, config)) >= 0.9999
        assert cosine(got, mlx.embed(x[None])[0]) >= 0.9999


def test_float16_package_runs_in_float16_and_stays_close(small, small_packages):
    config, tensors, _ = small
    interpreter = MILInterpreter(small_packages["float16"])
    ops = {op.op_type for op in interpreter.operations}
    assert "cast" in ops  # the float16 package converts around its float16 part
    conv_weights = [op.inputs["weight"].val for op in interpreter.operations
                    if op.op_type == "conv"]
    assert conv_weights and all(w.dtype == np.float16 for w in conv_weights)
    assert interpreter.user_defined_metadata["precision"] == "float16"
    for frames, seed in ((200, 1), (57, 2)):
        x = features(frames, seed=seed)
        got = interpreter.predict({MEL_INPUT: x[None]})[EMBEDDING_OUTPUT][0]
        assert cosine(got, reference(x, tensors, config)) >= 0.999


@pytest.mark.parametrize("precision, bar",
                         [("float32", 0.9999), ("float16", 0.999), ("int8", 0.99)])
def test_full_size_model(full, tmp_path, precision, bar):
    config, tensors, weights = full
    package = export_coreml(config, weights, tmp_path / "full.mlpackage", precision)
    interpreter = MILInterpreter(package)
    x = features(300, seed=7)
    got = interpreter.predict({MEL_INPUT: x[None]})[EMBEDDING_OUTPUT][0]
    assert got.shape == (256,)
    assert cosine(got, reference(x, tensors, config)) >= bar


def _conv_weights(package) -> list[np.ndarray]:
    """Each conv's weight as the interpreter holds it (int8 ones dequantized), in op order."""
    interpreter = MILInterpreter(package)
    return [np.asarray(interpreter._read(op.inputs["weight"], {}), np.float32)
            for op in interpreter.operations if op.op_type == "conv"]


def test_int8_package_stores_conv_weights_in_8_bits(full, tmp_path):
    from coremltools.converters.mil.frontend.milproto import load as milproto

    config, _, weights = full
    packages = {p: export_coreml(config, weights, tmp_path / f"{p}.mlpackage", p)
                for p in ("float16", "int8")}
    model = ct.models.MLModel(str(packages["int8"]), skip_model_load=True)
    assert model.user_defined_metadata["precision"] == "int8"
    spec = model.get_spec()
    program = milproto.load(spec, spec.specificationVersion, file_weights_dir=model.weights_dir)
    ops = list(program.functions["main"].operations)
    dequantized = {op.outputs[0].name: op for op in ops
                   if op.op_type == "constexpr_affine_dequantize"}
    convs = [op for op in ops if op.op_type == "conv"]
    big = [op for op in convs if op.inputs["weight"].shape is not None
           and np.prod(op.inputs["weight"].shape) > QUANTIZE_ABOVE]
    assert len(dequantized) == len(big) > 30  # every conv but the small first ones
    (linear,) = [op for op in ops if op.op_type == "linear"]
    assert linear.inputs["weight"].name not in dequantized  # the head stays float
    for op in dequantized.values():
        assert op.inputs["quantized_data"].val.dtype == np.int8
        assert not np.any(op.inputs["zero_point"].val)  # symmetric
        assert op.inputs["scale"].val.shape == (op.inputs["quantized_data"].val.shape[0],)

    def size(package):
        return sum(f.stat().st_size for f in package.rglob("*") if f.is_file())

    # The file shrinks by (nearly) half of the float16 bytes of the weights made int8; the
    # float32 linear layer of the head (5120 x 256) is the same in both.
    pairs = list(zip(_conv_weights(packages["int8"]), _conv_weights(packages["float16"]),
                     strict=True))
    quantized_bytes = sum(2 * w.size for w, _ in pairs if w.size > QUANTIZE_ABOVE)
    assert size(packages["int8"]) < size(packages["float16"]) - 0.45 * quantized_bytes
    # Dequantized, each weight is within half a quantisation step (max |w| / 127 of its output
    # channel) of the float16 package's weight.
    for w8, w16 in pairs:
        assert w8.shape == w16.shape
        peak = np.abs(w16).reshape(len(w16), -1).max(axis=1)
        error = np.abs(w8 - w16).reshape(len(w16), -1).max(axis=1)
        assert np.all(error <= peak / 127 * 0.5 * 1.01 + peak * 2.0 ** -10)


def test_int8_engine_and_the_mlx_refusal(small, tmp_path):
    from engines import create_engine

    config, tensors, weights = small
    engine = create_engine("coreml", config, weights, precision="int8")
    assert engine.package.name.endswith(f"-int8-v{EXPORT_VERSION}.mlpackage")
    assert engine.name == "coreml-int8"  # records and the store say which network ran
    x = features(150, seed=11)
    assert cosine(engine.embed(x[None])[0], reference(x, tensors, config)) >= 0.99
    with pytest.raises(UsageError, match="onnx and coreml"):
        create_engine("mlx", config, weights, precision="int8")


def test_export_refuses_to_overwrite(small, small_packages, tmp_path):
    config, _, weights = small
    with pytest.raises(ModelError, match="will not overwrite"):
        export_coreml(config, weights, small_packages["float32"])
    (tmp_path / "empty.mlpackage").mkdir()
    with pytest.raises(ModelError, match="will not overwrite"):
        export_coreml(config, weights, tmp_path / "empty.mlpackage")
    with pytest.raises(UsageError, match="mlpackage"):
        export_coreml(config, weights, tmp_path / "model.mlmodel")
    with pytest.raises(UsageError, match="precision"):
        export_coreml(config, weights, tmp_path / "m.mlpackage", "bfloat16")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.mlpackage"]  # no leftovers


# ---------------------------------------------------------------- the interpreter


def test_interpreter_rejects_an_op_the_export_never_emits(tmp_path):
    from coremltools.converters.mil.mil import Builder as mb

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4))], opset_version=ct.target.macOS13)
    def program(x):
        return mb.erf(x=x, name="out")  # (tanh is emitted now: NeMo's attentive pooling)

    model = ct.convert(program, convert_to="mlprogram", skip_model_load=True,
                       minimum_deployment_target=ct.target.macOS13)
    model.save(str(tmp_path / "erf.mlpackage"))
    with pytest.raises(EngineError, match="erf"):
        MILInterpreter(tmp_path / "erf.mlpackage")


def test_interpreter_checks_the_input_shape(small_packages):
    interpreter = MILInterpreter(small_packages["float32"])
    with pytest.raises(EngineError, match="accepts"):
        interpreter.predict({MEL_INPUT: np.zeros((1, 5, 80), np.float32)})
    with pytest.raises(EngineError, match="missing"):
        interpreter.predict({})


def test_unreadable_package_is_an_engine_error(tmp_path):
    (tmp_path / "junk.mlpackage").mkdir()
    with pytest.raises(EngineError):
        MILInterpreter(tmp_path / "junk.mlpackage")


# ---------------------------------------------------------------- the engine


def embed_batch(engine, clips: list[np.ndarray]) -> np.ndarray:
    """Clips of any lengths as one zero-padded batch with their lengths, as the pipeline runs."""
    lengths = np.array([len(c) for c in clips])
    batch = np.zeros((len(clips), lengths.max(), clips[0].shape[1]), dtype=np.float32)
    for row, clip in zip(batch, clips, strict=True):
        row[: len(clip)] = clip
    return engine.embed(batch, lengths)


def test_lengths_20_to_6000_run_unpadded_alone_or_batched(small, small_engine):
    config, tensors, _ = small
    clips = [features(n, seed=n) for n in (20, 57, 301, 6000)]
    batch = embed_batch(small_engine, clips)
    assert batch.shape == (4, config.embedding_dim) and batch.dtype == np.float32
    for clip, row in zip(clips, batch, strict=True):
        alone = small_engine.embed(clip[None])[0]
        np.testing.assert_array_equal(row, alone)  # nothing about the batch leaks in
        assert cosine(row, reference(clip, tensors, config)) >= 0.9999
        if len(clip) <= 301:  # what zero padding (not done here) would have changed
            padded = np.concatenate([clip, np.zeros((40, 80), np.float32)])
            assert cosine(small_engine.embed(padded[None])[0], row) < 0.999
    same_length = np.stack([features(120, seed=s) for s in (1, 2, 3)])
    np.testing.assert_array_equal(small_engine.embed(same_length),
                                  embed_batch(small_engine, list(same_length)))


def test_engine_rejects_bad_input(small, small_engine):
    config, _, _ = small
    with pytest.raises(InputAudioError, match="too short"):
        small_engine.embed(features(build_graph(config).min_frames() - 1)[None])
    with pytest.raises(EngineError, match="features"):
        small_engine.embed(np.zeros((1, 50, 40), np.float32))
    with pytest.raises(EngineError, match="longer than"):
        embed_batch(small_engine, [np.zeros((MAX_FRAMES + 1, 80), np.float32)])


def test_engine_never_returns_a_zero_or_nan_vector(small, small_engine):
    x = features(100)
    x[10, 3] = np.nan
    with pytest.raises(EngineError, match="non-finite"):
        small_engine.embed(x[None])


def test_engine_says_it_runs_the_interpreter(small, tmp_path, capsys):
    if sys.platform == "darwin":
        pytest.skip("on macOS the engine runs Core ML itself")
    config, _, weights = small
    engine = CoreMLEngine(config, weights, cache_dir=tmp_path)
    assert engine.backend == "mil-interpreter" and engine.name == "coreml"
    err = capsys.readouterr().err
    assert INTERPRETER_NOTE in err
    assert capsys.readouterr().out == ""


def test_package_cached_beside_weights_and_reused(tmp_path, monkeypatch, capsys):
    config = small_config(license=LICENCE)
    write_model(tmp_path / "model", config, seed=4)
    weights = Weights(path=tmp_path / "model" / WEIGHTS_FILE)
    first = CoreMLEngine(config, weights)
    name = f"{weights.digest()[:16]}-float32-v{EXPORT_VERSION}.mlpackage"
    expected = tmp_path / "model" / "coreml" / name
    assert first.package == expected and expected.is_dir()
    assert "exporting" in capsys.readouterr().err

    def no_export(*args, **kwargs):
        raise AssertionError("the cached package should have been reused")

    monkeypatch.setattr("engines.coreml_engine.export_coreml", no_export)
    second = CoreMLEngine(config, Weights(path=tmp_path / "model" / WEIGHTS_FILE))
    assert second.package == expected
    assert "exporting" not in capsys.readouterr().err
    x = features(80)
    np.testing.assert_array_equal(first.embed(x[None]), second.embed(x[None]))
    assert [p.name for p in (tmp_path / "model" / "coreml").iterdir()] == [expected.name]


def test_package_goes_to_user_cache_when_model_dir_unusable(tmp_path, monkeypatch):
    config = small_config(license=LICENCE)
    write_model(tmp_path / "model", config, seed=4)
    (tmp_path / "model" / "coreml").write_text("a file where the cache dir would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    weights = Weights(path=tmp_path / "model" / WEIGHTS_FILE)
    path = find_or_export_package(config, weights)
    assert path == tmp_path / "xdg" / "audio-speaker" / "coreml" / package_name(weights,
                                                                                 "float32")
    in_memory = Weights(tensors=random_resnet_weights(config, seed=4))
    assert find_or_export_package(config, in_memory).parent == path.parent


def test_package_from_other_weights_is_refused(small, tmp_path):
    config, _, weights = small
    other = Weights(tensors=random_resnet_weights(config, seed=99))
    source = find_or_export_package(config, weights, cache_dir=tmp_path)
    shutil.copytree(source, tmp_path / package_name(other, "float32"))
    with pytest.raises(EngineError, match="other weights"):
        CoreMLEngine(config, other, cache_dir=tmp_path)


def test_float16_engine(small, tmp_path):
    config, tensors, weights = small
    engine = CoreMLEngine(config, weights, cache_dir=tmp_path, precision="float16")
    assert engine.package.name.endswith(f"-float16-v{EXPORT_VERSION}.mlpackage")
    x = features(150, seed=11)
    assert cosine(engine.embed(x[None])[0], reference(x, tensors, config)) >= 0.999
    with pytest.raises(UsageError):
        CoreMLEngine(config, weights, cache_dir=tmp_path, precision="bfloat16")


# ---------------------------------------------------------------- CAM++


@pytest.fixture(scope="module")
def small_campplus(tmp_path_factory):
    """A random small CAM++ model directory: (config, directory, weights)."""
    config = small_campplus_config(license=LICENCE)
    directory = tmp_path_factory.mktemp("campplus") / "model"
    write_campplus_model(directory, config, seed=2)
    return config, directory, Weights(path=directory / WEIGHTS_FILE)


# 3 frames is the shortest input (2 steps after the stride-2 TDNN); 199/200/201 frames give
# 100/100/101 steps, at the edge of the 100-step context segments; 1001 gives a short last one.
CAMPPLUS_LENGTHS = (3, 4, 57, 199, 200, 201, 1001)


@pytest.mark.parametrize("precision, bar", [("float32", 0.9999), ("float16", 0.999)])
def test_campplus_package_matches_the_onnx_engine(small_campplus, tmp_path, precision, bar):
    from engines.onnx_engine import ONNXEngine

    config, _, weights = small_campplus
    onnx = ONNXEngine(config, weights, cache_dir=tmp_path)
    engine = CoreMLEngine(config, weights, cache_dir=tmp_path, precision=precision)
    package = MILInterpreter(engine.package)  # its own embedding output: the translated head
    worst = 1.0
    for frames in CAMPPLUS_LENGTHS:
        x = features(frames, seed=frames)
        expected = onnx.embed(x[None])[0]
        assert engine.encode(x[None]).shape == (1, -(-frames // 2), config.pooling_output_dim // 2)
        got = engine.embed(x[None])[0]
        own = package.predict({MEL_INPUT: x[None]})[EMBEDDING_OUTPUT][0]
        worst = min(worst, cosine(got, expected), cosine(own, expected))
        assert cosine(got, expected) >= bar, frames
        assert cosine(own, expected) >= bar, frames
    print(f"\n  CAM++ {precision} package vs ONNX: min cosine 1 - {1 - worst:.1e}")


def test_campplus_float16_package_keeps_the_pooling_in_float32(small_campplus, tmp_path):
    from coremltools.converters.mil.mil import types

    config, _, weights = small_campplus
    package = export_coreml(config, weights, tmp_path / "campplus16.mlpackage", "float16")
    dtypes: dict[str, set[str]] = {}
    for op in MILInterpreter(package).operations:
        dtypes.setdefault(op.op_type, set()).add(types.builtin_to_string(op.outputs[0].dtype))
    for op_type in ("conv", "relu", "sigmoid"):
        assert dtypes[op_type] == {"fp16"}, op_type
    for op_type in ("reduce_sum", "reduce_mean", "pad", "real_div", "linear"):
        assert dtypes[op_type] == {"fp32"}, op_type  # context and statistics pooling, head


@pytest.mark.slow
def test_cli_embeds_and_exports_campplus_with_core_ml(small_campplus, tmp_path):
    from cli_run import run_audio
    from signals import voiced, write_wav

    config, directory, _ = small_campplus
    clip = write_wav(tmp_path / "clip.wav", voiced(2.0))
    records = {}
    for engine in ("onnx", "coreml"):
        proc = run_audio("embed-speaker", str(clip), "--model", str(directory), "--engine",
                         engine, "--json")
        assert proc.returncode == 0, proc.stderr
        records[engine] = json.loads(proc.stdout)
    assert records["coreml"]["engine"] == "coreml"
    assert records["coreml"]["dimension"] == config.embedding_dim
    assert cosine(records["coreml"]["embedding"], records["onnx"]["embedding"]) >= 0.9999
    out = tmp_path / "campplus.mlpackage"
    proc = run_audio("export-coreml", str(out), "--model", str(directory))
    assert proc.returncode == 0, proc.stderr
    interpreter = MILInterpreter(out)
    assert interpreter.user_defined_metadata["model_type"] == "campplus"
    x = features(150, seed=4)
    got = interpreter.predict({MEL_INPUT: x[None]})[EMBEDDING_OUTPUT][0]
    from engines.onnx_engine import ONNXEngine

    onnx = ONNXEngine(config, Weights(path=directory / WEIGHTS_FILE), cache_dir=tmp_path)
    assert cosine(got, onnx.embed(x[None])[0]) >= 0.9999


# ---------------------------------------------------------------- fixed-length window plans


def check_plan(num_frames: int, allowed) -> None:
    windows = plan_windows(num_frames, allowed)
    covered = np.zeros(num_frames, dtype=int)
    for start, length in windows:
        assert length in allowed
        assert 0 <= start and start + length <= num_frames
        covered[start:start + length] += 1
    assert covered.min() >= 1, f"{num_frames}: frames left out by {windows}"


def test_window_plan_covers_every_frame():
    rng = random.Random(1234)
    lengths = ([20, 21, 49, 50, 99, 1999, 2000, 2001, 4001, 6000, 30000]
               + [rng.randint(20, 20000) for _ in range(3000)])
    for n in lengths:
        check_plan(n, HUB_FIXED_LENGTHS)
    for allowed in ((7, 13, 64), (5,), (3, 100)):
        for n in range(min(allowed), 400):
            check_plan(n, allowed)
    assert plan_windows(2000, HUB_FIXED_LENGTHS) == [(0, 2000)]
    assert plan_windows(6000, HUB_FIXED_LENGTHS) == [(0, 2000), (2000, 2000), (4000, 2000)]
    assert plan_windows(2001, HUB_FIXED_LENGTHS) == [(0, 2000), (1, 2000)]


def test_window_plan_refuses_clips_shorter_than_every_length():
    with pytest.raises(InputAudioError, match="padding"):
        plan_windows(19, HUB_FIXED_LENGTHS)


def test_fixed_length_runner_feeds_only_real_frames(small, small_packages):
    config, tensors, _ = small
    interpreter = MILInterpreter(small_packages["float32"])
    x = features(2345, seed=21)
    calls = []

    def predict(window):
        calls.append(window)
        return interpreter.predict({MEL_INPUT: window})[EMBEDDING_OUTPUT]

    got = embed_fixed_length(predict, x, HUB_FIXED_LENGTHS)
    plan = plan_windows(len(x), HUB_FIXED_LENGTHS)
    assert [w.shape[1] for w in calls] == [length for _, length in plan]
    for window, (start, length) in zip(calls, plan, strict=True):
        np.testing.assert_array_equal(window[0], x[start:start + length])  # no padding
    assert abs(np.linalg.norm(got) - 1) < 1e-5
    # An approximation of the whole-clip embedding (see engines/window_plan.py) ...
    assert cosine(got, reference(x, tensors, config)) > 0.99
    # ... and exact when the clip is one allowed length.
    one = features(500, seed=22)
    assert cosine(embed_fixed_length(predict, one, HUB_FIXED_LENGTHS),
                  reference(one, tensors, config)) >= 0.9999


def test_fixed_length_runner_refuses_zero_and_nan_outputs():
    x = features(100)
    with pytest.raises(EngineError, match="zero"):
        embed_fixed_length(lambda w: np.zeros((1, 8), np.float32), x, HUB_FIXED_LENGTHS)
    with pytest.raises(EngineError, match="non-finite"):
        embed_fixed_length(lambda w: np.full((1, 8), np.nan, np.float32), x, HUB_FIXED_LENGTHS)
    with pytest.raises(EngineError, match="cancel"):
        combine_windows(np.array([[1.0, 0.0], [-1.0, 0.0]]), [(0, 20), (20, 20)])


def test_compiled_fixed_length_model_needs_macos(tmp_path):
    (tmp_path / HUB_COMPILED_MODEL).mkdir()
    if sys.platform != "darwin":
        with pytest.raises(EngineError, match="only on macOS"):
            CompiledModelRunner(tmp_path / HUB_COMPILED_MODEL)


# ---------------------------------------------------------------- the shared fixture


@pytest.mark.shared
@pytest.mark.parametrize("precision, bar", [("float32", 0.9999), ("float16", 0.999)])
def test_fixture_checkpoint_through_the_package(shared_dir, tmp_path, precision, bar):
    from audio_cli.models import convert
    fixture = shared_dir / "fixtures" / "wespeaker-random"
    model_dir = convert.convert_checkpoint(fixture / "pytorch_model.bin", tmp_path / "model")
    config = ModelConfig.load(model_dir)
    engine = CoreMLEngine(config, Weights(path=model_dir / WEIGHTS_FILE),
                          cache_dir=tmp_path / "cache", precision=precision)
    names = sorted(p.name[: -len(".fbank.npy")] for p in fixture.glob("*.fbank.npy"))
    assert names, "the fixture has no .fbank.npy inputs"
    for name in names:
        fbank = np.load(fixture / f"{name}.fbank.npy")
        expected = np.load(fixture / f"{name}.emb.npy")
        assert cosine(engine.embed(fbank[None])[0], expected) >= bar, name


# ---------------------------------------------------------------- Core ML itself (macOS)


@pytest.mark.macos
@macos
@pytest.mark.parametrize("precision, bar", [("float32", 0.9999), ("float16", 0.999)])
def test_core_ml_predict_matches_reference(small, tmp_path, precision, bar):  # pragma: no cover
    config, tensors, weights = small
    engine = CoreMLEngine(config, weights, cache_dir=tmp_path, precision=precision)
    assert engine.backend == "coreml"
    clips = [features(n, seed=n) for n in (20, 57, 301, 6000)]
    for clip, row in zip(clips, embed_batch(engine, clips), strict=True):
        assert cosine(row, reference(clip, tensors, config)) >= bar
        # Core ML and the reference interpreter run the same package.
        ref = MILInterpreter(engine.package).predict({MEL_INPUT: clip[None]})[EMBEDDING_OUTPUT]
        assert cosine(row, ref) >= bar


@pytest.mark.macos
@macos
def test_core_ml_runs_the_full_size_package(full, tmp_path):  # pragma: no cover
    config, tensors, weights = full
    engine = CoreMLEngine(config, weights, cache_dir=tmp_path)
    x = features(1000, seed=3)
    assert cosine(engine.embed(x[None])[0], reference(x, tensors, config)) >= 0.9999


@pytest.mark.macos
@macos
@pytest.mark.parametrize("precision, bar", [("float32", 0.9999), ("float16", 0.999)])
def test_core_ml_predict_runs_campplus(small_campplus, tmp_path, precision,
                                       bar):  # pragma: no cover
    from engines.onnx_engine import ONNXEngine

    config, _, weights = small_campplus
    engine = CoreMLEngine(config, weights, cache_dir=tmp_path, precision=precision)
    assert engine.backend == "coreml"
    onnx = ONNXEngine(config, weights, cache_dir=tmp_path)
    for frames in CAMPPLUS_LENGTHS:
        x = features(frames, seed=frames)
        assert cosine(engine.embed(x[None])[0], onnx.embed(x[None])[0]) >= bar, frames
