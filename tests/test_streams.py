"""Streams that cannot be rewound (stdin, pipes, FIFOs, devices) are copied in blocks to a
scratch file, never held whole in memory: /dev/zero and /dev/urandom are refused as not audio,
an endless stream stops at the limit ($AUDIO_MAX_STREAM_BYTES), a scratch folder short of space
is one line, and no scratch file is left behind. Runs that read devices or endless pipes run in
a child process under an address-space limit, so a regression fails instead of filling memory.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from cli_run import audio_cmd, run_audio
from signals import voiced, write_wav

from audio_cli import cosine_similarity
from audio_cli.frontend.inputs import (
    MAX_STREAM_BYTES,
    STREAM_BLOCK,
    looks_like_audio,
    max_stream_bytes,
)
from engines.errors import UsageError

MEMORY_LIMIT = 2 << 30  # bytes of address space for a child run that reads a device
TIMEOUT = 120  # seconds for one child run


def limited_run(*args: str, stdin=None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`audio ARGS` in a child process whose address space is capped at MEMORY_LIMIT."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run(audio_cmd(*args), stdin=stdin, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, preexec_fn=cap, timeout=TIMEOUT)


def leftovers(folder: Path) -> list[str]:
    """Files in a TMPDIR after a run, but for onnxruntime's own `.ses` (a session id it writes
    to the temporary folder when imported)."""
    return sorted(path.name for path in folder.iterdir() if path.name != ".ses")


def embed_args(path: str, model: Path) -> list[str]:
    return ["embed-speaker", path, "--model", str(model), "--json"]


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """40 s of 16 kHz 16-bit voice (1.28 MB: more than one copy block)."""
    path = write_wav(tmp_path_factory.mktemp("streams") / "long.wav", voiced(40.0))
    assert path.stat().st_size > STREAM_BLOCK
    return path


@pytest.fixture
def scratch(tmp_path) -> Path:
    """An empty folder for TMPDIR: the scratch copies go there."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    return folder


# ---------------------------------------------------------------- devices and endless streams


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_device_is_refused_as_not_audio_in_bounded_memory(device, small_model_dir, scratch):
    proc = limited_run(*embed_args(device, small_model_dir),
                       env={"TMPDIR": str(scratch), "AUDIO_MAX_STREAM_BYTES": "10M"})
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == [
        f"audio: error: {device}: not audio (its first 1 MiB start like no format libsndfile "
        "reads)"]
    assert leftovers(scratch) == []


def test_endless_stream_stops_at_the_limit(long_clip, small_model_dir, scratch):
    """A WAV header then zeros forever (`cat voice.wav /dev/zero | audio embed-speaker -`)."""
    feeder = subprocess.Popen(["cat", str(long_clip), "/dev/zero"], stdout=subprocess.PIPE)
    try:
        proc = limited_run(*embed_args("-", small_model_dir), stdin=feeder.stdout,
                           env={"TMPDIR": str(scratch), "AUDIO_MAX_STREAM_BYTES": "10M"})
    finally:
        feeder.stdout.close()
        feeder.kill()
        feeder.wait()
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.splitlines() == [
        "audio: error: stdin: more than 10 MiB of input (the limit for a stream; save it to a "
        "file, or raise AUDIO_MAX_STREAM_BYTES)"]
    assert leftovers(scratch) == []


# ---------------------------------------------------------------- real audio still streams


def test_long_stdin_gives_the_file_vector_and_leaves_no_scratch_file(long_clip, small_model_dir,
                                                                     scratch):
    from_file = run_audio(*embed_args(str(long_clip), small_model_dir))
    assert from_file.returncode == 0, from_file.stderr
    with open(long_clip, "rb") as stream:
        piped = limited_run(*embed_args("-", small_model_dir), stdin=stream,
                            env={"TMPDIR": str(scratch)})
    assert piped.returncode == 0, piped.stderr
    similarity = cosine_similarity(json.loads(from_file.stdout)["embedding"],
                                   json.loads(piped.stdout)["embedding"])
    assert similarity > 0.99999
    assert leftovers(scratch) == []


def test_stream_that_is_not_audio_leaves_no_scratch_file(small_model_dir, scratch):
    proc = run_audio(*embed_args("-", small_model_dir), stdin=b"not audio at all\n" * 1000,
                     env={"TMPDIR": str(scratch)})
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[0].startswith("audio: error: stdin: not a readable audio")
    assert leftovers(scratch) == []


def test_full_scratch_folder_is_one_line(long_clip, small_model_dir, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10 << 30, 10 << 30, 4096))
    proc = run_audio(*embed_args("-", small_model_dir), stdin=long_clip.read_bytes())
    assert proc.returncode == 3
    lines = proc.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("audio: error: stdin: the scratch folder ")
    assert "has only 4 KiB free, too little to hold the stream; set TMPDIR" in lines[0]


# ---------------------------------------------------------------- the rules


def test_limit_variable(monkeypatch):
    monkeypatch.delenv("AUDIO_MAX_STREAM_BYTES", raising=False)
    assert max_stream_bytes() == MAX_STREAM_BYTES > 24 * 3600 * 16000 * 2
    for text, value in [("123", 123), ("10M", 10 << 20), ("4GiB", 4 << 30), ("2 g", 2 << 30),
                        ("512KB", 512 << 10)]:
        monkeypatch.setenv("AUDIO_MAX_STREAM_BYTES", text)
        assert max_stream_bytes() == value, text
    for text in ["0", "-5", "lots", "1.5G"]:
        monkeypatch.setenv("AUDIO_MAX_STREAM_BYTES", text)
        with pytest.raises(UsageError, match="AUDIO_MAX_STREAM_BYTES"):
            max_stream_bytes()


WRITABLE = [("WAV", "PCM_16"), ("FLAC", "PCM_16"), ("OGG", "VORBIS"), ("OGG", "OPUS"),
            ("AIFF", "PCM_16"), ("AU", "PCM_16"), ("CAF", "PCM_16"), ("W64", "PCM_16"),
            ("RF64", "PCM_16"), ("WAVEX", "PCM_16"), ("MP3", "MPEG_LAYER_III"),
            ("NIST", "PCM_16"), ("IRCAM", "PCM_16"), ("VOC", "PCM_16"), ("PAF", "PCM_16"),
            ("SVX", "PCM_16"), ("MAT4", "PCM_16"), ("MAT5", "PCM_16"), ("PVF", "PCM_16"),
            ("HTK", "PCM_16"), ("SDS", "PCM_16"), ("AVR", "PCM_16"), ("WVE", "ALAW"),
            ("MPC2K", "PCM_16"), ("XI", "DPCM_16")]


@pytest.mark.parametrize(("kind", "subtype"), WRITABLE)
def test_formats_libsndfile_reads_are_not_refused_early(kind, subtype, tmp_path):
    path = tmp_path / f"clip.{kind.lower()}"
    try:
        sf.write(str(path), voiced(2.0), 16000, format=kind, subtype=subtype)
    except (RuntimeError, TypeError, ValueError) as exc:
        pytest.skip(f"libsndfile here does not write {kind}/{subtype}: {exc}")
    assert looks_like_audio(path.read_bytes()[:STREAM_BLOCK]), kind


def test_zeros_and_random_bytes_are_refused_early():
    assert not looks_like_audio(bytes(STREAM_BLOCK))
    rng = np.random.default_rng(0)
    refused = sum(not looks_like_audio(rng.bytes(STREAM_BLOCK)) for _ in range(20))
    assert refused >= 19
