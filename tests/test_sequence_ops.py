"""CAM++'s sequence ops composed as in a dense layer, each engine against numpy on random data:
concat(x, conv(affine(x)) * sigmoid(conv1x1(x))) for stride/dilation variants.

Each op alone, the context pooling at segment edges included, is in test_engine_ops.py; this
checks that they compose. MLX and Core ML are skipped only when mlx or coremltools is not
installed: an engine module that fails to import, or an op it lacks, fails the test.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_engine_ops import BINS, ENGINES, conv1d, make_engine, sigmoid, with_head

from engines.graph import (
    FRAMES,
    INPUT,
    Affine,
    Concat,
    Conv1d,
    Graph,
    ImageToSequence,
    Mul,
    SequenceToFrames,
    Sigmoid,
    ToImage,
)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("stride", "dilation"), [(1, 1), (1, 2), (2, 1)])
def test_conv1d_affine_gate_concat(stride, dilation, engine, tmp_path):
    """concat(x, conv(affine(x)) * sigmoid(conv1x1(x))) for stride/dilation variants."""
    rng = np.random.default_rng(stride * 10 + dilation)
    k, out = 3, 5
    pad = dilation * (k // 2)
    t = {"a.w": rng.uniform(0.5, 2, BINS).astype(np.float32),
         "a.b": rng.standard_normal(BINS).astype(np.float32),
         "c.w": rng.standard_normal((out, k, BINS)).astype(np.float32),
         "m.w": rng.standard_normal((out, 1, BINS)).astype(np.float32),
         "m.b": rng.standard_normal(out).astype(np.float32)}

    def build(g: Graph) -> None:
        x = g.add(ImageToSequence(g.add(ToImage(INPUT, "image")), "seq"))
        y = g.add(Conv1d(g.add(Affine(x, "aff", "a.w", "a.b")), "conv", "c.w", None, stride,
                         pad, dilation))
        if stride == 1:
            gate = g.add(Sigmoid(g.add(Conv1d(x, "gate_in", "m.w", "m.b")), "gate"))
            y = g.add(Concat(x, g.add(Mul(y, gate, "masked")), "cat"))
        g.add(SequenceToFrames(y, FRAMES))

    x = rng.standard_normal((1, 9, BINS)).astype(np.float32)
    seq = x[0].astype(np.float64)
    expected = conv1d(seq * t["a.w"] + t["a.b"], t["c.w"], None, stride, pad, dilation)
    if stride == 1:
        gate = sigmoid(conv1d(seq, t["m.w"], t["m.b"], 1, 0, 1))
        expected = np.concatenate([seq, expected * gate], axis=1)
    graph, tensors = with_head(build, expected.shape[1], t)
    assert graph.time_stride == stride
    runner = make_engine(engine, graph, tensors, tmp_path)
    np.testing.assert_allclose(runner.encode(x)[0], expected, atol=1e-4, err_msg=engine)
