"""What a model directory holds: `config.json` (ModelConfig, FrontendConfig: the schema) and
`model.safetensors` (Weights, read with a small numpy safetensors reader), or a compiled
Core ML model; and which network a config names."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.errors import ModelError
from engines.files import hash_file
from engines.graph import Graph

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
RESNET_MODEL_TYPE = "wespeaker_resnet34"
CAMPPLUS_MODEL_TYPE = "campplus"  # 3D-Speaker CAM++
NEMO_MODEL_TYPE = "nemo_speaker"  # NVIDIA NeMo's SpeakerNet, TitaNet, ECAPA-TDNN (engines/nemo.py)
# pyannote's PyanNet speaker segmentation (engines/segmentation.py): not a speaker-embedding
# network; its `embedding_dim` is the width of its per-frame output (the powerset classes)
SEGMENTATION_MODEL_TYPE = "pyannote_segmentation"
EMBEDDING_FAMILIES = (RESNET_MODEL_TYPE, CAMPPLUS_MODEL_TYPE, NEMO_MODEL_TYPE)
KNOWN_TYPES = ", ".join((*EMBEDDING_FAMILIES, SEGMENTATION_MODEL_TYPE))
COMPILED_SUFFIX = ".mlmodelc"  # a compiled Core ML model: a directory


def network_family(model_type: str) -> str:
    """The network a config's `model_type` names: RESNET_MODEL_TYPE, CAMPPLUS_MODEL_TYPE,
    NEMO_MODEL_TYPE or SEGMENTATION_MODEL_TYPE.

    Converted models carry exactly one of the two. The hub's ResNet34-LM `config.json` names its
    type in the Swift converter's words, which could not be inspected here, so any type that
    mentions a ResNet is read as the WeSpeaker ResNet.
    """
    if model_type in (CAMPPLUS_MODEL_TYPE, NEMO_MODEL_TYPE, SEGMENTATION_MODEL_TYPE):
        return model_type
    if model_type == RESNET_MODEL_TYPE or "resnet" in model_type.lower():
        return RESNET_MODEL_TYPE
    raise ModelError(f"unsupported model type {model_type!r} (known: {KNOWN_TYPES})")


def build_graph(config: ModelConfig) -> Graph:
    """The shared graph of the network a model config describes."""
    family = network_family(config.model_type)
    if family == CAMPPLUS_MODEL_TYPE:
        from engines.campplus import build_campplus

        return build_campplus(config.layers)
    if family == NEMO_MODEL_TYPE:
        from engines.nemo import build_nemo

        return build_nemo(config.network)
    if family == SEGMENTATION_MODEL_TYPE:
        from engines.segmentation import build_segmentation

        return build_segmentation(config.network)
    from engines.resnet import build_resnet

    return build_resnet(config.layers, config.channels)


def compiled_models(directory: Path) -> list[Path]:
    """The compiled Core ML models (`*.mlmodelc` directories) in a model directory, sorted."""
    return sorted(p for p in Path(directory).glob(f"*{COMPILED_SUFFIX}") if p.is_dir())


@dataclass(frozen=True)
class FrontendConfig:
    """Kaldi filterbank options; each model carries the ones it was trained with."""

    sample_rate: int = 16000  # Hz
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: str = "hamming"  # "hamming", "povey" or "hann" (NeMo's)
    input_scale: float = 32768.0  # samples in [-1, 1] are multiplied by this
    preemphasis: float = 0.97
    remove_dc_offset: bool = True
    low_freq: float = 20.0  # Hz
    high_freq: float = 8000.0  # Hz; <= 0 means Nyquist + high_freq
    log_floor: float = 1.1920929e-07  # float32 epsilon, as Kaldi
    cmn: bool = True  # subtract each bin's mean over the utterance
    # NeMo's AudioToMelSpectrogramPreprocessor (audio_cli/frontend/fbank.py):
    framing: str = "kaldi"  # "kaldi" (snip_edges) or "centered" (torch.stft(center=True))
    fft_size: int = 0  # 0: the frame length rounded up to a power of two
    mel_scale: str = "kaldi"  # "kaldi" (1127 ln(1 + f/700)) or "slaney" (librosa's, normalised)
    log_guard: str = "floor"  # log(max(e, log_floor)), or "add": log(e + log_floor)
    std_norm: bool = False  # after CMN, divide each bin by (its unbiased std + std_floor)
    std_floor: float = 1e-5

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FrontendConfig:
        """Build from a dict, ignoring keys this version does not know."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def identity(self) -> dict[str, Any]:
        """The options as a dict without the NeMo ones left at their defaults, so a store's
        recorded front-end (audio_cli/store/identity.py) reads as it did before they existed."""
        data = dataclasses.asdict(self)
        for name in NEMO_FRONTEND_OPTIONS:
            if data[name] == getattr(DEFAULT_FRONTEND, name):
                del data[name]
        return data


