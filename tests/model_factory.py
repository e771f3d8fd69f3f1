"""Write small random-weight models in the hub layout for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.model import WEIGHTS_FILE, ModelConfig, save_safetensors

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
