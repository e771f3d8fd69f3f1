"""The benchmark's own inputs: a random-weight WeSpeaker ResNet directory and voice-like audio.

Nothing here comes from `tests/`: the benchmark writes its model and its audio itself, so it
runs from an installed checkout without the test helpers on the path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
MEL_BINS = 80


# ---------------------------------------------------------------------------------------------
# A random-weight model in the hub layout (config.json + model.safetensors).


def _resnet_shapes(config) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of a WeSpeaker ResNet with BatchNorm fused into the convs.

    Convolution kernels are [out, kH, kW, in] (the layout `engines.graph.Conv2d` documents);
    the first block of every stage after the first halves frequency and time and so carries a
    1x1 shortcut conv, as does any block whose channel count changes.
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, kernel: int) -> None:
        shapes[f"{name}.weight"] = (cout, kernel, kernel, cin)
        shapes[f"{name}.bias"] = (cout,)

    width = config.channels[0]
    conv("conv1", 1, width, 3)
    freq = config.n_mels
    for stage, (blocks, channels) in enumerate(zip(config.layers, config.channels, strict=True),
                                               start=1):
        strided = stage > 1
        if strided:
            freq = -(-freq // 2)
        for block in range(blocks):
            cin = width if block == 0 else channels
            conv(f"layer{stage}.{block}.conv1", cin, channels, 3)
            conv(f"layer{stage}.{block}.conv2", channels, channels, 3)
            if block == 0 and (strided or cin != channels):
                conv(f"layer{stage}.{block}.shortcut", cin, channels, 1)
        width = channels
    pooled = 2 * width * freq
    shapes["embedding.weight"] = (config.embedding_dim, pooled)
    shapes["embedding.bias"] = (config.embedding_dim,)
    return shapes


def random_weights(config, seed: int = 1234) -> dict[str, np.ndarray]:
    """Variance-preserving random tensors (so activations neither vanish nor explode)."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name, shape in _resnet_shapes(config).items():
        if name.endswith(".bias"):
            values = rng.normal(0.0, 0.05, shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            values = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        tensors[name] = values.astype(np.float32)
    return tensors


def quick_config():
    """A narrow, shallow ResNet with the real topology: every code path, a fraction of the work."""
    from engines.model import ModelConfig

    channels = (8, 16, 32, 64)
    freq = MEL_BINS // 8  # halved by stages 2, 3 and 4: 80 -> 10
    return ModelConfig(layers=(1, 1, 1, 1), channels=channels, embedding_dim=64,
                       pooling_output_dim=2 * channels[-1] * freq, model_id="bench/quick-random")


def write_model(directory: Path, quick: bool = False) -> tuple[Path, str]:
    """Write a random-weight model directory; (directory, one-line description)."""
    from engines.model import WEIGHTS_FILE, ModelConfig, save_safetensors

    config = quick_config() if quick else ModelConfig(model_id="bench/full-random")
    directory.mkdir(parents=True, exist_ok=True)
    config.save(directory)
    save_safetensors(directory / WEIGHTS_FILE, random_weights(config))
    size = "QUICK: small ResNet" if quick else "full-size WeSpeaker ResNet34"
    return directory, (f"{size} (layers {list(config.layers)}, channels "
                       f"{list(config.channels)}), random weights written by bench/synthetic.py")


# ---------------------------------------------------------------------------------------------
# Voice-like audio.


def voice(seconds: float, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A float32 voice-like signal in [-0.5, 0.5]: a glottal pulse train (vibrato and jitter on
    a drifting pitch) through three vowel formants, syllable-rate loudness and a little noise."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    pitch = 120.0 + 25.0 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6.3))
    pitch *= 1.0 + 0.02 * np.sin(2 * np.pi * 5.0 * t) + 0.005 * rng.standard_normal(n)
    phase = np.cumsum(pitch) / sample_rate
    source = np.diff(np.floor(phase), prepend=0.0)  # one impulse per pitch period
    spectrum = np.fft.rfft(source)
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    shape = np.zeros_like(freqs)
    for centre, width, gain in ((700.0, 130.0, 1.0), (1200.0, 180.0, 0.6), (2600.0, 300.0, 0.3)):
        shape += gain / (1.0 + ((freqs - centre) / width) ** 2)
    signal = np.fft.irfft(spectrum * (shape + 0.02), n)
    syllables = 0.25 + 0.75 * np.clip(np.sin(2 * np.pi * 3.0 * t), 0.0, None) ** 0.5
    signal = signal * syllables + 0.003 * rng.standard_normal(n) * signal.std()
    return (0.5 * signal / (np.abs(signal).max() or 1.0)).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Path:
    """16-bit PCM WAV."""
    import soundfile

    soundfile.write(str(path), samples, sample_rate, subtype="PCM_16")
    return path


def write_long_wav(path: Path, seconds: int, block_seconds: int = 10) -> Path:
    """A long WAV written block by block (each block a different voice seed, so the file never
    holds more than one block in memory)."""
    import soundfile

    with soundfile.SoundFile(str(path), "w", SAMPLE_RATE, 1, "PCM_16") as out:
        for i in range(-(-seconds // block_seconds)):
            length = min(block_seconds, seconds - i * block_seconds)
            out.write(voice(length, seed=i % 16))
    return path


def features(frames: int, seed: int = 0) -> np.ndarray:
    """(1, frames, 80) float32 standard-normal features (what CMN'd fbanks look like)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((1, frames, MEL_BINS)).astype(np.float32)
