"""Convert 3D-Speaker's CAM++ checkpoint (tensors `head.*`, `xvector.*`) to the hub layout.

BatchNorm that follows a conv is folded into it; BatchNorm that precedes one (the dense
layers' BN-ReLU-conv order) becomes a per-channel affine (`weight` = scale, `bias` = shift).
2-D kernels are stored [O, kH, kW, I], 1-D kernels [O, k, I]. The dense layer (a 1x1 conv and
a BatchNorm without affine parameters) becomes `embedding.weight` [192, 1024] and its bias.
"""

from __future__ import annotations

import numpy as np

from audio_cli.models import batchnorm
from engines.errors import ModelError
from engines.model import CAMPPLUS_MODEL_TYPE, WEIGHTS_FILE, FrontendConfig, ModelConfig

REQUIRED = {"head.conv1.weight", "xvector.tdnn.linear.weight", "xvector.dense.linear.weight"}
# 3D-Speaker's FBank: Kaldi's povey window, samples left in [-1, 1] (not scaled to 16 bits)
FRONTEND = FrontendConfig(window="povey", input_scale=1.0)
LICENSE = "Apache-2.0"

ATTRIBUTION = """\
# Attribution of the model weights

`{weights}` in this directory is a converted copy of `{source}`, the CAM++ speaker-embedding
model of the 3D-Speaker project (ModelScope `iic/speech_campplus_sv_zh_en_16k-common_advanced`;
code https://github.com/alibaba-damo-academy/3D-Speaker). Paper: H. Wang et al., "CAM++: A
Fast and Efficient Network for Speaker Verification Using Context-Aware Masking",
Interspeech 2023.

Copyright 3D-Speaker (https://github.com/alibaba-damo-academy/3D-Speaker), all rights reserved,
licensed under the Apache License, Version 2.0 (https://www.apache.org/licenses/LICENSE-2.0).
Keep this notice with the converted weights.

Changes made to the weights (their format, not what they compute):
- converted from the PyTorch checkpoint `{source}`;
- each BatchNorm that follows a convolution was fused into it (scale = gamma /
  sqrt(running_var + {eps}), W' = W * scale, b' = beta - running_mean * scale); each one that
  precedes a convolution was rewritten as a per-channel scale and shift;
- the final 1x1 convolution and its BatchNorm (no affine parameters) became one linear layer;
- kernels were transposed to [out, (height,) width, in];
- values were computed in float64 and stored as float32.

The result computes the same embeddings as the original up to float32 rounding. The
3D-Speaker authors did not make this conversion and do not endorse it.
"""


def looks_like_campplus(tensors: dict[str, np.ndarray]) -> bool:
    """True when the tensor names are 3D-Speaker's CAMPPlus."""
    return REQUIRED <= tensors.keys()


