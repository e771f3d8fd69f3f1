"""Convert a PyTorch speaker-embedding checkpoint into this project's model directory layout.

The output directory holds `model.safetensors` (float32, BatchNorm folded into the convolutions,
conv weights as [O, kH, kW, I]), `config.json` (a `ModelConfig`) and `ATTRIBUTION.md` (the
licence and provenance of the weights). Each supported model family is a `ModelFamily`: a test
on the tensor names and a function that builds the converted tensors and config. Families are
tried in order; a new one (e.g. CAM++, whose tensors start with `head.` / `xvector.`) is added
by appending to `FAMILIES`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from audio_cli.models import batchnorm
from audio_cli.models.convert_campplus import attribution, convert_tensors, looks_like_campplus
from audio_cli.models.convert_nemo import NEMO_SUFFIX
from audio_cli.models.convert_segmentation import looks_like_segmentation
from audio_cli.models.torch_checkpoint import find_state_dict, load_torch_checkpoint
from engines.errors import ModelError
from engines.files import scratch_dir
from engines.model import (
    CONFIG_FILE,
    RESNET_MODEL_TYPE,
    WEIGHTS_FILE,
    FrontendConfig,
    ModelConfig,
    save_safetensors,
)

ATTRIBUTION_FILE = "ATTRIBUTION.md"
OUTPUT_FILES = (WEIGHTS_FILE, ATTRIBUTION_FILE, CONFIG_FILE)  # written in this order

Tensors = dict[str, np.ndarray]
Settings = dict[str, Any]  # a checkpoint's other top-level entries (hyper-parameters, ...)


@dataclass(frozen=True)
class Converted:
    """What a family converter produces: the tensors to save, the config and the attribution."""

    tensors: Tensors
    config: ModelConfig
    attribution: str


@dataclass(frozen=True)
class ModelFamily:
    """A checkpoint layout this module can convert, recognised by its tensor names."""

    name: str
    expects: str  # the tensor names that identify it, for error messages
    matches: Callable[[Tensors], bool]
    convert: Callable[[Tensors, str, Settings], Converted]


class _TrackedTensors(dict):
    """A tensor dict that records which names were read, to catch unconverted leftovers."""

    def __init__(self, tensors: Tensors) -> None:
        """Wrap `tensors`; nothing is marked as used yet."""
        super().__init__(tensors)
        self.used: set[str] = set()

    def __getitem__(self, name: str) -> np.ndarray:
        """Return a tensor and mark it used; a missing one is a ModelError."""
        if name not in self:
            raise ModelError(f"checkpoint lacks tensor {name!r}")
        self.used.add(name)
        return super().__getitem__(name)

    def unused(self) -> list[str]:
        """Names that no converter step has read."""
        return sorted(set(self) - self.used)


# ---------------------------------------------------------------- WeSpeaker ResNet (pyannote)

_WESPEAKER_REQUIRED = {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "seg_1.weight"}
_WESPEAKER_ATTRIBUTION = """\
# Attribution of the model weights

