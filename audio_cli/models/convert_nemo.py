"""Convert an NVIDIA NeMo speaker model (`.nemo`) to the hub layout, torch-free.

A `.nemo` file is a tar archive (plain or gzipped) holding `model_config.yaml` and
`model_weights.ckpt`, a `torch.save` zip that models/torch_checkpoint.py reads. The yaml's
`preprocessor` (AudioToMelSpectrogramPreprocessor) becomes the FrontendConfig; the encoder
(ConvASREncoder: SpeakerNet, TitaNet; or ECAPAEncoder) and the SpeakerDecoder become the
`network` description of engines/nemo.py. Layer shapes are read from the tensors; only what
the tensors cannot say (dilations, pooling) comes from the yaml.
"""

from __future__ import annotations

import re
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from audio_cli.models import batchnorm
from audio_cli.models.torch_checkpoint import read_torch_state_dict
from engines.errors import ModelError
from engines.model import NEMO_MODEL_TYPE, WEIGHTS_FILE, FrontendConfig, ModelConfig

NEMO_SUFFIX = ".nemo"
CONFIG_MEMBER = "model_config.yaml"
WEIGHTS_MEMBER = "model_weights.ckpt"
JASPER_BN_EPS = 1e-3  # NeMo's JasperBlock BatchNorm eps; its other BatchNorms keep torch's 1e-5
IGNORED = ("preprocessor.", "decoder.final.", "loss.", "eval_loss.")  # not in the embedding

ATTRIBUTION = """\
# Attribution of the model weights

`{weights}` in this directory is a converted copy of `{source}`, an NVIDIA NeMo speaker model
(https://github.com/NVIDIA/NeMo). Keep the licence that came with `{source}` with these
weights: NVIDIA's published speaker models are released under their model cards' licences
(for example CC-BY-4.0 or the NVIDIA Open Model License).

Changes made to the weights (their format, not what they compute):
- read from the `.nemo` archive's `model_weights.ckpt` without PyTorch;
- each BatchNorm that follows a convolution or linear layer was fused into it, and each
  depthwise-separable or grouped convolution became one full convolution computing the same
  sums; BatchNorms after a ReLU became per-channel scales and shifts;
- kernels were transposed to [out, width, in]; values were computed in float64 and stored as
  float32.

The result computes the same embeddings as the original up to float32 rounding. NVIDIA did
not make this conversion and does not endorse it.
"""


# ---------------------------------------------------------------- the archive


def _member(archive: tarfile.TarFile, name: str, source: Path) -> tarfile.TarInfo:
    for info in archive.getmembers():
        if info.isfile() and Path(info.name).name == name:
            return info
    raise ModelError(f"{source}: not a NeMo model (no {name} in the archive)")


def _resolve(value: Any, root: dict) -> Any:
    """A yaml value with OmegaConf's `${a.b}` references to other keys resolved."""
    if isinstance(value, dict):
        return {k: _resolve(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, root) for v in value]
    match = re.fullmatch(r"\$\{([\w.]+)\}", value) if isinstance(value, str) else None
    if match is None:
        return value
    path = match.group(1).split(".")
    # a training yaml's `${model.x}` names the model config's own `x`
    for keys in [path] + ([path[1:]] if path[0] == "model" and len(path) > 1 else []):
        node: Any = root
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if node is not None:
            return _resolve(node, root)
    raise ModelError(f"model_config.yaml: cannot resolve {value}")


