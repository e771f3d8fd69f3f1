"""The store takes only good vectors: finite, not all zero, of the model's dimension. Every
path that writes vectors (enroll, index, index --from, speakers import) asks `vector_problem`
first and refuses a bad row (the run then exits 3, the good rows still go in)."""

from __future__ import annotations

import numpy as np


def vector_problem(vector, dim: int) -> str | None:
    """None for a vector the store may hold, else what is wrong with it (a short phrase)."""
    try:
        values = np.asarray(vector, dtype=np.float32)
    except (TypeError, ValueError):
        return "not a vector of numbers"
    if values.shape != (dim,):
        size = values.size if values.ndim == 1 else "x".join(map(str, values.shape))
        return f"{size} values, not {dim}"
    if not np.isfinite(values).all():
        return "non-finite values (NaN or infinity)"
    if not values.any():
        return "a zero vector (no direction)"
    return None


def good_rows(vectors: np.ndarray) -> np.ndarray:
    """(rows, dim) -> a boolean mask of the rows that are finite and not all zero."""
    return np.isfinite(vectors).all(axis=1) & np.any(vectors != 0, axis=1)
