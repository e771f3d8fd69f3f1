"""NVIDIA NeMo's speaker models (EncDecSpeakerLabelModel) as a shared graph: the ConvASREncoder
of SpeakerNet (QuartzNet blocks) and TitaNet (blocks with squeeze-excitation) or the
ECAPAEncoder, then the SpeakerDecoder's pooling and the embedding layers.

The converter (audio_cli/models/convert_nemo.py) folds every BatchNorm that follows a
convolution into it, and each depthwise-separable pair (a depthwise convolution, then a 1x1
one) or grouped convolution into one full Conv1d, which computes the same sums. A BatchNorm
after a ReLU stays a per-channel Affine op. The config's `network` dict describes the layers:

- ConvASREncoder: {"encoder": "convasr", "blocks": [{"repeat", "kernel", "dilation",
  "residual", "se"}, ...]}; a block is `repeat` convolutions with ReLU between them,
  squeeze-excitation after the last (x * sigmoid(W2 relu(W1 mean_t(x))), no biases), the
  residual 1x1 convolution added, then ReLU.
- ECAPAEncoder: {"encoder": "ecapa", "kernels": [...], "dilations": [...]}: a TDNN layer
  (conv, ReLU, BatchNorm), SE-TDNN blocks (TDNN 1x1, grouped conv + ReLU + BatchNorm, TDNN 1x1,
  squeeze-excitation with biases, plus the block input), the SE blocks' outputs concatenated
  and a last TDNN layer (kernels[-1], dilations[-1]).
- Decoder: {"pool": "xvector" | "attention", "emb_layers": n, "relu_between": bool}: StatsPool
  or AttentivePool, then n Linear layers (each with its BatchNorm folded in; ReLU between
  them for the xvector decoder's linear layers), then L2Normalize. NeMo's embedding is the
  last layer's output before its ReLU.

Every convolution is 'same'-padded with stride 1, so FRAMES has one step per feature frame.
NeMo pads the features with zeros to a multiple of the preprocessor's pad_to; its ConvASR
convolutions mask that padding, the ECAPA ones do not (it reaches the last frames), so an ECAPA
graph has `pad_to` (network "pad_to") and runs padded the same way, its squeeze-excitation
means and pooling over the valid frames only.
Squeeze-excitation and attentive pooling use the whole clip, so these graphs are not
time-local: each clip runs in one pass.
"""

from __future__ import annotations

from typing import Any

from engines.errors import ModelError
from engines.graph import (
    FRAMES,
    INPUT,
    OUTPUT,
    Add,
    Affine,
    AttentivePool,
    Concat,
    Conv1d,
    Graph,
    ImageToSequence,
    L2Normalize,
    Linear,
    Mul,
    Relu,
    SequenceToFrames,
    Sigmoid,
    StatsPool,
    TimeMean,
    ToImage,
)


def _conv(g: Graph, x: str, name: str, kernel: int = 1, dilation: int = 1,
          bias: bool = True) -> str:
    """'Same'-padded stride-1 Conv1d with weights `name`.weight [O, k, I] and `name`.bias."""
    return g.add(Conv1d(x, name, f"{name}.weight", f"{name}.bias" if bias else None,
                        padding=dilation * (kernel - 1) // 2, dilation=dilation))


def _squeeze_excite(g: Graph, x: str, name: str, bias: bool) -> str:
    """x * sigmoid(se2(relu(se1(mean over time of x))))."""
    h = g.add(Relu(_conv(g, g.add(TimeMean(x, f"{name}.mean")), f"{name}.se1", bias=bias),
                   f"{name}.se1.relu"))
    gate = g.add(Sigmoid(_conv(g, h, f"{name}.se2", bias=bias), f"{name}.gate"))
    return g.add(Mul(x, gate, f"{name}.out"))


def _convasr_block(g: Graph, x: str, name: str, block: dict[str, Any]) -> str:
    h = x
    for i in range(int(block["repeat"])):
        if i:
            h = g.add(Relu(h, f"{name}.conv{i - 1}.relu"))
        h = _conv(g, h, f"{name}.conv{i}", int(block["kernel"]), int(block["dilation"]))
    if block["se"]:
        h = _squeeze_excite(g, h, f"{name}.se", bias=False)
    if block["residual"]:
        h = g.add(Add(h, _conv(g, x, f"{name}.res"), f"{name}.sum"))
    return g.add(Relu(h, f"{name}.out"))


def _tdnn(g: Graph, x: str, name: str, kernel: int = 1, dilation: int = 1) -> str:
    """NeMo's TDNNModule: conv, ReLU, BatchNorm (an Affine `name`.bn)."""
    h = g.add(Relu(_conv(g, x, f"{name}.conv", kernel, dilation), f"{name}.relu"))
    return g.add(Affine(h, f"{name}.bn", f"{name}.bn.weight", f"{name}.bn.bias"))


def _ecapa(g: Graph, x: str, network: dict[str, Any]) -> str:
    kernels, dilations = network["kernels"], network["dilations"]
    x = _tdnn(g, x, "ecapa.0", kernels[0], dilations[0])
    joined = None
    for i in range(1, len(kernels) - 1):
        name = f"ecapa.{i}"
        h = _tdnn(g, x, f"{name}.tdnn1")
        h = g.add(Relu(_conv(g, h, f"{name}.group", kernels[i], dilations[i]),
                       f"{name}.group.relu"))
        h = g.add(Affine(h, f"{name}.group.bn", f"{name}.group.bn.weight",
                         f"{name}.group.bn.bias"))
        h = _squeeze_excite(g, _tdnn(g, h, f"{name}.tdnn2"), f"{name}.se", bias=True)
        x = g.add(Add(h, x, f"{name}.out"))
        joined = x if joined is None else g.add(Concat(joined, x, f"{name}.joined"))
    if joined is None:
        raise ModelError("an ECAPA encoder needs at least one SE-TDNN block")
    return _tdnn(g, joined, "ecapa.agg", kernels[-1], dilations[-1])


def build_nemo(network: dict[str, Any]) -> Graph:
    """The graph of a converted NeMo speaker model (see the module docstring)."""
    g = Graph(pad_to=int(network.get("pad_to", 0)))
    x = g.add(ImageToSequence(g.add(ToImage(INPUT, "image")), "mel"))
    kind = network.get("encoder")
    if kind == "convasr":
        for b, block in enumerate(network["blocks"]):
            x = _convasr_block(g, x, f"encoder.{b}", block)
    elif kind == "ecapa":
        x = _ecapa(g, x, network)
    else:
        raise ModelError(f"unknown NeMo encoder {kind!r} (known: convasr, ecapa)")
    x = g.add(SequenceToFrames(x, FRAMES))
    if network.get("pool") == "attention":
        x = g.add(AttentivePool(x, "pooled", "decoder.pool"))
    else:
        x = g.add(StatsPool(x, "pooled"))
    layers = int(network.get("emb_layers", 1))
    for j in range(layers):
        if j and network.get("relu_between"):
            x = g.add(Relu(x, f"decoder.emb{j - 1}.relu"))
        x = g.add(Linear(x, f"decoder.emb{j}", f"decoder.emb{j}.weight",
                         f"decoder.emb{j}.bias"))
    g.add(L2Normalize(x, OUTPUT))
    return g
