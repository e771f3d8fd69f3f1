"""The torch-free checkpoint reader and the checkpoint -> model directory converter."""

from __future__ import annotations

import builtins
import collections
import json
import os
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from torchzip import TensorView, write_torch_zip

from audio_cli.models.convert import ATTRIBUTION_FILE, convert_checkpoint
from audio_cli.models.torch_checkpoint import (
    StubObject,
    find_state_dict,
    load_torch_checkpoint,
    read_torch_state_dict,
)
from engines.errors import ModelError
from engines.model import CONFIG_FILE, WEIGHTS_FILE, ModelConfig, load_safetensors

FIXTURE = "fixtures/wespeaker-random"
CAMPPLUS = "models/campplus-zh-en-common/campplus_cn_en_common.pt"


# ---------------------------------------------------------------- helpers


def tiny_resnet(seed: int = 0, n_mels: int = 8) -> dict[str, np.ndarray]:
    """A small random WeSpeaker-style ResNet state_dict: layers (1, 2), channels (4, 8)."""
    rng = np.random.default_rng(seed)
    state: dict[str, np.ndarray] = {}

    def conv(name: str, out: int, inp: int, k: int) -> None:
        state[f"{name}.weight"] = rng.normal(size=(out, inp, k, k)).astype(np.float32)

    def bn(name: str, n: int) -> None:
        state[f"{name}.weight"] = rng.uniform(0.5, 1.5, n).astype(np.float32)
        state[f"{name}.bias"] = rng.normal(0, 0.1, n).astype(np.float32)
        state[f"{name}.running_mean"] = rng.normal(0, 0.1, n).astype(np.float32)
        state[f"{name}.running_var"] = rng.uniform(0.5, 2.0, n).astype(np.float32)
        state[f"{name}.num_batches_tracked"] = np.array(7, dtype=np.int64)

    conv("conv1", 4, 1, 3)
    bn("bn1", 4)
    inp = 4
    for layer, (blocks, out) in enumerate(zip((1, 2), (4, 8), strict=True), start=1):
        for i in range(blocks):
            p = f"layer{layer}.{i}"
            conv(f"{p}.conv1", out, inp, 3)
            bn(f"{p}.bn1", out)
            conv(f"{p}.conv2", out, out, 3)
            bn(f"{p}.bn2", out)
            if inp != out:
                conv(f"{p}.shortcut.0", out, inp, 1)
                bn(f"{p}.shortcut.1", out)
            inp = out
    pooled = 2 * 8 * (n_mels // 2)
    state["seg_1.weight"] = rng.normal(size=(6, pooled)).astype(np.float32)
    state["seg_1.bias"] = rng.normal(size=6).astype(np.float32)
    return state


def fixture_manifest(shared_dir: Path) -> dict:
    """The wespeaker-random manifest."""
    return json.loads((shared_dir / FIXTURE / "manifest.json").read_text())


def assert_one_line_model_error(excinfo: pytest.ExceptionInfo) -> None:
    """The error is a ModelError with a non-empty single-line message."""
    message = str(excinfo.value)
    assert message and "\n" not in message


@pytest.fixture(scope="module")
def pyannote_converted(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture checkpoint converted once for the module."""
    out = tmp_path_factory.mktemp("converted") / "model"
    return convert_checkpoint(shared_dir / FIXTURE / "pytorch_model.bin", out)


# ---------------------------------------------------------------- reader: real files


@pytest.mark.shared
def test_reader_on_fixture_checkpoint(shared_dir: Path) -> None:
    manifest = fixture_manifest(shared_dir)
    checkpoint = load_torch_checkpoint(shared_dir / FIXTURE / "pytorch_model.bin")
    assert list(checkpoint) == manifest["checkpoint"]["top_level_keys"]
    specifications = checkpoint["pyannote.audio"]["specifications"]
    assert isinstance(specifications, StubObject)
    assert isinstance(specifications.state["problem"], StubObject)
    assert isinstance(checkpoint["pyannote.audio"]["versions"]["torch"], StubObject)

    tensors = find_state_dict(checkpoint)
    expected = manifest["checkpoint"]["state_dict_keys"]
    assert len(tensors) == 218
    assert list(tensors) == list(expected)
    assert {k: list(v.shape) for k, v in tensors.items()} == expected
    assert tensors["resnet.bn1.num_batches_tracked"].dtype == np.int64
    assert tensors["resnet.conv1.weight"].dtype == np.float32


@pytest.mark.shared
def test_reader_on_campplus_state_dict(shared_dir: Path) -> None:
    tensors = read_torch_state_dict(shared_dir / CAMPPLUS)
    dtypes = collections.Counter(str(v.dtype) for v in tensors.values())
    assert len(tensors) == 937
    assert dtypes == {"float32": 815, "int64": 122}
    assert tensors["head.conv1.weight"].shape == (32, 1, 3, 3)
    assert tensors["xvector.dense.linear.weight"].shape == (192, 1024, 1)
    assert all(np.isfinite(v).all() for v in tensors.values())


# ---------------------------------------------------------------- reader: synthetic archives


def test_reader_strided_shared_and_dtypes(tmp_path: Path) -> None:
    base = np.arange(12, dtype=np.float32)
    arrays = {
        "f64": np.linspace(-1, 1, 5),
        "f16": np.array([0.5, -2.0], dtype=np.float16),
        "i32": np.array([[1, -2], [3, 4]], dtype=np.int32),
        "u8": np.array([0, 255], dtype=np.uint8),
        "bool": np.array([True, False, True]),
        "scalar": np.array(5, dtype=np.int64),
    }
    state = collections.OrderedDict(arrays)
    state["transposed"] = TensorView(base, 0, (4, 3), (1, 4))
    state["offset_view"] = TensorView(base, 2, (2, 2), (5, 1))
    path = write_torch_zip(tmp_path / "x.pt", state)

    tensors = read_torch_state_dict(path)
    for name, array in arrays.items():
        assert tensors[name].dtype == array.dtype
        np.testing.assert_array_equal(tensors[name], array)
    np.testing.assert_array_equal(tensors["transposed"], base.reshape(3, 4).T)
    np.testing.assert_array_equal(tensors["offset_view"], [[2, 3], [7, 8]])
    assert tensors["transposed"].flags.writeable


def test_finds_nested_state_dict(tmp_path: Path) -> None:
    state = {"w": np.ones((2, 2), np.float32)}
    path = write_torch_zip(tmp_path / "x.pt", {"epoch": 3, "model": state, "optimizer": {}})
    assert list(read_torch_state_dict(path)) == ["w"]


class AttributeDict(dict):
    """A dict subclass the reader cannot import (as Lightning's hyper-parameter dict)."""


class Tags(list):
    """A list subclass the reader cannot import."""


def test_unknown_dict_and_list_subclasses_are_stubbed(tmp_path: Path) -> None:
    state = {"w": np.ones(3, np.float32)}
    checkpoint = {
        "hyper_parameters": AttributeDict(lr=0.1, tags=Tags(["a", "b"])),
        "wrapped": AttributeDict(state_dict=AttributeDict(state)),
    }
    loaded = load_torch_checkpoint(write_torch_zip(tmp_path / "x.pt", checkpoint))
    hyper = loaded["hyper_parameters"]
    assert isinstance(hyper, StubObject)
    assert hyper.items["lr"] == 0.1
    assert hyper.items["tags"].elements == ["a", "b"]
    np.testing.assert_array_equal(find_state_dict(loaded)["w"], state["w"])


def test_no_tensors_is_model_error(tmp_path: Path) -> None:
    path = write_torch_zip(tmp_path / "x.pt", {"epoch": 3, "note": "no tensors"})
    with pytest.raises(ModelError, match="no dict of tensors") as excinfo:
        read_torch_state_dict(path)
    assert_one_line_model_error(excinfo)


def test_tensor_past_its_storage_is_refused(tmp_path: Path) -> None:
    storage = np.zeros(4, dtype=np.float32)
    path = write_torch_zip(tmp_path / "x.pt", {"w": TensorView(storage, 2, (4,), (1,))})
    with pytest.raises(ModelError, match="past its storage") as excinfo:
        read_torch_state_dict(path)
    assert_one_line_model_error(excinfo)


class _SystemCall:
    """Pickles as a call to os.system (the classic malicious pickle)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


class _ExecCall:
    """Pickles as a call to builtins.exec."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple:
        return builtins.exec, (self.code,)


@pytest.mark.parametrize("kind", ["system", "exec"])
def test_malicious_pickle_does_not_run(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    if kind == "system":
        payload = _SystemCall(f"touch '{marker}'")
    else:
        payload = _ExecCall(f"open({str(marker)!r}, 'w').write('x')")
    data = pickle.dumps({"w": payload}, protocol=2)
    assert b"system" in data or b"exec" in data  # the payload really is in the pickle
    path = write_torch_zip(tmp_path / "evil.pt", None, data_pkl=data)

    loaded = load_torch_checkpoint(path)
    assert isinstance(loaded["w"], StubObject)
    with pytest.raises(ModelError):
        read_torch_state_dict(path)
    assert not marker.exists()


def test_reader_never_imports_modules(tmp_path: Path, monkeypatch) -> None:
    name = "audio_tests_import_marker"  # a module of this test's own, importable from here
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\ns = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    data = b"\x80\x02}q\x00X\x01\x00\x00\x00zq\x01c" + name.encode() + b"\ns\nq\x02s."
    path = write_torch_zip(tmp_path / "import.pt", None, data_pkl=data)  # {"z": <name>.s}
    loaded = load_torch_checkpoint(path)
    assert isinstance(loaded["z"], type) and issubclass(loaded["z"], StubObject)
    assert name not in sys.modules and not marker.exists()


def _zip_with(tmp_path: Path, entries: dict[str, bytes]) -> Path:
    """A zip archive holding the given entries."""
    path = tmp_path / "bad.pt"
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize(
    "case", ["random_bytes", "empty", "truncated", "no_data_pkl", "garbage_pickle", "no_storage"]
)
def test_corrupt_files_are_model_errors(tmp_path: Path, case: str) -> None:
    good = write_torch_zip(tmp_path / "good.pt", {"w": np.ones(1000, np.float32)})
    if case == "random_bytes":
        path = tmp_path / "r.pt"
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "empty":
        path = tmp_path / "e.pt"
        path.write_bytes(b"")
    elif case == "truncated":
        path = tmp_path / "t.pt"
        path.write_bytes(good.read_bytes()[:1500])
    elif case == "no_data_pkl":
        path = _zip_with(tmp_path, {"archive/version": b"3\n"})
    elif case == "garbage_pickle":
        path = _zip_with(tmp_path, {"archive/data.pkl": b"\x80\x02not a pickle"})
    else:
        with zipfile.ZipFile(good) as zf:
            path = _zip_with(tmp_path, {"archive/data.pkl": zf.read("archive/data.pkl")})
    with pytest.raises(ModelError) as excinfo:
        read_torch_state_dict(path)
    assert_one_line_model_error(excinfo)


@pytest.mark.parametrize("case", ["missing", "directory"])
def test_unreadable_paths_are_model_errors(tmp_path: Path, case: str) -> None:
    path = tmp_path / "nothing.pt" if case == "missing" else tmp_path
    with pytest.raises(ModelError) as excinfo:
        read_torch_state_dict(path)
    assert_one_line_model_error(excinfo)


# ---------------------------------------------------------------- converter: fixture


@pytest.mark.shared
def test_fixture_conversion_matches_manifest(shared_dir: Path, pyannote_converted: Path) -> None:
    expected = fixture_manifest(shared_dir)["mlx_safetensors"]
    tensors = load_safetensors(pyannote_converted / WEIGHTS_FILE)
    assert list(tensors) == [entry["name"] for entry in expected["tensors"]]
    assert len(tensors) == expected["count"] == 74
    for entry in expected["tensors"]:
        array = tensors[entry["name"]]
        values = array.astype(np.float64)
        assert array.dtype == np.float32, entry["name"]
        assert list(array.shape) == entry["shape"], entry["name"]
        assert values.sum() == pytest.approx(entry["sum"], rel=1e-4), entry["name"]
        assert np.sqrt((values**2).sum()) == pytest.approx(entry["l2"], rel=1e-5), entry["name"]
        np.testing.assert_allclose(values.ravel()[:4], entry["head"], rtol=0, atol=1e-6)


@pytest.mark.shared
def test_fixture_conversion_config_and_licence(shared_dir: Path, pyannote_converted: Path) -> None:
    expected = fixture_manifest(shared_dir)["mlx_safetensors"]["config_json"]
    config = ModelConfig.load(pyannote_converted)
    for key in ("sample_rate", "n_mels", "embedding_dim", "pooling_output_dim"):
        assert getattr(config, key) == expected[key]
    assert list(config.layers) == expected["layers"]
    assert list(config.channels) == expected["channels"]
    assert config.license == "CC-BY-4.0"
    assert "pytorch_model.bin" in config.model_id
    assert sorted(p.name for p in pyannote_converted.iterdir()) == sorted(
        [WEIGHTS_FILE, CONFIG_FILE, ATTRIBUTION_FILE]
    )
    text = (pyannote_converted / ATTRIBUTION_FILE).read_text()
    for needle in ("CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/", "VoxCeleb"):
        assert needle in text
    for needle in ("wenet-e2e/wespeaker", "pyannote", "BatchNorm"):
        assert needle in text


@pytest.mark.shared
@pytest.mark.parametrize("prefix", ["", "module."])
def test_wespeaker_pt_converts_like_pyannote(
    shared_dir: Path, pyannote_converted: Path, tmp_path: Path, prefix: str
) -> None:
    pyannote = read_torch_state_dict(shared_dir / FIXTURE / "pytorch_model.bin")
    state = collections.OrderedDict(
        (prefix + name.removeprefix("resnet."), array) for name, array in pyannote.items()
    )
    state[prefix + "projection.weight"] = np.ones((10, 256), dtype=np.float32)
    source = write_torch_zip(tmp_path / "voxceleb_resnet34_LM.pt", state)

    out = convert_checkpoint(source, tmp_path / "out")
    ours, reference = (
        load_safetensors(out / WEIGHTS_FILE),
        load_safetensors(pyannote_converted / WEIGHTS_FILE),
    )
    assert list(ours) == list(reference)
    for name, array in reference.items():
        np.testing.assert_array_equal(ours[name], array, err_msg=name)
    assert ModelConfig.load(out).model_id == "voxceleb_resnet34_LM.pt"


@pytest.mark.shared
def test_campplus_is_taken_for_campplus_not_a_resnet(shared_dir: Path) -> None:
    from audio_cli.models.convert import detect_family

    tensors = read_torch_state_dict(shared_dir / CAMPPLUS)
    assert detect_family(tensors).name == "3D-Speaker CAM++"


# ---------------------------------------------------------------- converter: synthetic


def test_fusion_transpose_and_config_on_tiny_resnet(tmp_path: Path) -> None:
    state = tiny_resnet()
    source = write_torch_zip(
        tmp_path / "tiny.pt", {"state_dict": {f"resnet.{k}": v for k, v in state.items()}}
    )
    out = convert_checkpoint(source, tmp_path / "a" / "b")  # missing parents are created
    tensors = load_safetensors(out / WEIGHTS_FILE)

    for conv, bn, name in [
        ("conv1", "bn1", "conv1"),
        ("layer2.1.conv2", "layer2.1.bn2", "layer2.1.conv2"),
        ("layer2.0.shortcut.0", "layer2.0.shortcut.1", "layer2.0.shortcut"),
    ]:
        gamma, beta, mean, var = (
            state[f"{bn}.{k}"].astype(np.float64)
            for k in ("weight", "bias", "running_mean", "running_var")
        )
        scale = gamma / np.sqrt(var + 1e-5)  # PyTorch's BatchNorm eps
        weight = state[f"{conv}.weight"].astype(np.float64) * scale[:, None, None, None]
        np.testing.assert_allclose(
            tensors[f"{name}.weight"], weight.transpose(0, 2, 3, 1), rtol=1e-6
        )
        np.testing.assert_allclose(
            tensors[f"{name}.bias"], beta - mean * scale, rtol=1e-6, atol=1e-7
        )
    np.testing.assert_array_equal(tensors["embedding.weight"], state["seg_1.weight"])
    assert "layer1.0.shortcut.weight" not in tensors
    assert len(tensors) == 2 * (1 + 2 * 3 + 1) + 2

    config = ModelConfig.load(out)
    assert (config.layers, config.channels) == ((1, 2), (4, 8))
    assert (config.embedding_dim, config.pooling_output_dim, config.n_mels) == (6, 64, 8)
    assert config.frontend.num_mel_bins == 8


@pytest.mark.parametrize("existing", [WEIGHTS_FILE, CONFIG_FILE])
def test_overwrite_is_refused(tmp_path: Path, existing: str) -> None:
    source = write_torch_zip(tmp_path / "tiny.pt", tiny_resnet())
    out = tmp_path / "out"
    out.mkdir()
    (out / existing).write_text("keep me")
    with pytest.raises(ModelError, match="will not overwrite") as excinfo:
        convert_checkpoint(source, out)
    assert_one_line_model_error(excinfo)
    assert (out / existing).read_text() == "keep me"
    assert [p.name for p in out.iterdir()] == [existing]


def test_second_conversion_into_same_dir_is_refused(tmp_path: Path) -> None:
    source = write_torch_zip(tmp_path / "tiny.pt", tiny_resnet())
    out = convert_checkpoint(source, tmp_path / "out")
    before = (out / WEIGHTS_FILE).read_bytes()
    with pytest.raises(ModelError, match="will not overwrite"):
        convert_checkpoint(source, out)
    assert (out / WEIGHTS_FILE).read_bytes() == before


def test_interrupted_write_leaves_no_partial_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_save(path: Path, tensors: dict, metadata: dict | None = None) -> None:
        Path(path).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("audio_cli.models.convert.save_safetensors", failing_save)
    source = write_torch_zip(tmp_path / "tiny.pt", tiny_resnet())
    out = tmp_path / "out"
    with pytest.raises(ModelError, match="No space left") as excinfo:
        convert_checkpoint(source, out)
    assert_one_line_model_error(excinfo)
    assert list(out.iterdir()) == []


def test_unrecognised_layout_names_what_was_expected(tmp_path: Path) -> None:
    state = {"head.conv1.weight": np.ones((32, 1, 3, 3), np.float32)}
    source = write_torch_zip(tmp_path / "campplus_like.pt", state)
    with pytest.raises(ModelError, match="expected a WeSpeaker ResNet.*seg_1") as excinfo:
        convert_checkpoint(source, tmp_path / "out")
    assert_one_line_model_error(excinfo)


def test_unknown_extra_tensor_is_refused(tmp_path: Path) -> None:
    state = tiny_resnet()
    state["seg_2.weight"] = np.ones((6, 6), np.float32)
    source = write_torch_zip(tmp_path / "two_emb.pt", state)
    with pytest.raises(ModelError, match="seg_2.weight"):
        convert_checkpoint(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_batchnorm_tensor_is_model_error(tmp_path: Path) -> None:
    state = tiny_resnet()
    del state["layer2.0.bn1.running_var"]
    source = write_torch_zip(tmp_path / "broken.pt", state)
    with pytest.raises(ModelError, match="layer2.0.bn1.running_var"):
        convert_checkpoint(source, tmp_path / "out")
