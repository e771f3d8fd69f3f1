"""Every vector a store holds for one model, with what is known of it (for `speakers map`):
enrolled exemplars with their speaker's name, indexed recordings with their path, and the
enrolled speaker each recording would be identified as (mean scoring, as `identify`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from audio_cli.pipeline.handle import ModelHandle
from audio_cli.store.db import Store, StoreError, unpack


@dataclass(frozen=True)
class StorePoints:
    """One model's vectors: exemplars (speaker name per row), then recordings (path per row)."""

    names: list[str]
    exemplars: np.ndarray  # (E, dim) float32
    paths: list[str]
    recordings: np.ndarray  # (R, dim) float32


def model_points(store: Store, identity: ModelHandle) -> StorePoints:
    """The exemplars and recordings of this model (StoreError if it has none of either)."""
    with store.read() as conn:
        model = store.find_model(conn, identity.digest)
        enrolled = [] if model is None else conn.execute(
            "SELECT s.name, e.vector FROM exemplars e JOIN speakers s ON s.id = e.speaker_id "
            "WHERE e.model_id = ? ORDER BY s.name, e.id", (model,)).fetchall()
        indexed = [] if model is None else conn.execute(
            "SELECT path, vector FROM recordings WHERE model_id = ? ORDER BY id",
            (model,)).fetchall()
    if not enrolled and not indexed:
        raise StoreError(f"{store.path}: no vectors of {identity.name} (weights "
                         f"{identity.digest}): enroll or index recordings with it first")

    def matrix(rows: list) -> np.ndarray:
        if not rows:
            return np.zeros((0, identity.dim), np.float32)
        return np.stack([unpack(blob, identity.dim) for _, blob in rows])

    return StorePoints([r[0] for r in enrolled], matrix(enrolled),
                       [r[0] for r in indexed], matrix(indexed))


def identified(points: StorePoints, threshold: float) -> list[str | None]:
    """For each recording, the enrolled speaker whose re-normalised mean exemplar scores
    highest with it, if that cosine reaches `threshold` (else None)."""
    if not points.names or not len(points.recordings):
        return [None] * len(points.recordings)
    speakers = sorted(set(points.names))
    names = np.asarray(points.names)
    centroids = np.stack([points.exemplars[names == s].astype(np.float64).mean(axis=0)
                          for s in speakers])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    queries = points.recordings.astype(np.float64)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    scores = queries @ centroids.T
    best = scores.argmax(axis=1)
    return [speakers[b] if scores[i, b] >= threshold else None for i, b in enumerate(best)]