`{weights}` in this directory is a converted copy of a WeSpeaker ResNet34 speaker-embedding
model. The original weights are the work of the WeSpeaker project
(https://github.com/wenet-e2e/wespeaker), trained on the VoxCeleb speaker-recognition data
(A. Nagrani, J. S. Chung, W. Xie, A. Zisserman; Visual Geometry Group, University of Oxford),
and are distributed for pyannote.audio as `pyannote/wespeaker-voxceleb-resnet34-LM`.

Licence: Creative Commons Attribution 4.0 International (CC BY 4.0),
https://creativecommons.org/licenses/by/4.0/

Changes made to the weights (their format, not what they compute):
- converted from the PyTorch checkpoint `{source}`;
- each BatchNorm layer was fused into the convolution before it
  (scale = gamma / sqrt(running_var + {eps}), W' = W * scale, b' = beta - running_mean * scale);
- convolution kernels were transposed from [out, in, height, width] to [out, height, width, in];
- `seg_1` was renamed `embedding`; a training-only `projection` layer, if present, was dropped;
- values were computed in float64 and stored as float32.

The result computes the same embeddings as the original up to float32 rounding. The WeSpeaker
and pyannote authors did not make this conversion and do not endorse it.
"""


def _wespeaker_names(tensors: Tensors) -> Tensors:
    """Drop pyannote's `resnet.` prefix, the training-only `projection` and BN step counters."""
    out = {}
    for name, array in tensors.items():
        name = name.removeprefix("resnet.")
        if name.startswith("projection.") or name.endswith(".num_batches_tracked"):
            continue
        out[name] = array
    return out


def _looks_like_wespeaker_resnet(tensors: Tensors) -> bool:
    """True when the tensors are a WeSpeaker ResNet (pyannote's or wespeaker's own names)."""
    return _WESPEAKER_REQUIRED <= _wespeaker_names(tensors).keys()


def _fold_batchnorm(t: _TrackedTensors, conv: str, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """Fuse BatchNorm `bn` into conv `conv`: weight as [O, kH, kW, I] and bias, float32."""
    if t[f"{conv}.weight"].ndim != 4:
        raise ModelError(f"{conv}.weight has shape {t[f'{conv}.weight'].shape}, expected 4-D "
                         "[O, I, kH, kW]")
    return batchnorm.fold_into_conv(t, conv, bn)


def _count_blocks(t: Tensors) -> tuple[int, ...]:
    """Basic blocks per layer, from the `layer{L}.{i}.conv1.weight` names."""
    layers: list[int] = []
    while f"layer{len(layers) + 1}.0.conv1.weight" in t:
        blocks = 1
        while f"layer{len(layers) + 1}.{blocks}.conv1.weight" in t:
            blocks += 1
        layers.append(blocks)
    return tuple(layers)


def _resnet_pairs(layers: tuple[int, ...], t: Tensors) -> list[tuple[str, str, str]]:
    """(conv, batchnorm, output name) for every conv of the ResNet, in network order."""
    pairs = [("conv1", "bn1", "conv1")]
    for layer, blocks in enumerate(layers, start=1):
        for i in range(blocks):
            p = f"layer{layer}.{i}"
            pairs += [(f"{p}.conv1", f"{p}.bn1", f"{p}.conv1")]
            pairs += [(f"{p}.conv2", f"{p}.bn2", f"{p}.conv2")]
            if f"{p}.shortcut.0.weight" in t:
                pairs += [(f"{p}.shortcut.0", f"{p}.shortcut.1", f"{p}.shortcut")]
    return pairs


def _resnet_config(t: Tensors, layers: tuple[int, ...], source: str) -> ModelConfig:
    """The ModelConfig implied by the ResNet tensor shapes."""
    channels = tuple(int(t[f"layer{i}.0.conv1.weight"].shape[0]) for i in range(1, len(layers) + 1))
    embedding_dim, pooled = (int(n) for n in t["seg_1.weight"].shape)
    rows, rest = divmod(pooled, 2 * channels[-1])
    if rest:
        raise ModelError(f"seg_1 input {pooled} is not 2 x {channels[-1]} channels x rows")
    n_mels = rows * 2 ** (len(layers) - 1)  # every layer after the first halves the frequency
    return ModelConfig(
        model_type=RESNET_MODEL_TYPE,
        n_mels=n_mels,
        embedding_dim=embedding_dim,
        layers=layers,
        channels=channels,
        pooling_output_dim=pooled,
        frontend=FrontendConfig(num_mel_bins=n_mels),
        model_id=source,
        license="CC-BY-4.0",
    )


def convert_wespeaker_resnet(tensors: Tensors, source: str,
                             settings: Settings | None = None) -> Converted:
    """Convert WeSpeaker ResNet tensors (pyannote or wespeaker names) to the hub layout."""
    t = _TrackedTensors(_wespeaker_names(tensors))
    layers = _count_blocks(t)
    if t["seg_1.weight"].ndim != 2:
        raise ModelError(f"seg_1.weight has shape {t['seg_1.weight'].shape}, expected 2-D")
    out: Tensors = {}
    for conv, bn, name in _resnet_pairs(layers, t):
        out[f"{name}.weight"], out[f"{name}.bias"] = _fold_batchnorm(t, conv, bn)
    out["embedding.weight"] = t["seg_1.weight"].astype(np.float32)
    out["embedding.bias"] = t["seg_1.bias"].astype(np.float32)
    if t.unused():
        raise ModelError(f"{source}: tensors this converter does not know: {t.unused()[:5]}")
    text = _WESPEAKER_ATTRIBUTION.format(weights=WEIGHTS_FILE, source=source, eps=batchnorm.EPS)
    return Converted(out, _resnet_config(t, layers, source), text)


# ---------------------------------------------------------------- 3D-Speaker CAM++


def convert_campplus(tensors: Tensors, source: str, settings: Settings | None = None
                     ) -> Converted:
    """Convert 3D-Speaker CAM++ tensors to the hub layout (see convert_campplus.py)."""
    t = _TrackedTensors({k: v for k, v in tensors.items()
                         if not k.endswith(".num_batches_tracked")})
    out, config = convert_tensors(t, source)
    if t.unused():
        raise ModelError(f"{source}: tensors this converter does not know: {t.unused()[:5]}")
    return Converted(out, config, attribution(source))


# ---------------------------------------------------------------- pyannote segmentation


def convert_segmentation(tensors: Tensors, source: str, settings: Settings | None = None
                         ) -> Converted:
    """Convert pyannote's PyanNet segmentation tensors (see convert_segmentation.py)."""
    from audio_cli.models import convert_segmentation as segmentation

    t = _TrackedTensors(tensors)
    out, config = segmentation.convert_tensors(t, source, settings or {})
    if t.unused():
        raise ModelError(f"{source}: tensors this converter does not know: {t.unused()[:5]}")
    return Converted(out, config, segmentation.attribution(source))


# ---------------------------------------------------------------- dispatch and output

FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(
        "WeSpeaker ResNet",
        "conv1, bn1, layer1..layer4 and seg_1 tensors, optionally prefixed resnet. or module.",
        _looks_like_wespeaker_resnet,
        convert_wespeaker_resnet,
    ),
    ModelFamily(
        "3D-Speaker CAM++",
        "head.conv1, xvector.tdnn, xvector.block1.. and xvector.dense tensors",
        looks_like_campplus,
        convert_campplus,
    ),
    ModelFamily(
        "pyannote segmentation (PyanNet)",
        "sincnet.conv1d.0.filterbank, lstm and classifier tensors",
        looks_like_segmentation,
        convert_segmentation,
    ),
)


def _strip_data_parallel(tensors: Tensors) -> Tensors:
    """Remove the `module.` prefixes that DataParallel/DDP training adds to every name."""
    out = {}
    for name, array in tensors.items():
        while name.startswith("module."):
            name = name[len("module.") :]
        out[name] = array
    return out


def detect_family(tensors: Tensors, source: str = "checkpoint") -> ModelFamily:
    """The model family whose tensor names these are; ModelError when none matches."""
    for family in FAMILIES:
        if family.matches(tensors):
            return family
    expected = "; or ".join(f"a {f.name} ({f.expects})" for f in FAMILIES)
    raise ModelError(f"{source}: unrecognised checkpoint layout; expected {expected}")


def _refuse_overwrite(out_dir: Path) -> None:
    """ModelError if `out_dir` already holds any file this conversion would write."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelError(f"{out_dir}: exists and is not a directory")
    present = [name for name in OUTPUT_FILES if (out_dir / name).exists()]
    if present:
        raise ModelError(f"{out_dir}: already holds {', '.join(present)}; will not overwrite")


def _write_outputs(out_dir: Path, converted: Converted) -> None:
    """Write the three files into a scratch dir in `out_dir`, then rename them into place."""
    try:
        with scratch_dir(out_dir, ".convert-") as scratch:
            save_safetensors(scratch / WEIGHTS_FILE, converted.tensors, {"format": "mlx"})
            (scratch / ATTRIBUTION_FILE).write_text(converted.attribution, encoding="utf-8")
            converted.config.save(scratch)
            _refuse_overwrite(out_dir)  # someone may have written there while we converted
            for name in OUTPUT_FILES:  # config.json last: its presence marks a complete model
                os.replace(scratch / name, out_dir / name)
    except OSError as exc:
        raise ModelError(f"{out_dir}: cannot write model ({exc.strerror or exc})") from None


def convert_nemo(source: Path) -> Converted:
    """Convert an NVIDIA NeMo speaker model (`.nemo`; see convert_nemo.py)."""
    from audio_cli.models import convert_nemo as nemo

    config, tensors = nemo.read_nemo(source)
    t = _TrackedTensors(tensors)
    out, model = nemo.convert_tensors(t, config, source.name)
    if t.unused():
        raise ModelError(f"{source.name}: tensors this converter does not know: {t.unused()[:5]}")
    return Converted(out, model, nemo.attribution(source.name))


def convert_checkpoint(source: Path, out_dir: Path) -> Path:
    """Convert the torch checkpoint or `.nemo` model `source` into a new model directory
    `out_dir`; return it."""
    source, out_dir = Path(source), Path(out_dir)
    _refuse_overwrite(out_dir)
    if source.suffix.lower() == NEMO_SUFFIX:
        converted = convert_nemo(source)
    else:
        checkpoint = load_torch_checkpoint(source)
        tensors = _strip_data_parallel(find_state_dict(checkpoint, str(source)))
        settings = checkpoint if isinstance(checkpoint, dict) else {}
        converted = detect_family(tensors, str(source)).convert(tensors, source.name, settings)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(f"{out_dir}: cannot create directory ({exc.strerror or exc})") from None
    _write_outputs(out_dir, converted)
    return out_dir
