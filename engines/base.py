"""The one small interface every inference engine implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Engine(Protocol):
    """Runs a speaker network on batches of features."""

    name: str

    def embed(self, features: np.ndarray) -> np.ndarray:
        """(B, T, n_mels) float32 features after CMN -> (B, dim) float32 L2-normalised vectors."""
        ...
