"""The default calibration set of int8 models: eight LibriSpeech utterances shipped with the
package (`calibration_audio/`, CC-BY-4.0, see its README), run through the model's own front-end."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from audio_cli.frontend.audio import load_audio
from audio_cli.frontend.fbank import fbank
from audio_cli.frontend.folders import find_audio_files
from engines.errors import UsageError
from engines.model import FrontendConfig
from engines.quantize import Calibration, identity_of

CALIBRATION_DIR = Path(__file__).with_name("calibration_audio")


def calibration(frontend: FrontendConfig, folder: Path | None = None) -> Calibration:
    """The audio files of `folder` as calibration features of a model's front-end. The
    identity covers the files and the front-end, so each pair gets its own int8 model.
    Without `folder`: the shipped set, which yields to a set `audio quantize` recorded."""
    default, folder = folder is None, CALIBRATION_DIR if folder is None else folder
    files = [Path(p) for p in find_audio_files(folder)] if Path(folder).is_dir() else []
    if not files:
        raise UsageError(f"--calibration: {folder}: no audio files to calibrate with")

    def features() -> Iterator[np.ndarray]:
        for path in files:
            yield fbank(load_audio(path, frontend.sample_rate).samples, frontend)

    front = hashlib.sha256(repr(frontend).encode()).hexdigest()[:6]
    shipped = Path(folder).resolve() == CALIBRATION_DIR.resolve()
    where = "the shipped LibriSpeech set" if shipped else str(folder)
    description = f"{len(files)} recording{'s' if len(files) != 1 else ''} ({where})"
    return Calibration(f"{identity_of(files)}-{front}", features, default=default,
                       description=description)
