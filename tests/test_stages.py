"""A long CAM++ clip runs stage by stage (engines/stages.py) in bounded memory, and gives the
vector of one pass over the whole clip; with 3D-Speaker's real weights and real speech."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_audio
from signals import write_wav

from audio_cli.frontend.audio import load_audio
from audio_cli.pipeline.batching import Inference
from audio_cli.pipeline.speaker import WeSpeaker
from engines.graph import Concat, ContextPool
from engines.stages import SegmentContext, Stage, plan_stages

SPEECH_DIR = "data/speech/librispeech-test-other-10x10"
STAGED_COSINE = 0.99999  # staged against one pass, float32


@pytest.fixture(scope="module")
def campplus(campplus_dir) -> WeSpeaker:
    return WeSpeaker.from_pretrained(campplus_dir, engine="onnx")


@pytest.fixture(scope="module")
def long_speech(shared_dir, tmp_path_factory) -> Path:
    """About 80 s of real speech from several speakers, as one 16 kHz WAV."""
    files = sorted((shared_dir / SPEECH_DIR).glob("*/*.flac"))[::9]
    if not files:
        pytest.skip(f"{shared_dir / SPEECH_DIR} is not present")
    samples, total = [], 0
    for path in files:
        samples.append(load_audio(path).samples)
        total += len(samples[-1])
        if total > 80 * 16000:
            break
    return write_wav(tmp_path_factory.mktemp("long") / "long.wav", np.concatenate(samples))


@pytest.fixture(scope="module")
def one_pass(campplus, long_speech) -> np.ndarray:
    """The vector of the whole clip in one run of the full graph (the reference here)."""
    features = campplus.features(load_audio(long_speech))
    return campplus.engine.embed(features[None])[0]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_the_trunk_is_cut_at_every_context_pool_and_concat(campplus):
    graph = campplus.inference.graph
    steps = plan_stages(graph)
    pools = [op for op in graph.trunk_ops() if isinstance(op, ContextPool)]
    assert [s for s in steps if isinstance(s, ContextPool)] == pools
    assert len(pools) == sum(campplus.config.layers)
    stages = [s for s in steps if isinstance(s, Stage)]
    assert not any(isinstance(op, ContextPool | Concat) for s in stages for op in s.ops)
    assert stages[0].inputs == ("features",) and stages[0].stride == 2
    assert all(s.stride == 1 for s in stages[1:])
    assert "frames" in stages[-1].outputs


@pytest.mark.parametrize("chunk", [300, 1000])
def test_a_staged_clip_equals_one_pass(campplus, long_speech, one_pass, chunk):
    inference = Inference(campplus.engine, campplus.inference.graph, chunk_frames=chunk)
    features = campplus.features(load_audio(long_speech))
    assert inference.needs_chunks(len(features))
    staged = inference.embed_long(features)
    assert cosine(staged, one_pass) >= STAGED_COSINE


def test_a_long_file_streams_through_the_stages_from_the_cli(campplus_dir, long_speech,
                                                             one_pass):
    """80 s: more than the 60 s one pass takes, so the CLI streams it in stages."""
    proc = run_audio("embed-speaker", long_speech, "--model", campplus_dir, "--json")
    assert proc.returncode == 0, proc.stderr
    vector = np.array(json.loads(proc.stdout)["embedding"], dtype=np.float32)
    assert cosine(vector, one_pass) >= STAGED_COSINE


def test_the_kept_values_stay_near_one_dense_block(campplus, long_speech):
    """numpy holds the widest dense block (1024 channels x T/2 steps) and little more: each
    dense block appends into one buffer, and the transit layer writes over the block it
    reads. (Kept values come to ~1.16 blocks; the rest is one chunk's temporaries. A transit
    layer with an output of its own would add half a block, plain concatenation a block.)"""
    inference = Inference(campplus.engine, campplus.inference.graph, chunk_frames=300)
    features = campplus.features(load_audio(long_speech))
    inference.embed_long(features)  # sessions built before measuring
    block = 1024 * -(-len(features) // 2) * 4
    tracemalloc.start()
    try:
        inference.embed_long(features)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak <= 1.8 * block, f"numpy peak {peak / 2**20:.1f} MiB, block {block / 2**20:.1f}"


@pytest.mark.parametrize("steps", [1, 99, 100, 101, 250, 1234])
def test_segment_context_is_the_mean_plus_the_segment_mean(steps):
    x = np.random.default_rng(steps).standard_normal((3, steps)).astype(np.float32)
    expected = np.empty_like(x, dtype=np.float64)
    for t in range(steps):
        first = t // 100 * 100
        expected[:, t] = x.mean(axis=1, dtype=np.float64) + x[:, first:first + 100].mean(
            axis=1, dtype=np.float64)
    context = SegmentContext.of(x, 100)
    assert context.shape == x.shape
    np.testing.assert_allclose(context.span(0, steps), expected, rtol=1e-6, atol=1e-6)
    for start, stop in [(0, 1), (steps // 3, steps), (max(0, steps - 7), steps)]:
        np.testing.assert_array_equal(context.span(start, stop),
                                      context.span(0, steps)[:, start:stop])
