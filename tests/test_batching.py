"""Padded batches and chunked long clips give the vectors each clip gets alone in one pass."""

from __future__ import annotations

import numpy as np
import pytest
from model_factory import random_resnet_weights, small_config
from platforms import needs_mlx

from audio_cli import cosine_similarity
from audio_cli.pipeline.batching import MIN_FILL, Inference, plan_batches
from engines import build_graph
from engines.head import FrameStats, stats_pool, valid_steps
from engines.model import ModelConfig, Weights
from engines.onnx_engine import ONNXEngine
from engines.stages import plan_chunks

BAR = 0.99999
LENGTHS = [9, 20, 57, 200, 201, 233, 250, 333]


def features(frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((frames, 80)).astype(np.float32)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    config = small_config()
    weights = Weights(tensors=random_resnet_weights(config, seed=3))
    engine = ONNXEngine(config, weights, cache_dir=tmp_path_factory.mktemp("onnx"))
    return config, weights, engine


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    """The real ResNet34 topology (3, 4, 6, 3 blocks) with random weights."""
    config = ModelConfig()
    weights = Weights(tensors=random_resnet_weights(config, seed=5))
    return config, ONNXEngine(config, weights, cache_dir=tmp_path_factory.mktemp("onnx34"))


# ---------------------------------------------------------------- plans


def test_batches_group_similar_lengths_within_the_budget():
    lengths = [300, 10, 290, 1000, 12, 950, 11, 5000]
    batches = plan_batches(lengths, budget=2000)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        sizes = [lengths[i] for i in batch]
        assert len(batch) * max(sizes) <= 2000 or len(batch) == 1
        assert min(sizes) >= MIN_FILL * max(sizes)
    assert [3, 5] in [sorted(b) for b in batches]  # 950 and 1000 share a batch


def test_unmaskable_trunks_batch_only_equal_lengths():
    batches = plan_batches([50, 50, 51, 50], budget=10_000, ragged=False)
    assert sorted(map(sorted, batches)) == [[0, 1, 3], [2]]


@pytest.mark.parametrize("frames, chunk, stride, radius", [
    *((frames, 800, 8, 112) for frames in (9, 800, 801, 1000, 5998, 6007)),
    (9000, 1000, 2, 14), (4500, 300, 1, 2), (4500, 300, 1, 0), (7, 2000, 2, 14)])
def test_chunks_tile_every_output_step_once_with_full_context(frames, chunk, stride, radius):
    plan = plan_chunks(frames, chunk, stride, radius)
    kept = [s for c in plan for s in range(c.keep_from, c.keep_to)]
    assert kept == list(range(-(-frames // stride)))
    for c in plan:
        assert c.start % stride == 0 and c.stop - c.start <= chunk
        assert c.start <= max(0, c.keep_from * stride - radius)
        assert c.stop >= min(frames, (c.keep_to - 1) * stride + stride + radius)


def test_chunks_need_room_beside_their_context():
    with pytest.raises(ValueError, match="no room"):
        plan_chunks(5000, 200, 8, 112)


# ---------------------------------------------------------------- pooled statistics


def test_frame_stats_merged_piece_by_piece_equal_one_pass():
    rng = np.random.default_rng(0)
    frames = rng.standard_normal((1000, 16)) * 300 + 5000  # large mean: cancellation-prone
    pieces = [frames[a:b] for a, b in ((0, 1), (1, 400), (400, 401), (401, 1000))]
    stats = FrameStats.of(pieces[0])
    for piece in pieces[1:]:
        stats = stats.merge(FrameStats.of(piece))
    want = np.concatenate([frames.mean(0), frames.std(0, ddof=1)])
    np.testing.assert_allclose(stats.pooled(), want, rtol=1e-10)


def test_stats_pool_ignores_padded_steps():
    rng = np.random.default_rng(1)
    frames = rng.standard_normal((2, 10, 4))
    frames[0, 6:] = 1e6  # garbage in the padding
    pooled = stats_pool(frames, valid_steps(np.array([41, 80]), 8))  # 6 and 10 steps
    np.testing.assert_allclose(pooled[0], stats_pool(frames[:1, :6])[0])


# ---------------------------------------------------------------- batches


def test_onnx_ragged_batch_equals_each_clip_alone(small):
    config, _, engine = small
    clips = [features(n, seed=n) for n in LENGTHS]
    batched = Inference(engine, build_graph(config), batch_frames=10_000).embed_clips(clips)
    assert engine._masked_session is not None  # the ragged path really ran
    for clip, row in zip(clips, batched, strict=True):
        alone = engine.embed(clip[None])[0]
        assert cosine_similarity(alone, row) >= BAR


@needs_mlx
def test_mlx_ragged_batch_equals_each_clip_alone(small):
    from engines.mlx_engine import MLXEngine  # the project's own module: errors fail

    config, weights, onnx = small
    mlx = MLXEngine(build_graph(config), weights)
    clips = [features(n, seed=n) for n in (20, 57, 64)]
    padded = np.zeros((3, 64, 80), dtype=np.float32)
    for row, clip in zip(padded, clips, strict=True):
        row[: len(clip)] = clip
    batched = mlx.embed(padded, np.array([20, 57, 64]))
    for clip, row in zip(clips, batched, strict=True):
        assert cosine_similarity(onnx.embed(clip[None])[0], row) >= BAR


def test_padding_without_lengths_would_change_the_vector(small):
    """The control: the masks are what keeps the padding out."""
    _, _, engine = small
    clip = features(57, seed=57)
    padded = np.concatenate([clip, np.zeros((200, 80), np.float32)])
    alone = engine.embed(clip[None])[0]
    assert cosine_similarity(engine.embed(padded[None], np.array([57]))[0], alone) >= BAR
    assert cosine_similarity(engine.embed(padded[None])[0], alone) < 0.999


# ---------------------------------------------------------------- long clips


@pytest.mark.slow
def test_sixty_seconds_in_chunks_equal_one_pass(full_size):
    config, engine = full_size
    graph = build_graph(config)
    clip = features(5998, seed=60)
    one_pass = Inference(engine, graph, chunk_frames=10**9).embed_clips([clip])[0]
    chunked = Inference(engine, graph, chunk_frames=1000)
    assert len(plan_chunks(5998, 1000, 8, graph.receptive_radius())) >= 7
    assert cosine_similarity(chunked.embed_clips([clip])[0], one_pass) >= BAR


def test_chunked_small_model_equals_one_pass_for_odd_lengths(small):
    config, _, engine = small
    graph = build_graph(config)
    for frames in (1201, 1207, 2000):
        clip = features(frames, seed=frames)
        one_pass = engine.embed(clip[None])[0]
        chunked = Inference(engine, graph, chunk_frames=300).embed_long(clip)
        assert cosine_similarity(chunked, one_pass) >= BAR
