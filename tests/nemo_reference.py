"""NeMo's own speaker models as a test-time reference, run in NeMo's environment.

NeMo 3.0 (nemo-toolkit[asr]) would downgrade packages this project's .venv holds (packaging,
fsspec), so it lives in a virtual environment of its own (`.venv-nemo`, or the python named by
$AUDIO_NEMO_PYTHON). tests/test_nemo.py runs this file there once per session:

    python tests/nemo_reference.py OUT_DIR A.wav,B.wav,... [MODEL,MODEL,...]

For each model of MODELS it builds NeMo's EncDecSpeakerLabelModel from the config below with
random weights, sets its BatchNorm statistics by running it in training mode over the audio
(with its random initial weights alone, every embedding is nearly the same vector, whatever
the input), randomises the BatchNorm affines (so that folding them is tested), saves it as
OUT_DIR/<name>.nemo and writes OUT_DIR/<name>.npy: the embeddings NeMo computes for the audio
files (eval mode, its own preprocessor, dither 0), one row per file.
Only numpy, soundfile, torch and NeMo are imported here.
"""

from __future__ import annotations

import copy
import sys
import time
from pathlib import Path

SAMPLE_RATE = 16000


def _preprocessor(features: int, window_size: float) -> dict:
    """AudioToMelSpectrogramPreprocessor as NeMo's speaker configs set it."""
    return {"_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "normalize": "per_feature", "window_size": window_size,
            "sample_rate": SAMPLE_RATE, "window_stride": 0.01, "window": "hann",
            "features": features, "n_fft": 512, "frame_splicing": 1, "dither": 0.00001}


def _block(filters: int, repeat: int, kernel: int, residual: bool, se: bool) -> dict:
    block = {"filters": filters, "repeat": repeat, "kernel": [kernel], "stride": [1],
             "dilation": [1], "dropout": 0.1, "residual": residual, "separable": True}
    if se:
        block.update(se=True, se_context_size=-1)
    return block


def _convasr(feat_in: int, blocks: list[dict]) -> dict:
    return {"_target_": "nemo.collections.asr.modules.ConvASREncoder", "feat_in": feat_in,
            "activation": "relu", "conv_mask": True, "jasper": blocks}


def _decoder(feat_in: int, pool_mode: str, emb_sizes) -> dict:
    return {"_target_": "nemo.collections.asr.modules.SpeakerDecoder", "feat_in": feat_in,
            "num_classes": 7, "pool_mode": pool_mode, "emb_sizes": emb_sizes}


# NeMo's example configs (examples/speaker_tasks/recognition/conf): titanet-small.yaml,
# SpeakerNet_verification_3x2x512.yaml (M: one 256-dim layer; L: two 512-dim layers) and
# ecapa_tdnn.yaml; the class count is cut to 7 (the classifier is not part of the embedding).
def _speakernet(emb_sizes) -> dict:
    blocks = [_block(512, 1, 3, False, False)]
    blocks += [_block(512, 2, k, True, False) for k in (7, 11, 15)]
    blocks += [_block(1500, 1, 1, False, False)]
    return {"preprocessor": _preprocessor(64, 0.02), "encoder": _convasr(64, blocks),
            "decoder": _decoder(1500, "xvector", emb_sizes)}


def _titanet_small() -> dict:
    blocks = [_block(256, 1, 3, False, True)]
    blocks += [_block(256, 3, k, True, True) for k in (7, 11, 15)]
    blocks += [_block(1536, 1, 1, False, True)]
    return {"preprocessor": _preprocessor(80, 0.025), "encoder": _convasr(80, blocks),
            "decoder": _decoder(1536, "attention", 192)}


def _ecapa() -> dict:
    encoder = {"_target_": "nemo.collections.asr.modules.ECAPAEncoder", "feat_in": 80,
               "filters": [1024, 1024, 1024, 1024, 3072], "kernel_sizes": [5, 3, 3, 3, 1],
               "dilations": [1, 2, 3, 4, 1], "scale": 8}
    return {"preprocessor": _preprocessor(80, 0.025), "encoder": encoder,
            "decoder": _decoder(3072, "attention", 192)}


MODELS = {
    "titanet-s": _titanet_small,
    "speakernet-m": lambda: _speakernet(256),
    "speakernet-l": lambda: _speakernet([512, 512]),
    "ecapa": _ecapa,
}


def _full_config(model: dict) -> dict:
    config = copy.deepcopy(model)
    config.update(sample_rate=SAMPLE_RATE, train_ds=None, validation_ds=None, test_ds=None,
                  loss={"_target_": "nemo.collections.asr.losses.angularloss.AngularSoftmaxLoss",
                        "scale": 30, "margin": 0.2})
    return config


def _batchnorms(torch, model) -> list:
    return [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _calibrate(torch, model, signals, seed: int) -> None:
    """BatchNorm statistics from the signals (cumulative averages, training mode), then random
    BatchNorm affines (the default init makes them identities)."""
    for module in _batchnorms(torch, model):
        module.reset_running_stats()
        module.momentum = None
    # one batch of 3 s pieces (the decoder's BatchNorm sees one vector per clip: it needs more)
    piece = 3 * SAMPLE_RATE
    batch = torch.stack([s[i : i + piece] for s in signals
                         for i in range(0, len(s) - piece + 1, piece)])
    model.train()
    with torch.no_grad():
        model.forward(input_signal=batch, input_signal_length=torch.full((len(batch),), piece))
    generator = torch.Generator().manual_seed(seed)
    for module in _batchnorms(torch, model):
        module.momentum = 0.1
        if module.affine:
            n = module.num_features
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


def main(out_dir: Path, audio_files: list[str]) -> None:
    started = time.perf_counter()
    import numpy as np
    import soundfile as sf
    import torch
    from nemo.collections.asr.models import EncDecSpeakerLabelModel
    from omegaconf import OmegaConf

    torch.set_num_threads(2)
    print(f"nemo imported in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    signals = []
    for path in audio_files:
        samples, rate = sf.read(path, dtype="float32")
        if rate != SAMPLE_RATE or samples.ndim != 1:
            raise SystemExit(f"{path}: expected mono {SAMPLE_RATE} Hz")
        signals.append(torch.from_numpy(samples))
    names = sys.argv[3].split(",") if len(sys.argv) > 3 else list(MODELS)
    for seed, name in enumerate(names):
        torch.manual_seed(seed)
        model = EncDecSpeakerLabelModel(cfg=OmegaConf.create(_full_config(MODELS[name]())))
        _calibrate(torch, model, signals, seed)
        model = model.eval()
        model.preprocessor.featurizer.dither = 0.0
        model.save_to(str(out_dir / f"{name}.nemo"))
        rows = []
        with torch.inference_mode():
            for signal in signals:
                _, emb = model.forward(input_signal=signal[None],
                                       input_signal_length=torch.tensor([len(signal)]))
                rows.append(emb[0].double().numpy())
        np.save(out_dir / f"{name}.npy", np.stack(rows))
        print(f"{name}: done at {time.perf_counter() - started:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2].split(",") if len(sys.argv) > 2 else [])
