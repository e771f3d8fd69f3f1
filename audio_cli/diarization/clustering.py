"""Group speaker embeddings into speakers: agglomerative (average linkage on cosine
similarity, stopped at a calibrated threshold), spectral (eigengap on a pruned cosine
affinity, then k-means) or `auto` (spectral given enough embeddings, else agglomerative),
all with an automatic number of clusters that `SpeakerCount` bounds, or an exact one.

Both are written with numpy only (the project does not depend on scipy or scikit-learn).
Labels are renumbered 0, 1, ... in order of first appearance, so the same grouping always
gives the same labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.errors import UsageError

METHODS = ("auto", "ahc", "spectral")
# `auto`: spectral clustering from this many embeddings on, agglomerative below. The
# eigengap needs enough points per speaker for the pruned affinity to show its blocks: on
# the 30 s AMI excerpts (10-30 embeddings) spectral gave DER 43 % against AHC's 31 %, on the
# 2-5 min simulated conversations (150-400) the exact speaker count in 10/10 against 5/10.
SPECTRAL_MIN_ITEMS = 60
# Average-linkage merges stop below this cosine similarity. Measured with CAM++
# (campplus-zh-en-common) on 4 LibriSpeech test-other readers: 1.5 s windows of one reader
# score 0.37 at the 5th percentile (3 s windows: 0.58), of two readers 0.25 at the 95th
# (3 s: 0.25); the last same-reader merge was at 0.40, the first cross-reader one at 0.16.
# On the AMI excerpts (VAD path) 0.25/0.30/0.35 gave DER 40.4/41.5/42.7 % (docs/diarize.md).
AHC_THRESHOLD = 0.3
# The segmentation path embeds a local speaker's speech in a 10 s chunk (2-10 s), which
# scores higher against the same speaker; on the AMI excerpts 0.30/0.45/0.60 gave DER
# 33.6/30.2/29.9 %.
AHC_THRESHOLD_LONG = 0.6
# Spectral: each row of the affinity keeps its strongest PRUNE_KEEP fraction (at least
# PRUNE_MIN entries), as the p-pruning of 3D-Speaker's spectral clustering does.
PRUNE_KEEP = 0.2
PRUNE_MIN = 6
# After the automatic count: clusters whose unit mean vectors are this similar are one
# speaker and are merged. Measured with CAM++ on the 10 simulated conversations and the 10
# AMI excerpts: different speakers' cluster means scored at most 0.44; the one speaker
# split in two (spectral's eigengap chose 4 for 3 readers) scored 0.86.
MERGE_SIMILARITY = 0.65
MIN_CLUSTER_SHARE = 0.05  # AHC: smaller clusters (in items) join the nearest larger one
# ... and from this many items on, so does a cluster of one: on two readers trading 2-3 s
# turns (pipeline.SAME_LOCAL_SPEAKER), 10-20 clustered points gave clusters of one of a
# reader's short pieces; the AMI excerpts and simulated conversations are unchanged.
LONE_FROM = 10
MAX_AUTOMATIC = 20  # spectral: eigengaps looked at for the automatic count
KMEANS_RESTARTS = 8
KMEANS_ITERATIONS = 100
SEED = 0  # k-means++ seeding: deterministic output


@dataclass(frozen=True)
class SpeakerCount:
    """How many speakers to find: exactly `exact`, or automatically within [low, high]."""

    exact: int | None = None
    low: int = 1
    high: int | None = None

    def __post_init__(self) -> None:
        if self.exact is not None and self.exact < 1:
            raise UsageError("--speakers must be at least 1")
        if self.low < 1:
            raise UsageError("--min-speakers must be at least 1")
        if self.high is not None and self.high < 1:
            raise UsageError("--max-speakers must be at least 1")
        if self.high is not None and self.high < self.low:
            raise UsageError(f"--min-speakers {self.low} is more than --max-speakers "
                             f"{self.high}")

    @classmethod
    def of(cls, speakers: int | None, low: int | None, high: int | None) -> SpeakerCount:
        """From the command line's --speakers/--min-speakers/--max-speakers; --speakers with
        either bound is contradictory (UsageError)."""
        if speakers is not None and (low is not None or high is not None):
            raise UsageError("--speakers gives the exact count; do not combine it with "
                             "--min-speakers or --max-speakers")
        return cls(speakers, 1 if low is None else low, high)

    def bounds(self, items: int) -> tuple[int, int]:
        """(fewest, most) clusters allowed for `items` embeddings (never more than items)."""
        if self.exact is not None:
            return min(self.exact, items), min(self.exact, items)
        high = items if self.high is None else min(self.high, items)
        return min(self.low, high), high


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float64)."""
    x = np.asarray(vectors, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def renumber(labels: np.ndarray) -> np.ndarray:
    """Labels 0, 1, ... in order of first appearance."""
    mapping: dict[int, int] = {}
    return np.array([mapping.setdefault(int(x), len(mapping)) for x in labels], dtype=np.int64)


def cluster(vectors: np.ndarray, count: SpeakerCount = SpeakerCount(), method: str = "auto",
            threshold: float = AHC_THRESHOLD) -> np.ndarray:
    """(N, dim) embeddings -> (N,) labels 0..K-1 (K within `count`)."""
    if method not in METHODS:
        raise UsageError(f"unknown clustering {method!r}; choose one of {', '.join(METHODS)}")
    x = normalise(vectors)
    if len(x) == 0:
        return np.zeros(0, dtype=np.int64)
    low, high = count.bounds(len(x))
    if len(x) == 1:
        return np.zeros(1, dtype=np.int64)
    if method == "auto":
        method = "spectral" if len(x) >= SPECTRAL_MIN_ITEMS else "ahc"
    if method == "ahc":
        labels = agglomerative(x, low, high, threshold)
    else:
        labels = spectral(x, low, high)
    if count.exact is None:
        labels = merge_similar(x, labels, low)
    return renumber(labels)


def merge_similar(x: np.ndarray, labels: np.ndarray, low: int) -> np.ndarray:
    """Merge the two clusters with the most similar unit mean vectors while that similarity
    reaches MERGE_SIMILARITY and more than `low` clusters remain."""
    labels = labels.copy()
    while True:
        names = np.unique(labels)
        if len(names) <= max(low, 1):
            return labels
        means = normalise(np.stack([x[labels == g].mean(axis=0) for g in names]))
        similarity = means @ means.T
        np.fill_diagonal(similarity, -np.inf)
        a, b = np.unravel_index(int(np.argmax(similarity)), similarity.shape)
        if similarity[a, b] < MERGE_SIMILARITY:
            return labels
        labels[labels == names[b]] = names[a]


# ---------------------------------------------------------------- agglomerative

def merge_sequence(x: np.ndarray) -> list[tuple[int, int, float]]:
    """Average-linkage merges of unit rows, best first: (kept, absorbed, similarity).

    The similarity matrix is updated with the Lance-Williams rule for average linkage
    (the size-weighted mean of the two rows); each row keeps its best partner, so a merge
    costs O(N) but for the rows whose partner was one of the pair.
    """
    n = len(x)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    size = np.ones(n)
    alive = np.ones(n, dtype=bool)
    best = sim.argmax(axis=1)
    merges = []
    for _ in range(n - 1):
        rows = np.flatnonzero(alive)
        values = sim[rows, best[rows]]
        a = int(rows[int(np.argmax(values))])
        b = int(best[a])
        merges.append((min(a, b), max(a, b), float(sim[a, b])))
        a, b = min(a, b), max(a, b)
        merged = (size[a] * sim[a] + size[b] * sim[b]) / (size[a] + size[b])
        size[a] += size[b]
        alive[b] = False
        merged[~alive] = -np.inf
        merged[a] = -np.inf
        sim[a], sim[:, a] = merged, merged
        sim[b], sim[:, b] = -np.inf, -np.inf
        if alive.sum() < 2:
            break
        best[a] = int(np.argmax(sim[a]))
        stale = np.flatnonzero(alive & ((best == a) | (best == b)))
        for row in stale:
            best[row] = int(np.argmax(sim[row]))
        better = alive & (sim[:, a] > sim[np.arange(n), best])
        best[better] = a
    return merges


def agglomerative(x: np.ndarray, low: int, high: int, threshold: float) -> np.ndarray:
    """Merge while the best pair's average similarity reaches `threshold`, then go on (or
    stop earlier) so that the count lies in [low, high]."""
    n = len(x)
    merges = merge_sequence(x)
    automatic = n - sum(1 for _, _, s in merges if s >= threshold)
    k = min(max(automatic, low), high)
    parent = np.arange(n)
    for kept, absorbed, _ in merges[:n - k]:
        parent[parent == absorbed] = kept
    return absorb_small(x, parent, low)


def absorb_small(x: np.ndarray, labels: np.ndarray, low: int) -> np.ndarray:
    """Move the members of clusters smaller than MIN_CLUSTER_SHARE of the items to the
    most similar larger cluster, as long as `low` clusters remain: a cluster of
    one or two embeddings is mostly a noisy or mixed piece of speech, not a new speaker
    (pyannote.audio's agglomerative clustering has a minimum cluster size for this)."""
    names, sizes = np.unique(labels, return_counts=True)
    smallest = int(np.ceil(MIN_CLUSTER_SHARE * len(x)))  # 1 (none absorbed) up to 20 items
    if len(x) >= LONE_FROM:
        smallest = max(smallest, 2)
    large = names[sizes >= smallest]
    if len(large) < max(low, 1) or len(large) == len(names):
        return labels
    centres = np.stack([normalise(x[labels == g]).mean(axis=0) for g in large])
    out = labels.copy()
    small = ~np.isin(labels, large)
    out[small] = large[np.argmax(x[small] @ centres.T, axis=1)]
    return out


# ---------------------------------------------------------------- spectral

def affinity(x: np.ndarray) -> np.ndarray:
    """Cosine affinity in [0, 1], each row pruned to its strongest entries, symmetrised."""
    n = len(x)
    a = np.clip(x @ x.T, 0.0, 1.0)
    keep = min(n, max(PRUNE_MIN, int(round(PRUNE_KEEP * n))))
    order = np.argsort(-a, axis=1)
    pruned = np.zeros_like(a)
    rows = np.arange(n)[:, None]
    pruned[rows, order[:, :keep]] = a[rows, order[:, :keep]]
    return 0.5 * (pruned + pruned.T)


def spectral(x: np.ndarray, low: int, high: int) -> np.ndarray:
    """Normalised-Laplacian spectral clustering: K from the largest eigengap within
    [low, high], then k-means on the rows of the first K eigenvectors."""
    a = affinity(x)
    np.fill_diagonal(a, 0.0)
    degree = np.maximum(a.sum(axis=1), 1e-10)
    scale = 1.0 / np.sqrt(degree)
    laplacian = np.eye(len(a)) - scale[:, None] * a * scale[None, :]
    values, vectors = np.linalg.eigh(laplacian)
    if low == high:
        k = low
    else:  # the automatic count (largest gap), then bounded, as for agglomerative
        most = min(len(values) - 1, max(high, MAX_AUTOMATIC))
        gaps = np.diff(values[:most + 1])  # gaps[i] = lambda_{i+1} - lambda_i: i+1 clusters
        k = min(max(1 + int(np.argmax(gaps)), low), high)
    embedded = normalise(vectors[:, :k])
    return kmeans(embedded, k)


def kmeans(x: np.ndarray, k: int) -> np.ndarray:
    """Lloyd's k-means with k-means++ seeding, best of KMEANS_RESTARTS (seeded)."""
    rng = np.random.default_rng(SEED)
    best_labels, best_cost = None, np.inf
    for _ in range(KMEANS_RESTARTS):
        centres = [x[rng.integers(len(x))]]
        for _ in range(1, k):
            d = np.min(((x[:, None, :] - np.array(centres)[None]) ** 2).sum(-1), axis=1)
            p = d / d.sum() if d.sum() > 0 else np.full(len(x), 1 / len(x))
            centres.append(x[rng.choice(len(x), p=p)])
        c = np.array(centres)
        labels = np.zeros(len(x), dtype=np.int64)
        for _ in range(KMEANS_ITERATIONS):
            d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
            new = d.argmin(axis=1)
            for j in range(k):
                members = x[new == j]
                c[j] = members.mean(axis=0) if len(members) else x[d[:, j].argmax()]
            if np.array_equal(new, labels):
                break
            labels = new
        cost = float(((x - c[labels]) ** 2).sum())
        if len(set(labels.tolist())) == k and cost < best_cost:
            best_labels, best_cost = labels, cost
    return best_labels if best_labels is not None else labels


def centroids(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(K, dim) unit mean vector of each label 0..K-1."""
    x = normalise(vectors)
    k = int(labels.max()) + 1 if len(labels) else 0
    return normalise(np.stack([x[labels == j].mean(axis=0) for j in range(k)])) \
        if k else np.zeros((0, x.shape[1]))