DEFAULT_FRONTEND = FrontendConfig()
NEMO_FRONTEND_OPTIONS = ("framing", "fft_size", "mel_scale", "log_guard", "std_norm",
                         "std_floor")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a speaker-embedding network and the front-end it expects."""

    model_type: str = RESNET_MODEL_TYPE
    sample_rate: int = 16000
    n_mels: int = 80
    embedding_dim: int = 256
    layers: tuple[int, ...] = (3, 4, 6, 3)  # CAM++: CAM layers per dense block
    channels: tuple[int, ...] = (32, 64, 128, 256)  # CAM++: (FCM, TDNN, growth) channels
    # Not read here (the networks size layers from their tensors), but part of the hub's
    # config.json schema (docs: SPEC, the MLX layout the Swift loader reads): written as is.
    pooling_output_dim: int = 5120
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    network: dict[str, Any] = field(default_factory=dict)  # NeMo: engines/nemo.py describes it
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
        check_config(data, path)
        return cls.from_dict(data)

    def save(self, directory: Path) -> None:
        """Write `config.json` into a model directory."""
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        (Path(directory) / CONFIG_FILE).write_text(text, encoding="utf-8")


# The keys a config.json must hold, by network (unknown top-level keys are fine): a CAM++ or
# NeMo model run with the ResNet's default front-end would give wrong scores silently.
REQUIRED_KEYS = {
    RESNET_MODEL_TYPE: ("model_type", "embedding_dim", "layers", "channels"),
    CAMPPLUS_MODEL_TYPE: ("model_type", "embedding_dim", "layers", "channels", "frontend"),
    NEMO_MODEL_TYPE: ("model_type", "embedding_dim", "network", "frontend"),
    SEGMENTATION_MODEL_TYPE: ("model_type", "embedding_dim", "sample_rate", "network"),
}
SHAPE_IN_NETWORK = (NEMO_MODEL_TYPE, SEGMENTATION_MODEL_TYPE)  # layers, channels written empty
REQUIRED_FRONTEND = ("sample_rate", "num_mel_bins", "frame_length_ms", "frame_shift_ms",
                     "window", "input_scale")
FRONTEND_CHOICES = {"window": ("hamming", "povey", "hann"), "framing": ("kaldi", "centered"),
                    "mel_scale": ("kaldi", "slaney"), "log_guard": ("floor", "add")}


def check_config(data: dict[str, Any], path: Path) -> None:
    """Refuse a config.json that does not describe a known network: a missing or wrong key is
    a ModelError naming the file and the key."""
    model_type = data.get("model_type")
    if not isinstance(model_type, str):
        raise ModelError(f"{path}: no model_type (known: {KNOWN_TYPES})")
    try:
        family = network_family(model_type)
    except ModelError as exc:
        raise ModelError(f"{path}: model_type: {exc}") from None
    missing = [k for k in REQUIRED_KEYS[family] if k not in data]
    if missing:
        raise ModelError(f"{path}: no {', '.join(missing)} (a {family} model needs it)")
    dim = data["embedding_dim"]
    if isinstance(dim, bool) or not isinstance(dim, int) or dim <= 0:
        raise ModelError(f"{path}: embedding_dim {dim!r} is not a positive integer")
    # a NeMo or segmentation model's shape is in `network`; its layers and channels are empty
    for key in ("layers", "channels") if family not in SHAPE_IN_NETWORK else ():
        if key in data and not (isinstance(data[key], list) and data[key] and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in data[key])):
            raise ModelError(f"{path}: {key} {data[key]!r} is not a list of positive integers")
    if "network" in data and not isinstance(data["network"], dict):
        raise ModelError(f"{path}: network is not a JSON object")
    if "frontend" in data:
        frontend = data["frontend"]
        if not isinstance(frontend, dict):
            raise ModelError(f"{path}: frontend is not a JSON object")
        lacking = [k for k in REQUIRED_FRONTEND if k not in frontend]
        if family in (CAMPPLUS_MODEL_TYPE, NEMO_MODEL_TYPE) and lacking:
            raise ModelError(f"{path}: frontend has no {', '.join(lacking)} "
                             f"(a {family} model needs its front-end)")
        for key, choices in FRONTEND_CHOICES.items():
            if key in frontend and frontend[key] not in choices:
                raise ModelError(f"{path}: frontend.{key} {frontend[key]!r} is not one of "
                                 f"{', '.join(choices)}")


# A tensor only the network of that family has (its first layer), to tell the weights apart.
FIRST_TENSOR = {RESNET_MODEL_TYPE: "conv1.weight", CAMPPLUS_MODEL_TYPE: "head.conv1.weight",
                SEGMENTATION_MODEL_TYPE: "sincnet.conv1d.0.weight"}


def output_tensor(config: ModelConfig) -> str:
    """The name of the final layer's weight: its first dimension is embedding_dim."""
    family = network_family(config.model_type)
    if family == NEMO_MODEL_TYPE:
        return f"decoder.emb{int(config.network.get('emb_layers', 1)) - 1}.weight"
    if family == SEGMENTATION_MODEL_TYPE:
        return "classifier.weight"
    return "embedding.weight"


