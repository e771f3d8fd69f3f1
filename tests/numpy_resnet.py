"""Independent float64 numpy forward of WeSpeaker's ResNet34, not using the shared graph."""

from __future__ import annotations

import numpy as np


def conv2d(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """x (C, H, W), w (O, kH, kW, C) -> (O, H', W') by im2col."""
    c, h, wd = x.shape
    o, kh, kw, _ = w.shape
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    ho = (h + 2 * pad - kh) // stride + 1
    wo = (wd + 2 * pad - kw) // stride + 1
    cols = np.empty((kh, kw, c, ho, wo))
    for i in range(kh):
        for j in range(kw):
            cols[i, j] = xp[:, i : i + stride * ho : stride, j : j + stride * wo : stride]
    out = w.reshape(o, kh * kw * c) @ cols.reshape(kh * kw * c, ho * wo)
    return out.reshape(o, ho, wo) + b[:, None, None]


def forward(features: np.ndarray, weights: dict[str, np.ndarray], layers=(3, 4, 6, 3)):
    """(T, F) features -> (pooled [2*C*F'], raw, unit embedding), all float64."""
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    x = features.T[None].astype(np.float64)  # (1, F, T): height = frequency
    x = np.maximum(conv2d(x, w["conv1.weight"], w["conv1.bias"], 1, 1), 0)
    for li, blocks in enumerate(layers, start=1):
        for bi in range(blocks):
            p = f"layer{li}.{bi}"
            stride = 2 if (li > 1 and bi == 0) else 1
            h = np.maximum(conv2d(x, w[f"{p}.conv1.weight"], w[f"{p}.conv1.bias"], stride, 1), 0)
            h = conv2d(h, w[f"{p}.conv2.weight"], w[f"{p}.conv2.bias"], 1, 1)
            if f"{p}.shortcut.weight" in w:
                x = conv2d(x, w[f"{p}.shortcut.weight"], w[f"{p}.shortcut.bias"], stride, 0)
            x = np.maximum(h + x, 0)
    c, f, t = x.shape
    flat = x.reshape(c * f, t)  # index c*F + f
    pooled = np.concatenate([flat.mean(axis=1), flat.std(axis=1, ddof=1)])
    raw = w["embedding.weight"] @ pooled + w["embedding.bias"]
    return pooled, raw, raw / np.linalg.norm(raw)
