"""How vectors are made: the settings that travel together from the command line (or a
caller) to the model, as one value.

The default model is resolved here, once: $AUDIO_MODEL when set, else the built-in one
(`default_model`); an explicit `model` always wins."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from audio_cli.models.registry import DEFAULT_MODEL

DEFAULT_MIN_DURATION = 0.5  # seconds: shorter audio is refused
DEFAULT_MAX_DURATION = 86400.0  # seconds (a day): longer inputs are refused
MODEL_ENV = "AUDIO_MODEL"  # sets the default model
MAX_DURATION_ENV = "AUDIO_MAX_DURATION"  # sets the default --max-duration (seconds)
PRECISIONS = ("float32", "int8")


def default_model() -> str:
    """The model used when none is named: $AUDIO_MODEL, else the built-in default."""
    return os.environ.get(MODEL_ENV, "").strip() or DEFAULT_MODEL


@dataclass(frozen=True)
class EmbedOptions:
    """The model and how it runs (`model`, `engine`, `threads`, `precision`), and what each
    input must hold to be embedded (`min_duration` seconds, with `vad` of speech only; at
    most `max_duration` seconds of recording)."""

    model: str = field(default_factory=default_model)  # hub id, known name, folder or .nemo
    engine: str = "auto"  # auto, onnx, mlx or coreml
    threads: int | None = None  # CPU threads for the engine (None: all)
    precision: str = "float32"  # float32, or int8 (onnx, coreml)
    min_duration: float = DEFAULT_MIN_DURATION
    vad: bool = False  # embed only the speech that voice-activity detection finds
    max_duration: float = DEFAULT_MAX_DURATION  # longer inputs are refused, from the header