def check_weights(config: ModelConfig, directory: Path) -> None:
    """Refuse a config.json whose network or embedding_dim does not match model.safetensors
    (read: the header only). Nothing to check without the file (a Core ML-only model)."""
    weights = Path(directory) / WEIGHTS_FILE
    if not weights.is_file():
        return
    path = Path(directory) / CONFIG_FILE
    name = output_tensor(config)
    shapes = tensor_shapes(weights)
    for wanted in (FIRST_TENSOR.get(network_family(config.model_type)), name):
        if wanted is not None and wanted not in shapes:
            raise ModelError(f"{path}: model_type {config.model_type!r} does not match "
                             f"{WEIGHTS_FILE} (it has no {wanted!r}: weights of another "
                             "network)")
    size = shapes[name][0] if shapes[name] else None
    if size != config.embedding_dim:
        raise ModelError(f"{path}: embedding_dim {config.embedding_dim} does not match "
                         f"{WEIGHTS_FILE} ({name} gives {size})")


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    """Name -> shape of every tensor in a safetensors file, from its header alone."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            header, _ = _read_header(handle, path, path.stat().st_size)
    except OSError as exc:
        raise ModelError(f"{path}: cannot read weights ({exc.strerror or exc})") from None
    return {n: list(info.get("shape", [])) for n, info in header.items()
            if n != "__metadata__" and isinstance(info, dict)}


class Weights:
    """Tensors from a safetensors file (or given in memory), loaded on first use."""

    def __init__(self, path: Path | None = None, tensors: dict[str, np.ndarray] | None = None,
                 digest: Callable[[], str] | None = None):
        """`digest`: where the file's SHA-256 comes from when someone has it already (a
        model's identity hashes the same bytes), so that a run reads the weights once."""
        if (path is None) == (tensors is None):
            raise ValueError("give exactly one of path or tensors")
        self.path = Path(path) if path is not None else None
        self._tensors = tensors
        self._digest: str | None = None
        self._known_digest = digest

    @property
    def directory(self) -> Path | None:
        """The model directory holding the file, if any."""
        return self.path.parent if self.path is not None else None

    def tensors(self) -> dict[str, np.ndarray]:
        """Name -> array, read from disk on the first call."""
        if self._tensors is None:
            self._tensors = load_safetensors(self.path)
        return self._tensors

    def some(self, names: list[str]) -> dict[str, np.ndarray]:
        """Just the named tensors, without reading the rest of the file."""
        if self._tensors is not None:
            return {name: self._tensors[name] for name in names}
        return load_safetensors(self.path, names)

    def digest(self) -> str:
        """SHA-256 (hex) of the weights file, or of the in-memory tensors."""
        if self._digest is None and self._known_digest is not None:
            self._digest = self._known_digest()
        if self._digest is None:
            sha = hashlib.sha256()
            if self.path is not None:
                hash_file(sha, self.path)
            else:
                for name in sorted(self._tensors):
                    sha.update(name.encode())
                    sha.update(np.ascontiguousarray(self._tensors[name]).tobytes())
            self._digest = sha.hexdigest()
        return self._digest


