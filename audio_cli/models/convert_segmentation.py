"""Convert pyannote's PyanNet segmentation checkpoint (segmentation-3.0) to a model directory
of the shared graph (engines/segmentation.py).

The checkpoint is a PyTorch Lightning file: `state_dict` holds the tensors, `hyper_parameters`
the SincNet stride and sample rate, and `pyannote.audio` -> `specifications` (a pyannote
`Specifications` dataclass, read here as an inert stub's state) the chunk duration, the local
speakers and how many of them may speak at once (the powerset).

SincNet's first layer (asteroid-filterbanks' ParamSincFB) computes its 80 band-pass filters
from 40 learned (low_hz_, band_hz_) pairs on every forward pass; they do not depend on the
input, so they are computed here once, at conversion, into a fixed Conv1d kernel
`sincnet.conv1d.0.weight` [80, 251, 1]. The other tensors keep their names; Conv1d kernels
become [O, k, I]; the LSTM's stay in torch's layout and gate order (engines/graph.py, LSTM).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engines.errors import ModelError
from engines.model import SEGMENTATION_MODEL_TYPE, WEIGHTS_FILE, ModelConfig
from engines.segmentation import SINC_WEIGHT, SINCNET_BLOCKS, powerset_classes

SINC = "sincnet.conv1d.0.filterbank"
REQUIRED = {f"{SINC}.low_hz_", f"{SINC}.band_hz_", "lstm.weight_ih_l0", "classifier.weight"}
# ParamSincFB's bounds as pyannote's SincNet builds it (min_low_hz=50, min_band_hz=50)
MIN_LOW_HZ, MIN_BAND_HZ = 50.0, 50.0
POOL = (3, 3)  # SincNet's MaxPool1d(3, stride=3) after each convolution
LICENSE = "MIT"

ATTRIBUTION = """\
# Attribution of the model weights

