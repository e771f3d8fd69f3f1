"""BatchNorm in inference mode, folded away when a checkpoint is converted.

y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta is a per-channel scale and
shift; after a convolution it folds into the convolution's kernel and bias. Both converted
families (WeSpeaker's ResNet, 3D-Speaker's CAM++) use PyTorch's BatchNorm with its default eps.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

EPS = 1e-5  # PyTorch's BatchNorm default, used by every BatchNorm of both networks


def scale_shift(tensors: Mapping[str, np.ndarray], name: str, affine: bool = True,
                eps: float = EPS) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift), float64, of BatchNorm `name` (`affine` False: no weight and bias)."""
    mean, var = (tensors[f"{name}.{key}"].astype(np.float64)
                 for key in ("running_mean", "running_var"))
    scale = 1.0 / np.sqrt(var + eps)
    if affine:
        scale = tensors[f"{name}.weight"].astype(np.float64) * scale
        return scale, tensors[f"{name}.bias"].astype(np.float64) - mean * scale
    return scale, -mean * scale


def fold_into_conv(tensors: Mapping[str, np.ndarray], conv: str, bn: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Conv `conv` (bias optional) then BatchNorm `bn` -> (kernel as [O, ..., I], bias) float32.

    The kernel keeps its spatial axes ([O, I, kH, kW] -> [O, kH, kW, I]; [O, I, k] -> [O, k, I]).
    """
    weight = tensors[f"{conv}.weight"].astype(np.float64)
    scale, shift = scale_shift(tensors, bn)
    if f"{conv}.bias" in tensors:
        shift = shift + tensors[f"{conv}.bias"].astype(np.float64) * scale
    fused = np.moveaxis(weight * scale.reshape(-1, *([1] * (weight.ndim - 1))), 1, -1)
    return np.ascontiguousarray(fused, dtype=np.float32), shift.astype(np.float32)
