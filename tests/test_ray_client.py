"""Issue 26: `--ray ray://HOST:PORT` without Ray Client's package (grpcio) is a usage error
(exit 2, one line with the install command), not an internal error."""

from __future__ import annotations

import sys

import pytest
from cli_run import run_audio
from signals import voiced, write_wav
from store_helpers import make_model

pytest.importorskip("ray", reason="Ray (pip install 'audio-speaker[ray]') is not installed")
pytest.importorskip("pyarrow", reason="pyarrow is not installed")


def test_ray_client_address_without_the_client_package_is_status_2(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "grpc", None)  # as if grpcio were not installed
    wav = write_wav(tmp_path / "a.wav", voiced(1.5))
    model = make_model(tmp_path / "model")
    proc = run_audio("embed-speaker", wav, "--model", model, "--ray", "ray://127.0.0.1:1",
                     "--output", tmp_path / "out.parquet")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "audio: error: --ray ray://127.0.0.1:1: Ray Client is not installed here "
        "(pip install 'ray[client]')"]


def test_ray_clients_own_refusal_is_a_usage_error_too():
    from audio_cli.cli.distributed import _start
    from engines.errors import UsageError

    class Ray:  # ray.init as Ray 2.x fails without the client package
        @staticmethod
        def init(**_):
            raise ValueError("Ray Client requires pip package `ray[client]`.")

    with pytest.raises(UsageError, match=r"pip install 'ray\[client\]'"):
        _start(Ray, "ray://127.0.0.1:1")
