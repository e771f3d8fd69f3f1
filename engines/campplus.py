"""3D-Speaker's CAM++ (Wang et al. 2023; modelscope/3D-Speaker, speakerlab/models/campplus)
as a shared graph, BatchNorm folded where a conv precedes it.

Front module (FCM): a small 2-D ResNet that halves frequency three times (80 -> 10 bins, 32
channels), read as a 320-channel sequence. Then a strided TDNN, three densely connected blocks
of CAM layers (each appends `growth` channels, masked by a context of the utterance mean and
100-frame segment means), transit layers halving the channels, statistics pooling and a dense
layer. Config fields: `layers` = CAM layers per block, `channels` = (FCM channels, TDNN
channels, growth rate).
"""

from __future__ import annotations

from engines.graph import (
    FRAMES,
    INPUT,
    OUTPUT,
    Add,
    Affine,
    Concat,
    ContextPool,
    Conv1d,
    FreqStridedConv2d,
    Graph,
    ImageToSequence,
    L2Normalize,
    Linear,
    Mul,
    Relu,
    SequenceToFrames,
    Sigmoid,
    StatsPool,
    ToImage,
)

FCM_BLOCKS = (2, 2)  # residual blocks per FCM layer; each layer halves frequency
FREQ_STRIDE = 2
TDNN_KERNEL, TDNN_STRIDE = 5, 2
CAM_KERNEL = 3
BLOCK_DILATIONS = (1, 2, 2)
CONTEXT_SEGMENT = 100  # frames per segment of the CAM context


def _conv2d(g: Graph, x: str, name: str, freq_stride: int = 1, padding: int = 1) -> str:
    return g.add(FreqStridedConv2d(x, name, f"{name}.weight", f"{name}.bias", freq_stride,
                                   padding))


def _res_block(g: Graph, x: str, prefix: str, freq_stride: int) -> str:
    """relu(conv2(relu(conv1(x))) + shortcut(x)); the shortcut is a conv when striding."""
    h = g.add(Relu(_conv2d(g, x, f"{prefix}.conv1", freq_stride), f"{prefix}.relu1"))
    h = _conv2d(g, h, f"{prefix}.conv2")
    skip = _conv2d(g, x, f"{prefix}.shortcut", freq_stride, padding=0) if freq_stride > 1 else x
    return g.add(Relu(g.add(Add(h, skip, f"{prefix}.sum")), f"{prefix}.out"))


def _fcm(g: Graph, x: str) -> str:
    """The 2-D front module: (B, 1, F, T) image -> (B, C, F/8, T) map."""
    x = g.add(Relu(_conv2d(g, x, "head.conv1"), "head.stem"))
    for layer, blocks in enumerate(FCM_BLOCKS, start=1):
        for block in range(blocks):
            x = _res_block(g, x, f"head.layer{layer}.{block}", FREQ_STRIDE if block == 0 else 1)
    return g.add(Relu(_conv2d(g, x, "head.conv2", FREQ_STRIDE), "head.out"))


def _conv1d(g: Graph, x: str, name: str, bias: bool = True, stride: int = 1, padding: int = 0,
            dilation: int = 1) -> str:
    return g.add(Conv1d(x, name, f"{name}.weight", f"{name}.bias" if bias else None,
                        stride=stride, padding=padding, dilation=dilation))


def _bn_relu(g: Graph, x: str, name: str) -> str:
    """relu(BatchNorm(x)) with the BatchNorm kept as a per-channel affine op."""
    return g.add(Relu(g.add(Affine(x, name, f"{name}.weight", f"{name}.bias")), f"{name}.relu"))


def _cam_dense_layer(g: Graph, x: str, prefix: str, dilation: int) -> str:
    """x ‖ CAM(relu(bn2(conv1x1(relu(bn1(x)))))): one densely connected layer."""
    h = _bn_relu(g, x, f"{prefix}.nonlinear1")
    h = g.add(Relu(_conv1d(g, h, f"{prefix}.linear1"), f"{prefix}.linear1.relu"))
    cam = f"{prefix}.cam_layer"
    local = _conv1d(g, h, f"{cam}.linear_local", bias=False, padding=dilation * (CAM_KERNEL // 2),
                    dilation=dilation)
    context = g.add(ContextPool(h, f"{cam}.context", CONTEXT_SEGMENT))
    context = g.add(Relu(_conv1d(g, context, f"{cam}.linear1"), f"{cam}.linear1.relu"))
    mask = g.add(Sigmoid(_conv1d(g, context, f"{cam}.linear2"), f"{cam}.mask"))
    masked = g.add(Mul(local, mask, f"{cam}.out"))
    return g.add(Concat(x, masked, f"{prefix}.out"))


def build_campplus(layers: tuple[int, ...]) -> Graph:
    """CAM++ with `layers[i]` CAM layers in dense block i (3D-Speaker's: (12, 24, 16)): trunk to
    FRAMES (B, T', 512), then the shared head.

    Not time-local (ContextPool), so it is run one pass per clip, batched only at equal length.
    """
    g = Graph()
    x = g.add(ImageToSequence(_fcm(g, g.add(ToImage(INPUT, "image"))), "head.sequence"))
    x = _conv1d(g, x, "xvector.tdnn", stride=TDNN_STRIDE, padding=TDNN_KERNEL // 2)
    x = g.add(Relu(x, "xvector.tdnn.relu"))
    for index, (count, dilation) in enumerate(zip(layers, BLOCK_DILATIONS, strict=True),
                                               start=1):
        for layer in range(1, count + 1):
            x = _cam_dense_layer(g, x, f"xvector.block{index}.tdnnd{layer}", dilation)
        x = _conv1d(g, _bn_relu(g, x, f"xvector.transit{index}.nonlinear"),
                    f"xvector.transit{index}.linear", bias=False)
    x = g.add(SequenceToFrames(_bn_relu(g, x, "xvector.out_nonlinear"), FRAMES))
    pooled = g.add(StatsPool(x, "pooled"))
    raw = g.add(Linear(pooled, "raw", "embedding.weight", "embedding.bias"))
    g.add(L2Normalize(raw, OUTPUT))
    return g