`{weights}` in this directory is a converted copy of `{source}`, pyannote's speaker
segmentation model (Hugging Face `pyannote/segmentation-3.0`; code
https://github.com/pyannote/pyannote-audio). Paper: A. Plaquet and H. Bredin, "Powerset
multi-class cross entropy loss for neural speaker diarization", Interspeech 2023.

MIT License, Copyright (c) 2020 CNRS. Permission is hereby granted, free of charge, to any
person obtaining a copy of this software and associated documentation files, to deal in them
without restriction, subject to the condition that the copyright notice and this permission
notice are included in all copies or substantial portions. THE SOFTWARE IS PROVIDED "AS IS",
WITHOUT WARRANTY OF ANY KIND. (The full text: https://opensource.org/license/mit.)

Changes made to the weights (their format, not what they compute):
- converted from the PyTorch checkpoint `{source}`;
- SincNet's parametric band-pass filters (40 learned low/band frequency pairs) were computed
  once into a fixed convolution kernel of 80 filters;
- convolution kernels were transposed from [out, in, width] to [out, width, in].

The result computes the same scores as the original up to float32 rounding. The pyannote
authors did not make this conversion and do not endorse it.
"""


def looks_like_segmentation(tensors: dict[str, np.ndarray]) -> bool:
    """True when the tensor names are pyannote's PyanNet (SincNet, LSTM, classifier)."""
    return REQUIRED <= tensors.keys()


def _rounded(function, x: np.ndarray) -> np.ndarray:
    """A float32 function value correctly rounded: evaluated in float64 on the float32 args."""
    return function(x.astype(np.float64)).astype(np.float32)


def sinc_filters(t, sample_rate: float) -> np.ndarray:
    """ParamSincFB's filters [2 * bands, taps]: for each band, the windowed cosine (even)
    filter, then, after all of them, the sine (odd) ones; from the checkpoint's low_hz_,
    band_hz_ and its stored half window `window_` and half time axis `n_` (2 pi t /
    sample_rate for t = -half .. -1).

    In float32, in the order torch computes them on each forward pass, with sin and cos
    correctly rounded: the taps near the centre divide a difference of two sines of ~400 rad
    by ~2e-4, so the last bit of each sine shows. All in float64 moved pyannote's lowest
    log-probabilities (about -14) by up to 2e-3 on real speech; this, by about 1e-4.
    """
    f32 = np.float32
    low = f32(MIN_LOW_HZ) + np.abs(t[f"{SINC}.low_hz_"].astype(f32))  # (bands, 1)
    high = np.clip(low + f32(MIN_BAND_HZ) + np.abs(t[f"{SINC}.band_hz_"].astype(f32)),
                   f32(MIN_LOW_HZ), f32(sample_rate / 2))
    window = t[f"{SINC}.window_"].astype(f32)[None, :]  # (1, half)
    n = t[f"{SINC}.n_"].astype(f32).reshape(1, -1)  # (1, half)
    band = high - low  # (bands, 1)
    ft_low, ft_high = low * n, high * n  # torch's (bands, 1) @ (1, half): outer products
    cos_left = (_rounded(np.sin, ft_high) - _rounded(np.sin, ft_low)) / (n / f32(2)) * window
    sin_left = (_rounded(np.cos, ft_low) - _rounded(np.cos, ft_high)) / (n / f32(2)) * window
    cos = np.concatenate([cos_left, f32(2) * band, cos_left[:, ::-1]], axis=1)
    sin = np.concatenate([sin_left, np.zeros_like(band), -sin_left[:, ::-1]], axis=1)
    return np.concatenate([cos / (f32(2) * band), sin / (f32(2) * band)], axis=0)


def _count(t, pattern: str) -> int:
    """How many consecutive `pattern.format(i)` names exist, i = 0, 1, ..."""
    n = 0
    while pattern.format(n) in t:
        n += 1
    return n


def _state(obj: Any) -> dict:
    """The fields of a pickled object the checkpoint reader left as an inert stub."""
    state = getattr(obj, "__dict__", {}).get("state") if obj is not None else None
    return state if isinstance(state, dict) else {}


def _network(t, settings: dict[str, Any], classes: int) -> dict[str, Any]:
    """The config's `network` dict, from the tensors and the checkpoint's settings."""
    hyper = settings.get("hyper_parameters")
    hyper = hyper if isinstance(hyper, dict) else {}
    sincnet = hyper.get("sincnet") if isinstance(hyper.get("sincnet"), dict) else {}
    specs = _state((settings.get("pyannote.audio") or {}).get("specifications")
                   if isinstance(settings.get("pyannote.audio"), dict) else None)
    speakers = len(specs.get("classes") or ()) or 3
    at_once = int(specs.get("powerset_max_classes") or 2)
    if len(powerset_classes(speakers, at_once)) != classes:
        raise ModelError(f"classifier has {classes} outputs, not the powerset of {speakers} "
                         f"speakers {at_once} at a time")
    return {
        "sincnet_stride": int(sincnet.get("stride", 10)),
        "pool": list(POOL),
        "lstm_layers": _count(t, "lstm.weight_ih_l{}"),
        "bidirectional": "lstm.weight_ih_l0_reverse" in t,
        "linear_layers": _count(t, "linear.{}.weight"),
        "speakers": speakers,
        "speakers_per_frame": at_once,
        "chunk_seconds": float(specs.get("duration") or 10.0),
    }


def convert_tensors(t, source: str, settings: dict[str, Any]) -> tuple[dict, ModelConfig]:
    """Converted tensors and the ModelConfig of a PyanNet state dict (a tracked tensor dict)
    and the checkpoint's other settings (hyper_parameters, pyannote.audio)."""
    hyper = settings.get("hyper_parameters")
    sample_rate = int((hyper if isinstance(hyper, dict) else {}).get("sample_rate", 16000))
    out: dict[str, np.ndarray] = {}
    out[SINC_WEIGHT] = sinc_filters(t, sample_rate)[:, :, None].astype(np.float32)
    for name in ("sincnet.wav_norm1d.weight", "sincnet.wav_norm1d.bias"):
        out[name] = t[name].astype(np.float32)
    for index in range(SINCNET_BLOCKS):
        if index:
            conv = f"sincnet.conv1d.{index}"
            if t[f"{conv}.weight"].ndim != 3:
                raise ModelError(f"{conv}.weight has shape {t[f'{conv}.weight'].shape}, "
                                 "expected [O, I, k]")
            out[f"{conv}.weight"] = np.ascontiguousarray(
                np.moveaxis(t[f"{conv}.weight"], 1, -1), dtype=np.float32)
            out[f"{conv}.bias"] = t[f"{conv}.bias"].astype(np.float32)
        for part in ("weight", "bias"):
            out[f"sincnet.norm1d.{index}.{part}"] = t[f"sincnet.norm1d.{index}.{part}"]
    classes = int(t["classifier.weight"].shape[0])
    network = _network(t, settings, classes)
    lstm_names = [n for n in t if n.startswith("lstm.")]
    linear_names = [n for n in t if n.startswith(("linear.", "classifier."))]
    for name in lstm_names + linear_names:
        out[name] = t[name].astype(np.float32)
    config = ModelConfig(
        model_type=SEGMENTATION_MODEL_TYPE,
        sample_rate=sample_rate,
        embedding_dim=classes,
        layers=(),
        channels=(),
        pooling_output_dim=0,
        network=network,
        model_id=source,
        license=LICENSE,
    )
    return out, config


def attribution(source: str) -> str:
    """The ATTRIBUTION.md text for weights converted from `source`."""
    return ATTRIBUTION.format(weights=WEIGHTS_FILE, source=source)