_DTYPES = {
    "F32": np.float32,
    "F16": np.float16,
    "F64": np.float64,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}
_MAX_HEADER = 100 * 1024 * 1024


def _read_header(handle, path: Path, file_size: int) -> tuple[dict, int]:
    """(header dict, offset of the data section) of an open safetensors file."""
    prefix = handle.read(8)
    if len(prefix) < 8:
        raise ModelError(f"{path}: not a safetensors file (too short)")
    (size,) = struct.unpack("<Q", prefix)
    if size > min(_MAX_HEADER, file_size - 8):
        raise ModelError(f"{path}: not a safetensors file (bad header size)")
    try:
        header = json.loads(handle.read(size))
    except ValueError:
        raise ModelError(f"{path}: not a safetensors file (bad header)") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path}: not a safetensors file (bad header)")
    return header, 8 + size


def _tensor(handle, path: Path, name: str, info: dict, data_start: int) -> np.ndarray:
    dtype = _DTYPES.get(info.get("dtype"))
    if dtype is None:
        raise ModelError(f"{path}: tensor {name!r} has unsupported dtype {info.get('dtype')}")
    start, end = info["data_offsets"]
    shape = tuple(info["shape"])
    handle.seek(data_start + start)
    raw = handle.read(end - start)
    if len(raw) != end - start or (end - start) != int(np.prod(shape, dtype=np.int64)) * \
            np.dtype(dtype).itemsize:
        raise ModelError(f"{path}: tensor {name!r} has the wrong byte count")
    array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    return array.reshape(shape).astype(dtype, copy=True)


def load_safetensors(path: Path, names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Load the tensors of a safetensors file (all, or just `names`) as numpy arrays."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            header, data_start = _read_header(handle, path, path.stat().st_size)
            wanted = [n for n in header if n != "__metadata__"] if names is None else names
            missing = [n for n in wanted if n not in header]
            if missing:
                raise ModelError(f"{path}: no tensor {missing[0]!r} in the weights")
            return {n: _tensor(handle, path, n, header[n], data_start) for n in wanted}
    except OSError as exc:
        raise ModelError(f"{path}: cannot read weights ({exc.strerror or exc})") from None


def save_safetensors(
    path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None
) -> None:
    """Write tensors (in the given order) to a safetensors file."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    chunks = []
    offset = 0
    for name, array in tensors.items():
        array = np.ascontiguousarray(array)
        dtype = _NAMES.get(array.dtype)
        if dtype is None:
            raise ValueError(f"tensor {name!r}: unsupported dtype {array.dtype}")
        raw = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(raw)],
        }
        chunks.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for raw in chunks:
            handle.write(raw)
