"""Write small random-weight models in the hub layout for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.model import CAMPPLUS_MODEL_TYPE, WEIGHTS_FILE, ModelConfig, save_safetensors

FREQ_AFTER_LAYER4 = 10  # 80 mel bins halved three times


def random_resnet_weights(config: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """He-initialised conv weights [O, kH, kW, I], small biases, for any layers/channels."""
    rng = np.random.default_rng(seed)

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        std = np.sqrt(2.0 / (cin * k * k))
        weights[f"{name}.weight"] = (rng.standard_normal((cout, k, k, cin)) * std).astype("f4")
        weights[f"{name}.bias"] = (rng.standard_normal(cout) * 0.1).astype("f4")

    weights: dict[str, np.ndarray] = {}
    conv("conv1", 1, config.channels[0], 3)
    cin = config.channels[0]
    for li, (blocks, cout) in enumerate(zip(config.layers, config.channels, strict=True), start=1):
        for bi in range(blocks):
            conv(f"layer{li}.{bi}.conv1", cin if bi == 0 else cout, cout, 3)
            conv(f"layer{li}.{bi}.conv2", cout, cout, 3)
            if bi == 0 and (li > 1 or cin != cout):
                conv(f"layer{li}.{bi}.shortcut", cin, cout, 1)
        cin = cout
    pooled = 2 * cin * FREQ_AFTER_LAYER4
    weights["embedding.weight"] = (
        rng.standard_normal((config.embedding_dim, pooled)) / np.sqrt(pooled)
    ).astype("f4")
    weights["embedding.bias"] = (rng.standard_normal(config.embedding_dim) * 0.01).astype("f4")
    return weights


def small_config(**overrides) -> ModelConfig:
    """A ResNet with the real topology rule but few channels and blocks (fast on CPU)."""
    values = dict(layers=(1, 2, 1, 1), channels=(4, 8, 8, 16), embedding_dim=32,
                  pooling_output_dim=2 * 16 * FREQ_AFTER_LAYER4, model_id="test/small-random")
    values.update(overrides)
    return ModelConfig(**values)


def write_model(directory: Path, config: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """Create a model directory with config.json and model.safetensors; return the weights."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = random_resnet_weights(config, seed)
    config.save(directory)
    save_safetensors(directory / WEIGHTS_FILE, weights)
    return weights


CAMPPLUS_BOTTLENECK = 4  # 3D-Speaker's bn_size: a dense layer's 1x1 conv gives 4 x growth channels


def random_campplus_weights(config: ModelConfig, seed: int = 0) -> dict[str, np.ndarray]:
    """He-initialised CAM++ weights under the converted names (engines/campplus.py), for any
    `layers` and `channels` = (FCM channels, TDNN channels, growth rate)."""
    rng = np.random.default_rng(seed)
    fcm, tdnn, growth = config.channels
    bottleneck = CAMPPLUS_BOTTLENECK * growth
    weights: dict[str, np.ndarray] = {}

    def conv(name: str, shape: tuple[int, ...], bias: bool = True) -> None:
        fan_in = int(np.prod(shape[1:]))
        weights[f"{name}.weight"] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
                                     ).astype("f4")
        if bias:
            weights[f"{name}.bias"] = (rng.standard_normal(shape[0]) * 0.1).astype("f4")

    def affine(name: str, channels: int) -> None:
        weights[f"{name}.weight"] = rng.uniform(0.5, 1.5, channels).astype("f4")
        weights[f"{name}.bias"] = (rng.standard_normal(channels) * 0.1).astype("f4")

    conv("head.conv1", (fcm, 3, 3, 1))
    for layer in (1, 2):
        for block in (0, 1):
            prefix = f"head.layer{layer}.{block}"
            conv(f"{prefix}.conv1", (fcm, 3, 3, fcm))
            conv(f"{prefix}.conv2", (fcm, 3, 3, fcm))
            if block == 0:
                conv(f"{prefix}.shortcut", (fcm, 1, 1, fcm))
    conv("head.conv2", (fcm, 3, 3, fcm))
    conv("xvector.tdnn", (tdnn, 5, fcm * config.n_mels // 8))
    channels = tdnn
    for index, layers in enumerate(config.layers, start=1):
        for layer in range(1, layers + 1):
            prefix = f"xvector.block{index}.tdnnd{layer}"
            affine(f"{prefix}.nonlinear1", channels)
            conv(f"{prefix}.linear1", (bottleneck, 1, channels))
            conv(f"{prefix}.cam_layer.linear_local", (growth, 3, bottleneck), bias=False)
            conv(f"{prefix}.cam_layer.linear1", (bottleneck // 2, 1, bottleneck))
            conv(f"{prefix}.cam_layer.linear2", (growth, 1, bottleneck // 2))
            channels += growth
        affine(f"xvector.transit{index}.nonlinear", channels)
        conv(f"xvector.transit{index}.linear", (channels // 2, 1, channels), bias=False)
        channels //= 2
    affine("xvector.out_nonlinear", channels)
    weights["embedding.weight"] = (rng.standard_normal((config.embedding_dim, 2 * channels))
                                   / np.sqrt(2 * channels)).astype("f4")
    weights["embedding.bias"] = (rng.standard_normal(config.embedding_dim) * 0.01).astype("f4")
    return weights


def small_campplus_config(**overrides) -> ModelConfig:
    """A CAM++ with the real topology but few layers and channels (fast on CPU).

    Channels: TDNN 16; block 1: 16 + 8 -> transit 12; block 2: 12 + 2 * 8 -> 14; block 3:
    14 + 8 -> 11, pooled to 2 x 11.
    """
    values = dict(model_type=CAMPPLUS_MODEL_TYPE, layers=(1, 2, 1), channels=(4, 16, 8),
                  embedding_dim=16, pooling_output_dim=2 * 11, model_id="test/campplus-random")
    values.update(overrides)
    return ModelConfig(**values)


def write_campplus_model(directory: Path, config: ModelConfig,
                         seed: int = 0) -> dict[str, np.ndarray]:
    """A CAM++ model directory (config.json + model.safetensors); return the weights."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = random_campplus_weights(config, seed)
    config.save(directory)
    save_safetensors(directory / WEIGHTS_FILE, weights)
    return weights
