"""3D-Speaker's own CAM++ (speakerlab-slim + torch) as a test-time reference, when installed.

The reference front-end is torchaudio's `compliance.kaldi.fbank`, which is plain torch code.
PyPI's torchaudio wheels carry a compiled extension built for one torch version; when it does
not load against the installed torch, the pure-python `compliance/kaldi.py` is loaded on its
own (it needs nothing else from torchaudio for fbank).
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

SAMPLE_RATE = 16000  # Hz
N_MELS = 80


def _kaldi_module():
    """torchaudio.compliance.kaldi, imported normally or loaded from its file."""
    try:
        import torchaudio.compliance.kaldi as kaldi

        return kaldi
    except (ImportError, OSError):
        pass
    spec = importlib.util.find_spec("torchaudio")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("torchaudio is not installed (pip install -e '.[reference]')")
    path = Path(next(iter(spec.submodule_search_locations))) / "compliance" / "kaldi.py"
    saved = sys.modules.get("torchaudio")
    sys.modules["torchaudio"] = types.ModuleType("torchaudio")  # kaldi.py only imports it
    try:
        kaldi_spec = importlib.util.spec_from_file_location("_reference_kaldi", path)
        module = importlib.util.module_from_spec(kaldi_spec)
        kaldi_spec.loader.exec_module(module)
    finally:
        if saved is None:
            sys.modules.pop("torchaudio", None)
        else:
            sys.modules["torchaudio"] = saved
    return module


class Reference:
    """3D-Speaker's CAMPPlus with the checkpoint loaded (strict) and its FBank(80, mean_nor)."""

    def __init__(self, checkpoint: Path):
        torch = pytest.importorskip("torch", reason="torch is not installed or does not "
                                    "load (pip install -e '.[reference]')", exc_type=ImportError)
        dtdnn = pytest.importorskip("speakerlab.models.campplus.DTDNN",
                                    reason="speakerlab-slim is not installed or does not load "
                                    "(pip install -e '.[reference]')", exc_type=ImportError)
        self.torch = torch
        torch.set_num_threads(1)  # far faster than torch's default on a busy, small machine
        self.kaldi = _kaldi_module()
        self.model = dtdnn.CAMPPlus(feat_dim=N_MELS, embedding_size=192)
        state = torch.load(str(checkpoint), map_location="cpu", weights_only=True)
        self.model.load_state_dict(state, strict=True)
        self.model.eval()

    def features(self, samples: np.ndarray) -> np.ndarray:
        """3D-Speaker's FBank: kaldi fbank defaults on [-1, 1] samples, then CMN."""
        wav = self.torch.from_numpy(np.asarray(samples, dtype=np.float32))[None]
        feat = self.kaldi.fbank(wav, num_mel_bins=N_MELS, sample_frequency=SAMPLE_RATE,
                                dither=0.0)
        return (feat - feat.mean(0, keepdim=True)).numpy()

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """(192,) raw (unnormalised) reference embedding of 16 kHz samples."""
        with self.torch.no_grad():
            feats = self.torch.from_numpy(self.features(samples))[None]
            return self.model(feats)[0].numpy()
