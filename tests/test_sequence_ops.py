"""The sequence ops CAM++ adds to the shared graph, each engine against numpy on random data:
the context pooling at segment edges, dilated/strided 1-D convolution, affine, gate, concat."""

from __future__ import annotations

import numpy as np
import pytest

from engines.graph import (
    FRAMES,
    INPUT,
    OUTPUT,
    Affine,
    Concat,
    ContextPool,
    Conv1d,
    Graph,
    ImageToSequence,
    L2Normalize,
    Linear,
    Mul,
    SequenceToFrames,
    Sigmoid,
    StatsPool,
    ToImage,
)
from engines.model import ModelConfig, Weights

BINS = 6  # feature bins = sequence channels here
SEGMENT = 4  # a short segment so the edge cases are cheap
LENGTHS = (1, 3, 4, 5, 8, 11)  # frames: shorter than, equal to and across segment edges


def context_pool(x: np.ndarray, segment: int) -> np.ndarray:
    """(T, C) -> utterance mean + mean of each frame's segment (last segment: what it holds)."""
    out = np.empty_like(x)
    for start in range(0, len(x), segment):
        out[start:start + segment] = x[start:start + segment].mean(axis=0)
    return out + x.mean(axis=0)


def conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int, dil: int):
    """(T, I) * [O, k, I] -> (T', O), zero padding."""
    padded = np.pad(x, [(pad, pad), (0, 0)])
    k = w.shape[1]
    steps = (len(padded) - dil * (k - 1) - 1) // stride + 1
    return np.stack([sum(padded[t * stride + j * dil] @ w[:, j, :].T for j in range(k)) + b
                     for t in range(steps)])


def graph_of(trunk) -> Graph:
    """features -> sequence -> trunk(g, x) -> FRAMES, then the shared head."""
    g = Graph()
    x = g.add(ImageToSequence(g.add(ToImage(INPUT, "image")), "seq"))
    x = g.add(SequenceToFrames(trunk(g, x), FRAMES))
    g.add(L2Normalize(g.add(Linear(g.add(StatsPool(x, "pooled")), "raw", "lin.w", "lin.b")),
                      OUTPUT))
    return g


def engines(graph: Graph, tensors: dict, tmp_path, frames_dim: int):
    """(name, engine) for ONNX and, when installed, MLX."""
    tensors = {**tensors, "lin.w": np.eye(2 * frames_dim, dtype=np.float32)[:3],
               "lin.b": np.zeros(3, np.float32)}
    config = ModelConfig(model_type="test", n_mels=BINS, embedding_dim=3)
    from engines.onnx_engine import ONNXEngine

    found = [("onnx", ONNXEngine(config, Weights(tensors=tensors), cache_dir=tmp_path,
                                 graph=graph))]
    try:
        from engines.mlx_engine import MLXEngine
    except Exception:  # noqa: BLE001 - MLX absent on this platform
        return found
    return found + [("mlx", MLXEngine(graph, Weights(tensors=tensors)))]


@pytest.mark.parametrize("frames", LENGTHS)
def test_context_pool_at_segment_edges(frames, tmp_path):
    graph = graph_of(lambda g, x: g.add(ContextPool(x, "ctx", SEGMENT)))
    assert not graph.time_local
    x = np.random.default_rng(frames).standard_normal((2, frames, BINS)).astype(np.float32)
    for name, engine in engines(graph, {}, tmp_path, BINS):
        got = engine.encode(x)
        for row in range(2):
            np.testing.assert_allclose(got[row], context_pool(x[row].astype(np.float64), SEGMENT),
                                       atol=1e-5, err_msg=f"{name} T={frames}")


@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (1, 2), (2, 1)])
def test_conv1d_affine_gate_concat(stride, dilation, tmp_path):
    """concat(x, conv(affine(x)) * sigmoid(conv1x1(x))) for stride/dilation variants."""
    rng = np.random.default_rng(stride * 10 + dilation)
    k, out = 3, 5
    pad = dilation * (k // 2)
    t = {"a.w": rng.uniform(0.5, 2, BINS).astype(np.float32),
         "a.b": rng.standard_normal(BINS).astype(np.float32),
         "c.w": rng.standard_normal((out, k, BINS)).astype(np.float32),
         "m.w": rng.standard_normal((out, 1, BINS)).astype(np.float32),
         "m.b": rng.standard_normal(out).astype(np.float32)}

    def trunk(g, x):
        y = g.add(Conv1d(g.add(Affine(x, "aff", "a.w", "a.b")), "conv", "c.w", None, stride,
                         pad, dilation))
        if stride == 1:
            gate = g.add(Sigmoid(g.add(Conv1d(x, "gate_in", "m.w", "m.b")), "gate"))
            y = g.add(Concat(x, g.add(Mul(y, gate, "masked")), "cat"))
        return y

    graph = graph_of(trunk)
    x = rng.standard_normal((1, 9, BINS)).astype(np.float32)
    seq = x[0].astype(np.float64)
    expected = conv1d(seq * t["a.w"] + t["a.b"], t["c.w"], 0.0, stride, pad, dilation)
    if stride == 1:
        gate = 1 / (1 + np.exp(-conv1d(seq, t["m.w"], t["m.b"], 1, 0, 1)))
        expected = np.concatenate([seq, expected * gate], axis=1)
    assert graph.time_stride == stride
    for name, engine in engines(graph, t, tmp_path, expected.shape[1]):
        np.testing.assert_allclose(engine.encode(x)[0], expected, atol=1e-4, err_msg=name)
