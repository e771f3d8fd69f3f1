"""Clustering in bounded time and memory for any number of embeddings: at most MAX_CLUSTERED
of them, spread evenly over the recording, are clustered (clustering.cluster, whose
spectral and agglomerative methods hold N x N matrices), and every other embedding takes
the label of the nearest centroid, so one hour or four are labelled by the same speakers.
"""

from __future__ import annotations

import numpy as np

from audio_cli.diarization.clustering import SpeakerCount, centroids, cluster, normalise

# Embeddings clustered at most. An hour of 8 people talking gives about 3000 pieces with
# enough clean speech (2 s chunk step); 1500 of them are still ~190 per speaker, more than
# the 2-5 min conversations' 150-400 in all, and the N x N matrices stay at 18 MB each.
MAX_CLUSTERED = 1500


def sample(count: int, most: int = MAX_CLUSTERED) -> np.ndarray:
    """Indices of at most `most` of `count` items, evenly spaced (in recording order)."""
    if count <= most:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, most).round().astype(np.int64))


def cluster_bounded(vectors: np.ndarray, count: SpeakerCount, method: str,
                    threshold: float, most: int = MAX_CLUSTERED) -> np.ndarray:
    """(N, dim) embeddings -> (N,) labels as `cluster` gives them, clustering at most `most`
    (evenly spaced) and giving the others their nearest centroid's label."""
    chosen = sample(len(vectors), most)
    found = cluster(vectors[chosen], count, method, threshold)
    if len(chosen) == len(vectors):
        return found
    similarity = normalise(vectors) @ centroids(vectors[chosen], found).T
    labels = np.argmax(similarity, axis=1)
    labels[chosen] = found
    return labels
