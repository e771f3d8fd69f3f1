"""The WeSpeaker ResNet34 (wenet-e2e/wespeaker `wespeaker/models/resnet.py`) as a shared graph,
BatchNorm already fused into the convs."""

from __future__ import annotations

from engines.graph import (
    FRAMES,
    INPUT,
    OUTPUT,
    Add,
    Conv2d,
    Graph,
    L2Normalize,
    Linear,
    Mask,
    Relu,
    StatsPool,
    ToFrames,
    ToImage,
)

# Frequency and time are both halved by the first block of every layer but the first.
FIRST_LAYER_STRIDE = 1
LATER_LAYER_STRIDE = 2


def _conv(g: Graph, x: str, name: str, stride: int = 1, padding: int = 1) -> str:
    return g.add(Conv2d(x, name, f"{name}.weight", f"{name}.bias", stride, padding))


def _relu_masked(g: Graph, x: str, name: str) -> str:
    """ReLU, then zero the padded time steps so they cannot leak into the next 3x3 conv."""
    return g.add(Mask(g.add(Relu(x, f"{name}.relu")), name))


def _basic_block(g: Graph, x: str, prefix: str, stride: int, has_shortcut: bool) -> str:
    """relu(conv2(relu(conv1(x))) + shortcut(x))."""
    h = _relu_masked(g, _conv(g, x, f"{prefix}.conv1", stride), f"{prefix}.act1")
    h = _conv(g, h, f"{prefix}.conv2")
    skip = _conv(g, x, f"{prefix}.shortcut", stride, padding=0) if has_shortcut else x
    return _relu_masked(g, g.add(Add(h, skip, f"{prefix}.sum")), f"{prefix}.out")


def build_resnet(layers: tuple[int, ...], channels: tuple[int, ...]) -> Graph:
    """The graph of a WeSpeaker ResNet ending in L2Normalize: `layers[i]` basic blocks of
    `channels[i]` channels in stage i (ResNet34: (3, 4, 6, 3), (32, 64, 128, 256))."""
    g = Graph()
    x = g.add(ToImage(INPUT, "image"))
    x = _relu_masked(g, _conv(g, x, "conv1"), "stem")
    in_channels = channels[0]
    for index, (blocks, width) in enumerate(zip(layers, channels, strict=True), start=1):
        stride = FIRST_LAYER_STRIDE if index == 1 else LATER_LAYER_STRIDE
        for block in range(blocks):
            needs_shortcut = block == 0 and (stride != 1 or in_channels != width)
            x = _basic_block(g, x, f"layer{index}.{block}", stride if block == 0 else 1,
                             needs_shortcut)
            in_channels = width
    frames = g.add(ToFrames(x, FRAMES))
    pooled = g.add(StatsPool(frames, "pooled"))
    raw = g.add(Linear(pooled, "raw", "embedding.weight", "embedding.bias"))
    g.add(L2Normalize(raw, OUTPUT))
    return g
