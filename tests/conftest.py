"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest
from model_factory import small_config, write_model

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ../shared directory (fixtures, models, docs); skip the test if absent."""
    if not SHARED_DIR.is_dir():
        pytest.skip(
            "../shared not present (tests that need the shared fixtures only run on the "
            "project's machines)"
        )
    return SHARED_DIR


@pytest.fixture(scope="session")
def small_model_dir(tmp_path_factory) -> Path:
    """A small random-weight ResNet in the hub layout (config.json + model.safetensors)."""
    directory = tmp_path_factory.mktemp("small-model")
    write_model(directory, small_config())
    return directory


CAMPPLUS_CHECKPOINT = "models/campplus-zh-en-common/campplus_cn_en_common.pt"


@pytest.fixture(scope="session")
def campplus_checkpoint(shared_dir) -> Path:
    """3D-Speaker's real CAM++ checkpoint in ../shared; skip the test if absent."""
    path = shared_dir / CAMPPLUS_CHECKPOINT
    if not path.is_file():
        pytest.skip(f"{path} is not present")
    return path


@pytest.fixture(scope="session")
def campplus_dir(campplus_checkpoint, tmp_path_factory) -> Path:
    """That checkpoint converted into a model directory (once per test run)."""
    from audio_cli.models.convert import convert_checkpoint

    return convert_checkpoint(campplus_checkpoint, tmp_path_factory.mktemp("campplus") / "model")


@pytest.fixture(scope="session")
def ray_address() -> str:
    """One local Ray (2 CPUs) for every test of the session that needs one (starting Ray
    costs seconds): its address, for CLI runs to join with `--ray auto` and RAY_ADDRESS."""
    import logging

    ray = pytest.importorskip("ray", reason="Ray (pip install 'audio-speaker[ray]') is not "
                              "installed")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR,
                 log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
