"""How vectors are made: the settings that travel together from the command line (or a
caller) to the model, as one value."""

from __future__ import annotations

from dataclasses import dataclass

from audio_cli.models.registry import DEFAULT_MODEL

DEFAULT_MIN_DURATION = 0.5  # seconds: shorter audio is refused
PRECISIONS = ("float32", "int8")


@dataclass(frozen=True)
class EmbedOptions:
    """The model and how it runs (`model`, `engine`, `threads`, `precision`), and what each
    input must hold to be embedded (`min_duration` seconds; with `vad`, of speech only)."""

    model: str = DEFAULT_MODEL  # hub id, known name, model folder or .nemo file
    engine: str = "auto"  # auto, onnx, mlx or coreml
    threads: int | None = None  # CPU threads for the engine (None: all)
    precision: str = "float32"  # float32, or int8 (onnx, coreml)
    min_duration: float = DEFAULT_MIN_DURATION
    vad: bool = False  # embed only the speech that voice-activity detection finds