def _fold(t, conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Conv `conv` (no bias) followed by BatchNorm `bn` -> (kernel channels-last, bias)."""
    if f"{conv}.bias" in t:
        raise ModelError(f"{conv} has a bias; CAM++ convolutions before BatchNorm have none")
    return batchnorm.fold_into_conv(t, conv, bn)


def _kernel(t, name: str) -> np.ndarray:
    """A conv kernel as float32 [O, ..., I]."""
    return np.ascontiguousarray(np.moveaxis(t[name], 1, -1), dtype=np.float32)


def _count(t, pattern: str) -> int:
    """How many consecutive `pattern.format(i)` names exist, i = 1, 2, ..."""
    n = 0
    while pattern.format(n + 1) in t:
        n += 1
    return n


def _head(t, out: dict) -> int:
    """Fold the FCM's conv/BN pairs into `out`; return its channel count."""
    pairs = [("head.conv1", "head.bn1"), ("head.conv2", "head.bn2")]
    for layer in (1, 2):
        for block in (0, 1):
            p = f"head.layer{layer}.{block}"
            pairs += [(f"{p}.conv1", f"{p}.bn1"), (f"{p}.conv2", f"{p}.bn2")]
            if f"{p}.shortcut.0.weight" in t:
                pairs.append((f"{p}.shortcut.0", f"{p}.shortcut.1"))
    for conv, bn in pairs:
        name = conv.removesuffix(".0")
        out[f"{name}.weight"], out[f"{name}.bias"] = _fold(t, conv, bn)
    return int(out["head.conv1.weight"].shape[0])


def _affine(t, out: dict, bn: str, name: str) -> None:
    scale, shift = batchnorm.scale_shift(t, f"{bn}.batchnorm")
    out[f"{name}.weight"], out[f"{name}.bias"] = scale.astype(np.float32), shift.astype(np.float32)


def _dense_layer(t, out: dict, p: str) -> None:
    """One CAM dense layer: BN-ReLU, 1x1 conv + BN-ReLU, and the CAM convolutions."""
    _affine(t, out, f"{p}.nonlinear1", f"{p}.nonlinear1")
    out[f"{p}.linear1.weight"], out[f"{p}.linear1.bias"] = _fold(
        t, f"{p}.linear1", f"{p}.nonlinear2.batchnorm")
    cam = f"{p}.cam_layer"
    out[f"{cam}.linear_local.weight"] = _kernel(t, f"{cam}.linear_local.weight")
    for conv in ("linear1", "linear2"):
        out[f"{cam}.{conv}.weight"] = _kernel(t, f"{cam}.{conv}.weight")
        out[f"{cam}.{conv}.bias"] = t[f"{cam}.{conv}.bias"].astype(np.float32)


def convert_tensors(t, source: str) -> tuple[dict[str, np.ndarray], ModelConfig]:
    """Converted tensors and the ModelConfig of a CAM++ state dict (a tracked tensor dict)."""
    out: dict[str, np.ndarray] = {}
    head_channels = _head(t, out)
    tdnn = "xvector.tdnn"
    out[f"{tdnn}.weight"], out[f"{tdnn}.bias"] = _fold(t, f"{tdnn}.linear",
                                                       f"{tdnn}.nonlinear.batchnorm")
    layers = []
    for block in range(1, _count(t, "xvector.block{}.tdnnd1.linear1.weight") + 1):
        n = _count(t, f"xvector.block{block}.tdnnd{{}}.linear1.weight")
        for layer in range(1, n + 1):
            _dense_layer(t, out, f"xvector.block{block}.tdnnd{layer}")
        transit = f"xvector.transit{block}"
        _affine(t, out, f"{transit}.nonlinear", f"{transit}.nonlinear")
        out[f"{transit}.linear.weight"] = _kernel(t, f"{transit}.linear.weight")
        layers.append(n)
    _affine(t, out, "xvector.out_nonlinear", "xvector.out_nonlinear")
    dense = t["xvector.dense.linear.weight"].astype(np.float64)
    if dense.ndim != 3 or dense.shape[2] != 1:
        raise ModelError(f"xvector.dense.linear.weight has shape {dense.shape}, expected [O, I, 1]")
    scale, shift = batchnorm.scale_shift(t, "xvector.dense.nonlinear.batchnorm", affine=False)
    out["embedding.weight"] = (dense[:, :, 0] * scale[:, None]).astype(np.float32)
    out["embedding.bias"] = shift.astype(np.float32)
    growth = int(out["xvector.block1.tdnnd1.cam_layer.linear_local.weight"].shape[0])
    n_mels = int(t["xvector.tdnn.linear.weight"].shape[1]) // head_channels * 8
    config = ModelConfig(
        model_type=CAMPPLUS_MODEL_TYPE,
        n_mels=n_mels,
        embedding_dim=int(dense.shape[0]),
        layers=tuple(layers),
        channels=(head_channels, int(out[f"{tdnn}.weight"].shape[0]), growth),
        pooling_output_dim=int(dense.shape[1]),
        frontend=FrontendConfig(**{**FRONTEND.__dict__, "num_mel_bins": n_mels}),
        model_id=source,
        license=LICENSE,
    )
    return out, config


def attribution(source: str) -> str:
    """The ATTRIBUTION.md text for weights converted from `source`."""
    return ATTRIBUTION.format(weights=WEIGHTS_FILE, source=source, eps=batchnorm.EPS)
