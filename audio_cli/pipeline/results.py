"""What embedding gives back: a vector with how it was made, a failed input, a window."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.errors import AudioCliError


@dataclass(frozen=True)
class EmbeddingResult:
    """One embedding and what produced it; the fields are the `--json` payload."""

    embedding: np.ndarray  # (dim,) float32, unit L2 norm
    file: str
    duration: float  # seconds of input audio
    sample_rate: int  # Hz of the input file
    model: str
    engine: str
    elapsed: float  # seconds for features + network
    speech: float | None = None  # seconds of speech embedded, with voice-activity detection

    @property
    def dimension(self) -> int:
        """Length of the vector."""
        return int(self.embedding.shape[0])


@dataclass(frozen=True)
class InputFailure:
    """An input of a many-input call that could not be embedded, and the error why."""

    file: str
    error: AudioCliError

    @property
    def message(self) -> str:
        """The one-line error message."""
        return str(self.error)


@dataclass(frozen=True)
class WindowEmbedding:
    """The embedding of one window of a recording, cut out and embedded on its own."""

    embedding: np.ndarray | None  # (dim,) float32, unit L2 norm; None: too little speech
    file: str
    start: float  # seconds from the start of the recording
    end: float  # seconds; end - start is the window length (the last may be shorter)
    speech: float | None = None  # seconds of speech in it, with voice-activity detection
