"""pyannote's PyanNet written out in float64 numpy from its definition (SincNet, LSTM, linear
layers, log-softmax), on a checkpoint's own tensors in torch's layout: the reference the
converted model is checked against without torch.

SincNet's band-pass filters are written here from their definition, not as the converter
computes them: for a band [f1, f2] Hz, the even filter is the Hamming-windowed difference
of two ideal low-pass responses, 2 f2 sinc(2 f2 t / sr) - 2 f1 sinc(2 f1 t / sr), normalised
to 1 at t = 0; the odd one is its quadrature pair, (cos(2 pi f1 t / sr) - cos(2 pi f2 t /
sr)) / (pi t / sr) windowed, 0 at t = 0, with the same normalisation (2 (f2 - f1)).
f1 = 50 + |low_hz_|, f2 = min(f1 + 50 + |band_hz_|, sr / 2).
"""

from __future__ import annotations

import numpy as np

SINC = "sincnet.conv1d.0.filterbank"
LSTM_PARTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def band_pass_filters(t: dict[str, np.ndarray], taps: int, sample_rate: float) -> np.ndarray:
    """(2 * bands, taps): the even filters of every band, then the odd ones."""
    f1 = 50 + np.abs(t[f"{SINC}.low_hz_"].astype(np.float64))  # (bands, 1)
    f2 = np.minimum(f1 + 50 + np.abs(t[f"{SINC}.band_hz_"].astype(np.float64)),
                    sample_rate / 2)
    time = np.arange(taps) - taps // 2  # samples, centred
    window = np.hamming(taps)
    norm = 2 * (f2 - f1)
    even = (2 * f2 * np.sinc(2 * f2 * time / sample_rate)
            - 2 * f1 * np.sinc(2 * f1 * time / sample_rate)) * window / norm
    safe = np.where(time == 0, 1, time)
    odd = np.where(time == 0, 0.0, (np.cos(2 * np.pi * f1 * time / sample_rate)
                                    - np.cos(2 * np.pi * f2 * time / sample_rate))
                   / (np.pi * safe / sample_rate)) * window / norm
    return np.concatenate([even, odd])


def conv1d(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride: int) -> np.ndarray:
    """(C, T) * [O, C, k] (torch's layout), no padding -> (O, T')."""
    k = w.shape[2]
    steps = (x.shape[1] - k) // stride + 1
    index = np.arange(steps)[:, None] * stride + np.arange(k)[None, :]  # (T', k)
    patches = x[:, index]  # (C, T', k)
    out = np.einsum("ctk,ock->ot", patches, w)
    return out if b is None else out + b[:, None]


def max_pool(x: np.ndarray, k: int = 3, s: int = 3) -> np.ndarray:
    steps = (x.shape[1] - k) // s + 1
    return np.stack([x[:, i * s:i * s + k].max(axis=1) for i in range(steps)], axis=1)


def instance_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(C, T): each channel to zero mean, unit (biased) variance over time, eps 1e-5."""
    mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * w[:, None] + b[:, None]


def leaky_relu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, 0.01 * x)


def lstm(x: np.ndarray, t: dict[str, np.ndarray], prefix: str, layers: int,
         directions: tuple[str, ...]) -> np.ndarray:
    """(T, I) -> (T, D*H): torch.nn.LSTM (gates i, f, g, o), zero initial state."""
    for layer in range(layers):
        outs = []
        for d in directions:
            w_ih, w_hh, b_ih, b_hh = (t[f"{prefix}.{p}_l{layer}{d}"].astype(np.float64)
                                      for p in LSTM_PARTS)
            h, c, ys = np.zeros(w_hh.shape[1]), np.zeros(w_hh.shape[1]), []
            for step in (x[::-1] if d else x):
                i, f, g, o = np.split(w_ih @ step + b_ih + w_hh @ h + b_hh, 4)
                c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
                h = sigmoid(o) * np.tanh(c)
                ys.append(h)
            outs.append(np.stack(ys[::-1] if d else ys))
        x = np.concatenate(outs, axis=1)
    return x


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def pyannet(samples: np.ndarray, t: dict[str, np.ndarray], stride: int = 10,
            sample_rate: float = 16000) -> np.ndarray:
    """(N,) samples -> (F, classes) log-probabilities of a PyanNet state dict `t`."""
    w = {k: v.astype(np.float64) for k, v in t.items()}
    x = instance_norm(samples[None].astype(np.float64), w["sincnet.wav_norm1d.weight"],
                      w["sincnet.wav_norm1d.bias"])
    taps = 2 * t[f"{SINC}.window_"].shape[0] + 1
    for block in range(3):
        if block == 0:
            x = np.abs(conv1d(x, band_pass_filters(w, taps, sample_rate)[:, None], None,
                              stride))
        else:
            x = conv1d(x, w[f"sincnet.conv1d.{block}.weight"],
                       w[f"sincnet.conv1d.{block}.bias"], 1)
        x = leaky_relu(instance_norm(max_pool(x), w[f"sincnet.norm1d.{block}.weight"],
                                     w[f"sincnet.norm1d.{block}.bias"]))
    layers = sum(1 for k in t if k.startswith("lstm.weight_ih_l") and "reverse" not in k)
    directions = ("", "_reverse") if "lstm.weight_ih_l0_reverse" in t else ("",)
    x = lstm(x.T, w, "lstm", layers, directions)
    j = 0
    while f"linear.{j}.weight" in w:
        x = leaky_relu(x @ w[f"linear.{j}.weight"].T + w[f"linear.{j}.bias"])
        j += 1
    return log_softmax(x @ w["classifier.weight"].T + w["classifier.bias"])