def read_nemo(source: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(model config, tensors) of a `.nemo` archive."""
    import yaml

    source = Path(source)
    try:
        with tarfile.open(source, "r:*") as archive:
            text = archive.extractfile(_member(archive, CONFIG_MEMBER, source)).read()
            weights = archive.extractfile(_member(archive, WEIGHTS_MEMBER, source))
            with tempfile.TemporaryDirectory(prefix="audio-nemo-") as scratch:
                path = Path(scratch) / WEIGHTS_MEMBER
                with open(path, "wb") as out:
                    while block := weights.read(1 << 20):
                        out.write(block)
                tensors = read_torch_state_dict(path)
    except (tarfile.TarError, EOFError):
        raise ModelError(f"{source}: not a NeMo model (not a readable tar archive)") from None
    except OSError as exc:
        raise ModelError(f"{source}: cannot read ({exc.strerror or exc})") from None
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ModelError(f"{source}: bad {CONFIG_MEMBER} ({str(exc).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ModelError(f"{source}: {CONFIG_MEMBER} is not a mapping")
    return _resolve(config, config), tensors


# ---------------------------------------------------------------- front-end


def _require(cfg: dict, key: str, allowed: tuple, default: Any) -> Any:
    value = cfg.get(key, default)
    if value not in allowed:
        raise ModelError(f"preprocessor {key}={value!r} is not supported (supported: "
                         f"{', '.join(map(repr, allowed))})")
    return value


def frontend_config(cfg: dict[str, Any]) -> FrontendConfig:
    """FrontendConfig of an AudioToMelSpectrogramPreprocessor config (its defaults applied)."""
    target = str(cfg.get("_target_", ""))
    if not target.endswith("AudioToMelSpectrogramPreprocessor"):
        raise ModelError(f"preprocessor {target or '(none)'} is not supported "
                         "(only AudioToMelSpectrogramPreprocessor)")
    rate = int(cfg.get("sample_rate", 16000))
    size = cfg.get("n_window_size") or int(float(cfg.get("window_size", 0.02)) * rate)
    stride = cfg.get("n_window_stride") or int(float(cfg.get("window_stride", 0.01)) * rate)
    _require(cfg, "normalize", ("per_feature",), "per_feature")
    _require(cfg, "log", (True,), True)
    _require(cfg, "frame_splicing", (1,), 1)
    _require(cfg, "exact_pad", (False,), False)
    _require(cfg, "mag_power", (2.0, 2), 2.0)
    _require(cfg, "mel_norm", ("slaney",), "slaney")
    guard = _require(cfg, "log_zero_guard_type", ("add", "clamp"), "add")
    floor = cfg.get("log_zero_guard_value", 2.0**-24)
    floor = {"tiny": float(np.finfo(np.float32).tiny),
             "eps": float(np.finfo(np.float32).eps)}.get(floor, floor)
    return FrontendConfig(
        sample_rate=rate, num_mel_bins=int(cfg.get("features", 64)),
        frame_length_ms=1000.0 * int(size) / rate, frame_shift_ms=1000.0 * int(stride) / rate,
        window=_require(cfg, "window", ("hann", "hamming"), "hann"), input_scale=1.0,
        preemphasis=float(cfg.get("preemph", 0.97) or 0.0), remove_dc_offset=False,
        low_freq=float(cfg.get("lowfreq") or 0.0),
        high_freq=float(cfg.get("highfreq") or rate / 2), log_floor=float(floor), cmn=True,
        framing="centered", fft_size=int(cfg.get("n_fft") or 0), mel_scale="slaney",
        log_guard="add" if guard == "add" else "floor", std_norm=True, std_floor=1e-5)


# ---------------------------------------------------------------- weights


def _kernel(weight: np.ndarray) -> np.ndarray:
    """[O, I, k] -> [O, k, I] float64."""
    return np.moveaxis(np.asarray(weight, dtype=np.float64), 1, -1)


def _full(weight: np.ndarray, groups: int) -> np.ndarray:
    """A grouped conv's [O, I/g, k] kernel as the equal full [O, I, k] one (zeros elsewhere)."""
    out, per_group, k = weight.shape
    full = np.zeros((out, per_group * groups, k))
    step = out // groups
    for g in range(groups):
        full[g * step : (g + 1) * step, g * per_group : (g + 1) * per_group] = \
            weight[g * step : (g + 1) * step]
    return full


def _store(out: dict, name: str, kernel: np.ndarray, bias: np.ndarray) -> None:
    """Save an [O, I, k] kernel as [O, k, I] and its bias, float32."""
    out[f"{name}.weight"] = np.ascontiguousarray(_kernel(kernel), dtype=np.float32)
    out[f"{name}.bias"] = np.asarray(bias, dtype=np.float32)


def _fold(t, kernel: np.ndarray, bias: np.ndarray | None, bn: str, eps: float):
    """[O, I, k] conv (bias optional) then BatchNorm `bn` -> (kernel, bias), float64."""
    scale, shift = batchnorm.scale_shift(t, bn, eps=eps)
    if bias is not None:
        shift = shift + bias * scale
    return kernel * scale[:, None, None], shift


def _weight(t, name: str) -> np.ndarray:
    return np.asarray(t[name], dtype=np.float64)


def _affine(t, out: dict, bn: str, name: str) -> None:
    scale, shift = batchnorm.scale_shift(t, bn)
    out[f"{name}.weight"], out[f"{name}.bias"] = scale.astype(np.float32), shift.astype(np.float32)


def _conv_name(base: str, masked: bool) -> str:
    """A ConvASR convolution's weight name: MaskedConv1d nests its nn.Conv1d as `conv`."""
    return f"{base}.conv.weight" if masked else f"{base}.weight"


def _jasper_conv(t, p: str, index: int, separable: bool, masked: bool) -> np.ndarray:
    """The [O, I, k] full kernel of the sub-block at mconv `index` (before its BatchNorm)."""
    names = [_conv_name(f"{p}.mconv.{index + i}", masked) for i in range(1 + separable)]
    if any(name.replace(".weight", ".bias") in t for name in names):
        raise ModelError(f"{p}: convolution biases are not supported")
    first = _weight(t, names[0])
    if not separable:
        return first
    point = _weight(t, _conv_name(f"{p}.mconv.{index + 1}", masked))  # [O, I, 1]
    if first.shape[1] != 1 or point.shape[2] != 1 or first.shape[0] != point.shape[1]:
        raise ModelError(f"{p}: unexpected separable convolution shapes {first.shape}, "
                         f"{point.shape}")
    return point[:, :, 0][:, :, None] * first[:, 0, :][None, :, :]


def _convasr(t, encoder: dict, out: dict) -> dict[str, Any]:
    """Fold the ConvASREncoder's blocks into `out`; return the network's `blocks`."""
    masked = bool(encoder.get("conv_mask", True))
    if encoder.get("activation", "relu") != "relu":
        raise ModelError(f"encoder activation {encoder.get('activation')!r} is not supported "
                         "(relu)")
    blocks = []
    for b, cfg in enumerate(encoder.get("jasper") or []):
        p, name = f"encoder.encoder.{b}", f"encoder.{b}"
        separable = bool(cfg.get("separable", False))
        per_repeat = 5 if separable else 4  # conv(s), BatchNorm, ReLU, dropout
        bn_at = 2 if separable else 1
        if list(cfg.get("stride", [1])) != [1] or int(cfg.get("groups", 1)) != 1 or \
                int(cfg.get("heads", -1)) != -1 or cfg.get("residual_dense"):
            raise ModelError(f"{p}: strides, groups, heads and dense residuals are not supported")
        repeat = int(cfg.get("repeat", 3))
        for i in range(repeat):
            base = per_repeat * i
            kernel, bias = _fold(t, _jasper_conv(t, p, base, separable, masked), None,
                                 f"{p}.mconv.{base + bn_at}", JASPER_BN_EPS)
            _store(out, f"{name}.conv{i}", kernel, bias)
        se = bool(cfg.get("se", False))
        if se:
            if int(cfg.get("se_context_size", -1)) > 0:
                raise ModelError(f"{p}: squeeze-excitation over a limited context is not "
                                 "supported (only the whole clip, se_context_size -1)")
            fc = f"{p}.mconv.{per_repeat * (repeat - 1) + bn_at + 1}.fc"
            for j, part in ((1, "0"), (2, "2")):
                w = _weight(t, f"{fc}.{part}.weight")
                out[f"{name}.se.se{j}.weight"] = np.ascontiguousarray(w[:, None, :], np.float32)
        residual = bool(cfg.get("residual", True))
        if residual:
            kernel, bias = _fold(t, _weight(t, _conv_name(f"{p}.res.0.0", masked)), None,
                                 f"{p}.res.0.1", JASPER_BN_EPS)
            _store(out, f"{name}.res", kernel, bias)
        dilation = int(list(cfg.get("dilation", [1]))[0])
        blocks.append({"repeat": repeat, "kernel": int(out[f"{name}.conv0.weight"].shape[1]),
                       "dilation": dilation, "residual": residual, "se": se})
    if not blocks:
        raise ModelError("the ConvASREncoder config lists no blocks (encoder.jasper)")
    return {"encoder": "convasr", "blocks": blocks}


def _tdnn(t, out: dict, module: str, name: str) -> int:
    """A TDNNModule (conv, ReLU, BatchNorm): the conv to `name`.conv, the BN to an affine."""
    kernel = _weight(t, f"{module}.conv_layer.weight")
    _store(out, f"{name}.conv", kernel, _weight(t, f"{module}.conv_layer.bias"))
    _affine(t, out, f"{module}.bn", f"{name}.bn")
    return int(kernel.shape[2])


def _ecapa(t, encoder: dict, out: dict) -> dict[str, Any]:
    dilations = [int(d) for d in encoder.get("dilations", [])]
    kernels = [_tdnn(t, out, "encoder.layers.0", "ecapa.0")]
    i = 1
    while f"encoder.layers.{i}.group_tdnn_block.0.conv_layer.weight" in t:
        p, name = f"encoder.layers.{i}.group_tdnn_block", f"ecapa.{i}"
        _tdnn(t, out, f"{p}.0", f"{name}.tdnn1")
        group = _weight(t, f"{p}.1.weight")
        channels = int(out[f"{name}.tdnn1.conv.weight"].shape[0])
        _store(out, f"{name}.group", _full(group, channels // group.shape[1]),
               _weight(t, f"{p}.1.bias"))
        _affine(t, out, f"{p}.3", f"{name}.group.bn")
        _tdnn(t, out, f"{p}.4", f"{name}.tdnn2")
        se = f"encoder.layers.{i}.se_layer.se_layer"
        _store(out, f"{name}.se.se1", _weight(t, f"{se}.0.weight"), _weight(t, f"{se}.0.bias"))
        scale, shift = batchnorm.scale_shift(t, f"{se}.2")  # after the ReLU: into se2 (1x1)
        w2 = _weight(t, f"{se}.3.weight")
        _store(out, f"{name}.se.se2", w2 * scale[None, :, None],
               _weight(t, f"{se}.3.bias") + w2[:, :, 0] @ shift)
        kernels.append(int(group.shape[2]))
        i += 1
    kernels.append(_tdnn(t, out, "encoder.feature_agg", "ecapa.agg"))
    if len(dilations) != len(kernels):
        raise ModelError(f"ECAPA encoder: {len(dilations)} dilations for {len(kernels)} layers")
    return {"encoder": "ecapa", "kernels": kernels, "dilations": dilations}


def _decoder(t, decoder: dict, out: dict) -> dict[str, Any]:
    pool = str(decoder.get("pool_mode", "xvector")).lower()
    if pool not in ("xvector", "attention"):
        raise ModelError(f"decoder pool_mode {pool!r} is not supported (xvector, attention)")
    if pool == "attention":
        a = "decoder._pooling.attention_layer"
        tdnn = _weight(t, f"{a}.0.conv_layer.weight")[:, :, 0]
        scale, shift = batchnorm.scale_shift(t, f"{a}.0.bn")
        parts = (tdnn, _weight(t, f"{a}.0.conv_layer.bias"), scale, shift,
                 _weight(t, f"{a}.2.weight")[:, :, 0], _weight(t, f"{a}.2.bias"))
        for part, value in zip(("tdnn.weight", "tdnn.bias", "bn.weight", "bn.bias",
                                "attention.weight", "attention.bias"), parts, strict=True):
            out[f"decoder.pool.{part}"] = np.ascontiguousarray(value, dtype=np.float32)
    j = 0
    while f"decoder.emb_layers.{j}.0.weight" in t:
        e = f"decoder.emb_layers.{j}"
        if pool == "attention":  # BatchNorm over the pooled input, then a 1x1 conv
            scale, shift = batchnorm.scale_shift(t, f"{e}.0")
            w = _weight(t, f"{e}.1.weight")[:, :, 0]
            weight, bias = w * scale[None, :], w @ shift + _weight(t, f"{e}.1.bias")
        else:  # Linear, then BatchNorm without affine parameters
            scale, shift = batchnorm.scale_shift(t, f"{e}.1", affine=False)
            weight = _weight(t, f"{e}.0.weight") * scale[:, None]
            bias = _weight(t, f"{e}.0.bias") * scale + shift
        out[f"decoder.emb{j}.weight"] = np.ascontiguousarray(weight, dtype=np.float32)
        out[f"decoder.emb{j}.bias"] = bias.astype(np.float32)
        j += 1
    if not j:
        raise ModelError("the decoder has no embedding layers (decoder.emb_layers.0)")
    return {"pool": pool, "emb_layers": j, "relu_between": pool == "xvector"}


def convert_tensors(t, config: dict[str, Any], source: str) -> tuple[dict, ModelConfig]:
    """Converted tensors and the ModelConfig of a NeMo speaker model (a tracked tensor dict
    and the resolved model_config.yaml)."""
    for name in list(t):
        if name.startswith(IGNORED) or name.endswith(".num_batches_tracked"):
            t.used.add(name)
    frontend = frontend_config(config.get("preprocessor") or {})
    encoder, decoder = config.get("encoder") or {}, config.get("decoder") or {}
    target = str(encoder.get("_target_", ""))
    out: dict[str, np.ndarray] = {}
    if target.endswith("ConvASREncoder"):
        network = _convasr(t, encoder, out)
    elif target.endswith("ECAPAEncoder"):
        network = _ecapa(t, encoder, out)
    else:
        raise ModelError(f"encoder {target or '(none)'} is not supported (ConvASREncoder, "
                         "ECAPAEncoder)")
    network.update(_decoder(t, decoder, out))
    masked = network["encoder"] == "convasr" and bool(encoder.get("conv_mask", True))
    pad_to = (config.get("preprocessor") or {}).get("pad_to", 16)
    if not masked and pad_to:  # NeMo's padding reaches unmasked convolutions: run padded too
        if not isinstance(pad_to, int) or pad_to < 0:
            raise ModelError(f"preprocessor pad_to={pad_to!r} is not supported (a number)")
        network["pad_to"] = pad_to
    last = f"decoder.emb{network['emb_layers'] - 1}"
    model = ModelConfig(
        model_type=NEMO_MODEL_TYPE, sample_rate=frontend.sample_rate,
        n_mels=frontend.num_mel_bins, embedding_dim=int(out[f"{last}.weight"].shape[0]),
        layers=(), channels=(), pooling_output_dim=int(out["decoder.emb0.weight"].shape[1]),
        frontend=frontend, network=network, model_id=source, license="")
    return out, model


def attribution(source: str) -> str:
    """The ATTRIBUTION.md text for weights converted from `source`."""
    return ATTRIBUTION.format(weights=WEIGHTS_FILE, source=source)
