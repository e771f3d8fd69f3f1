"""Where CAM++ comes from: `--model campplus` (download, SHA-256, convert, cache) and
`--model DIR` holding the original checkpoint. No network is used: downloads are pointed at
local file:// URLs or at a closed port."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_run import run_audio
from signals import voiced, write_wav

from audio_cli.models import campplus as campplus_source
from audio_cli.models.registry import resolve_model
from engines.errors import ModelError
from engines.model import ModelConfig

CHECKPOINT = "models/campplus-zh-en-common/campplus_cn_en_common.pt"
CLOSED_PORT_URL = "http://127.0.0.1:9/campplus_cn_en_common.pt"  # discard port: refused


@pytest.fixture
def cache_home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty user cache for the test."""
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv(campplus_source.URL_ENV, raising=False)
    return home


@pytest.fixture
def checkpoint(shared_dir) -> Path:
    path = shared_dir / CHECKPOINT
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return path


def leftovers(cache_home: Path) -> list[str]:
    """Files left anywhere in the cache."""
    return sorted(str(p.relative_to(cache_home)) for p in cache_home.rglob("*") if p.is_file())


def test_unreachable_server_is_a_one_line_model_error(cache_home, monkeypatch):
    monkeypatch.setenv(campplus_source.URL_ENV, CLOSED_PORT_URL)
    with pytest.raises(ModelError, match="cannot download campplus_cn_en_common.pt") as info:
        resolve_model("campplus")
    assert "\n" not in str(info.value)
    assert "--model DIR" in str(info.value)
    assert leftovers(cache_home) == []


def test_wrong_hash_is_an_error_and_the_download_is_removed(cache_home, monkeypatch, tmp_path):
    impostor = tmp_path / "impostor.pt"
    impostor.write_bytes(b"not the checkpoint" * 1000)
    monkeypatch.setenv(campplus_source.URL_ENV, impostor.as_uri())
    with pytest.raises(ModelError, match="SHA-256 .* is not the published"):
        resolve_model("CAMPPLUS")
    assert leftovers(cache_home) == []


def test_download_is_verified_converted_and_cached(cache_home, monkeypatch, checkpoint):
    monkeypatch.setenv(campplus_source.URL_ENV, checkpoint.as_uri())
    model_id, directory = resolve_model("campplus")
    assert model_id == "campplus"
    assert directory == campplus_source.cached_model_dir()
    assert directory.is_relative_to(cache_home)
    config = ModelConfig.load(directory)
    assert config.model_type == "campplus" and config.embedding_dim == 192
    assert not list(directory.parent.glob(".*"))  # no partial download or scratch left

    def no_network(url, destination):
        raise AssertionError("downloaded again although cached")

    monkeypatch.setattr(campplus_source, "download", no_network)
    assert resolve_model("campplus") == (model_id, directory)


def test_directory_with_the_original_checkpoint_converts_into_the_cache(cache_home, checkpoint):
    source = checkpoint.parent
    before = sorted(p.name for p in source.iterdir())
    model_id, directory = resolve_model(str(source))
    assert model_id == str(source)
    assert directory == campplus_source.cached_model_dir(campplus_source.CHECKPOINT_SHA256)
    assert ModelConfig.load(directory).frontend.window == "povey"
    assert sorted(p.name for p in source.iterdir()) == before  # the source stays untouched
    assert resolve_model(str(source)) == (model_id, directory)  # reused, not converted again


def test_directory_with_a_different_checkpoint_is_refused(cache_home, tmp_path):
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / campplus_source.CHECKPOINT_FILE).write_bytes(b"\0" * 4096)
    with pytest.raises(ModelError, match="is not the published"):
        resolve_model(str(folder))
    assert leftovers(cache_home) == []


def test_unknown_model_name_lists_campplus(cache_home):
    with pytest.raises(ModelError, match="campplus"):
        resolve_model("no-such-model")


def test_cli_offline_download_fails_with_one_line(cache_home, tmp_path):
    env = {campplus_source.URL_ENV: CLOSED_PORT_URL}
    clip = write_wav(tmp_path / "x.wav", voiced(1.0))  # inputs are checked before the model
    proc = run_audio("embed-speaker", clip, "--model", "campplus", "--json", env=env)
    assert proc.returncode == 4
    assert proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("audio: error:")]
    assert len(errors) == 1 and "cannot download" in errors[0]
    assert "Traceback" not in proc.stderr
