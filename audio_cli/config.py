"""Model and front-end configuration: the schema of the `config.json` stored beside weights."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
RESNET_MODEL_TYPE = "wespeaker_resnet34"
CAMPPLUS_MODEL_TYPE = "campplus"  # 3D-Speaker CAM++ (SPEC §8)


@dataclass(frozen=True)
class FrontendConfig:
    """Kaldi filterbank options; each model carries the ones it was trained with."""

    sample_rate: int = 16000  # Hz
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: str = "hamming"  # "hamming" or "povey"
    input_scale: float = 32768.0  # samples in [-1, 1] are multiplied by this
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    low_freq: float = 20.0  # Hz
    high_freq: float = 8000.0  # Hz; <= 0 means Nyquist + high_freq
    log_floor: float = 1.1920929e-07  # float32 epsilon, as Kaldi
    cmn: bool = True  # subtract each bin's mean over the utterance

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrontendConfig:
        """Build from a dict, ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a speaker-embedding network and the front-end it expects."""

    model_type: str = RESNET_MODEL_TYPE
    sample_rate: int = 16000
    n_mels: int = 80
    embedding_dim: int = 256
    layers: tuple[int, ...] = (3, 4, 6, 3)  # CAM++: CAM layers per dense block
    channels: tuple[int, ...] = (32, 64, 128, 256)  # CAM++: (FCM, TDNN, growth) channels
    pooling_output_dim: int = 5120
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    model_id: str = ""
    license: str = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a `config.json` dict; unknown keys are ignored, missing ones defaulted."""
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for key in ("layers", "channels"):
            if key in values:
                values[key] = tuple(int(v) for v in values[key])
        frontend = dict(values.pop("frontend", None) or {})
        frontend.setdefault("sample_rate", values.get("sample_rate", 16000))
        frontend.setdefault("num_mel_bins", values.get("n_mels", 80))
        return cls(frontend=FrontendConfig.from_dict(frontend), **values)

    def to_dict(self) -> dict[str, Any]:
        """The `config.json` form."""
        data = dataclasses.asdict(self)
        data["layers"] = list(self.layers)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def load(cls, directory: Path) -> ModelConfig:
        """Read `config.json` from a model directory."""
        path = Path(directory) / CONFIG_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ModelError(f"{directory}: no {CONFIG_FILE} (not a model directory)") from None
        except (OSError, ValueError) as exc:
            raise ModelError(f"{path}: cannot read model config ({exc})") from None
        if not isinstance(data, dict):
            raise ModelError(f"{path}: model config is not a JSON object")
        return cls.from_dict(data)

    def save(self, directory: Path) -> None:
        """Write `config.json` into a model directory."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        (Path(directory) / CONFIG_FILE).write_text(text, encoding="utf-8")
