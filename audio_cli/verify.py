"""Same-speaker decisions: raw cosine scores, default thresholds and their calibration."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UsageError

# Default decision thresholds on the raw cosine, keyed by model id, else by model type.
# Where each value comes from (also in the README):
# - CAM++ (3D-Speaker): 0.5. No official value exists; a 3D-Speaker maintainer answered that
#   the threshold depends on the test set and, if one number must be set, to use about 0.5
#   (github.com/modelscope/3D-Speaker/issues/135). Checked on LibriSpeech test-other in the
#   README (equal-error threshold measured there).
# - WeSpeaker ResNet34-LM: 0.5. No published value was found (wespeaker publishes EERs, not
#   thresholds) and its real weights cannot be downloaded on the project's machines, so the
#   value is the same round number, NOT measured for this model: calibrate it
#   (`audio calibrate`) or pass --threshold.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "aufklarer/WeSpeaker-ResNet34-LM-MLX": 0.5,
    "pyannote/wespeaker-voxceleb-resnet34-LM": 0.5,
    "wespeaker_resnet34": 0.5,
    "campplus": 0.5,
}


@dataclass(frozen=True)
class Threshold:
    """A decision threshold and where it came from (option, store or model default)."""

    value: float
    origin: str  # "option", "store", "default"


def check_threshold(value: float) -> float:
    """A threshold must be a cosine: in [-1, 1]."""
    if not -1.0 <= value <= 1.0:
        raise UsageError(f"--threshold must be in [-1, 1] (a raw cosine), got {value:g}")
    return value


def default_threshold(model_name: str, model_type: str) -> float | None:
    """The built-in default for a model id, else for its model type, else None."""
    for key in (model_name, model_type):
        if key in DEFAULT_THRESHOLDS:
            return DEFAULT_THRESHOLDS[key]
    lowered = model_type.lower()
    for key, value in DEFAULT_THRESHOLDS.items():
        if key in lowered:
            return value
    return None


def pick_threshold(option: float | None, stored: float | None, model_name: str,
                   model_type: str) -> Threshold:
    """--threshold, else the store's calibrated value, else the model's default."""
    if option is not None:
        return Threshold(check_threshold(option), "option")
    if stored is not None:
        return Threshold(stored, "store")
    default = default_threshold(model_name, model_type)
    if default is None:
        raise UsageError(f"no default threshold for model {model_name}; pass --threshold or "
                         "run `audio calibrate` with enrolled speakers")
    return Threshold(default, "default")


def cosine_scores(matrix: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Raw cosines of each row of (N, dim) unit vectors with a unit query, in float64."""
    return matrix.astype(np.float64, copy=False) @ query.astype(np.float64)


def equal_error_threshold(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """(threshold, EER): the cosine where false rejections and false accepts are closest."""
    if same.size == 0 or different.size == 0:
        raise UsageError("calibration needs same-speaker and different-speaker pairs")
    candidates = np.unique(np.concatenate([same, different]))
    best = (2.0, 0, 0.0)
    for i, t in enumerate(candidates):
        frr = float(np.mean(same < t))
        far = float(np.mean(different >= t))
        if abs(frr - far) < best[0]:
            best = (abs(frr - far), i, (frr + far) / 2)
    i = best[1]
    # Halfway to the next lower score: the middle of the gap when the classes separate.
    threshold = (candidates[i] + candidates[i - 1]) / 2 if i > 0 else candidates[i]
    return float(threshold), best[2]
