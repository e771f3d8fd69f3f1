"""Unit vectors to 2-D points that keep neighbours near: t-SNE on a bounded set of landmarks,
every other vector placed among its nearest landmarks (numpy only).

- t-SNE (van der Maaten and Hinton, "Visualizing Data using t-SNE", JMLR 2008): Gaussian
  neighbour probabilities at a fixed perplexity over each point's 3 * perplexity nearest
  (as in van der Maaten, JMLR 2014), Student-t similarities in 2-D, gradient descent with
  momentum and early exaggeration (12 for the first 125 of 500 steps), a learning rate of
  n / 12 (Belkina et al., Nature Communications 2019) and a PCA start (Kobak and Linderman,
  Nature Biotechnology 2021), so the same vectors give the same picture.
- The exact t-SNE costs n^2 per step, so it runs on at most LANDMARKS vectors (the first
  `preferred` ones, then farthest-point sampling from a random pool of the others, fixed
  seed: each group of voices gets landmarks). Each other vector
  goes to the mean position of its K nearest landmarks (cosine), weighted by each landmark's
  own Gaussian kernel from the perplexity search: its time grows linearly with n.
"""

from __future__ import annotations

import numpy as np

from audio_cli.pipeline.batching import one_blas_thread

LANDMARKS = 1000
PERPLEXITY = 30.0  # from 750 points on; fewer points, n / 25 (at least 5): a speaker's dozen
SMALL_PERPLEXITY = 5.0  # recordings among a hundred stay one group instead of a ring
K = 3  # nearest landmarks; on 20,000 vectors of 200 speakers with 200 random landmarks, the
# share whose nearest map point is of the same speaker was 36 % with 10, 59 % with 3, 55 %
# with 1 (points sharing a landmark coincide); with farthest-point landmarks, 99.9 % with 3
STEPS, EARLY_STEPS, EXAGGERATION = 500, 125, 12.0
SEED = 0
POOL = 5  # landmarks are picked from a random pool of POOL * LANDMARKS vectors
CHUNK = 8192  # rows of vectors against the landmarks at a time


def unit(vectors: np.ndarray) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _betas(distances: np.ndarray, perplexity: float) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise Gaussian neighbour probabilities over each row's 3 * perplexity nearest
    others (the rest get 0: van der Maaten, "Accelerating t-SNE using Tree-Based
    Algorithms", JMLR 2014), each row's precision found by bisection on log beta so that
    its distribution has the wanted perplexity; (dense P rows, betas)."""
    n = distances.shape[0]
    k = max(1, min(n - 1, int(3 * perplexity)))
    d = distances.copy()
    np.fill_diagonal(d, np.inf)
    near = np.argpartition(d, k - 1, axis=1)[:, :k]
    d = np.take_along_axis(d, near, axis=1)
    d -= d.min(axis=1, keepdims=True)  # scale-free exponents, same P
    target = np.log(perplexity)
    lo, hi = np.full(n, -20.0), np.full(n, 20.0)  # log beta
    for _ in range(50):
        mid = (lo + hi) / 2
        beta = np.exp(mid)[:, None]
        p = np.exp(-d * beta)
        total = p.sum(axis=1, keepdims=True)
        p /= total
        entropy = np.log(total[:, 0]) + beta[:, 0] * (p * d).sum(axis=1)
        high = entropy > target  # too flat: sharpen (raise beta)
        lo = np.where(high, mid, lo)
        hi = np.where(high, hi, mid)
    dense = np.zeros((n, n))
    np.put_along_axis(dense, near, p, axis=1)
    return dense, np.exp((lo + hi) / 2)


def tsne(x: np.ndarray, perplexity: float = PERPLEXITY) -> tuple[np.ndarray, np.ndarray]:
    """Exact t-SNE of unit rows `x` (n, d); (positions (n, 2), each row's Gaussian beta)."""
    n = x.shape[0]
    if n < 3:
        return np.column_stack([np.arange(n, dtype=np.float64), np.zeros(n)]), np.ones(n)
    distances = np.maximum(2.0 - 2.0 * (x @ x.T), 0.0)  # squared, for unit rows
    p, betas = _betas(distances, min(perplexity, max(SMALL_PERPLEXITY, n / 25), (n - 1) / 3))
    p = ((p + p.T) / (2 * n)).astype(np.float32)  # float32 steps: half the time of float64
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    y = centred @ vt[:2].T
    y = (y / max(y[:, 0].std(), 1e-12) * 1e-4).astype(np.float32)
    rate = max(n / EXAGGERATION, 50.0)
    step = np.zeros_like(y)
    exaggerated = p * np.float32(EXAGGERATION)
    for i in range(STEPS):
        early = i < EARLY_STEPS
        # Student-t kernel w = 1 / (1 + |yi - yj|^2), in place: two (n, n) arrays a step
        sq = (y * y).sum(axis=1)
        w = y @ y.T
        w *= -2.0
        w += sq[:, None]
        w += sq[None, :]
        np.maximum(w, 0.0, out=w)
        w += 1.0
        np.reciprocal(w, out=w)
        np.fill_diagonal(w, 0.0)
        m = w * np.float32(-1.0 / w.sum())  # -q
        m += exaggerated if early else p
        m *= w
        gradient = 4.0 * (m.sum(axis=1)[:, None] * y - m @ y)
        step = (0.5 if early else 0.8) * step - rate * gradient
        y = y + step
        y -= y.mean(axis=0)
    return y.astype(np.float64), betas


def project(vectors: np.ndarray, preferred: int = 0) -> np.ndarray:
    """(n, 2) positions of (n, d) vectors (compared by cosine). The first `preferred` rows
    (enrolled exemplars, say) are landmarks before any other. numpy's BLAS runs on one
    thread: the products here are thin (n x 2), and on 2 busy cores one thread took 10 s
    for 50 steps of 1000 landmarks where the default threads took 24 s."""
    with one_blas_thread():
        return _project(unit(vectors), preferred)


def landmarks(x: np.ndarray, preferred: int) -> np.ndarray:
    """LANDMARKS row indices (ascending): the first `preferred` rows, then, from a random pool
    of POOL * LANDMARKS others (fixed seed), the one least similar to every landmark so far,
    again and again (farthest-point sampling), so that every group of voices gets landmarks
    of its own; a random draw left a third of the speakers without one."""
    n = x.shape[0]
    first = np.arange(min(preferred, LANDMARKS))
    rest = np.arange(len(first), n)
    rng = np.random.default_rng(SEED)
    pool = np.sort(rng.choice(rest, min(len(rest), POOL * LANDMARKS), replace=False))
    candidates = x[pool].astype(np.float32)
    if len(first):
        nearest = (candidates @ x[first].T.astype(np.float32)).max(axis=1)
        picked: list[int] = []
    else:  # start from the pool's first row
        nearest = candidates @ candidates[0]
        nearest[0] = np.inf
        picked = [0]
    while len(first) + len(picked) < LANDMARKS:
        best = int(np.argmin(nearest))
        picked.append(best)
        np.maximum(nearest, candidates @ candidates[best], out=nearest)
        nearest[best] = np.inf  # never picked twice, even among identical vectors
    return np.sort(np.concatenate([first, pool[picked]]))


def _project(x: np.ndarray, preferred: int) -> np.ndarray:
    n = x.shape[0]
    if n <= LANDMARKS:
        return tsne(x)[0]
    chosen = landmarks(x, preferred)
    anchors, betas = tsne(x[chosen])
    positions = np.empty((n, 2))
    positions[chosen] = anchors
    others = np.setdiff1d(np.arange(n), chosen)
    for lo in range(0, len(others), CHUNK):
        rows = others[lo:lo + CHUNK]
        distances = np.maximum(2.0 - 2.0 * (x[rows] @ x[chosen].T), 0.0)
        near = np.argpartition(distances, K, axis=1)[:, :K]
        d = np.take_along_axis(distances, near, axis=1)
        weights = np.exp(-(d - d.min(axis=1, keepdims=True)) * betas[near])
        weights /= weights.sum(axis=1, keepdims=True)
        positions[rows] = np.einsum("rk,rkc->rc", weights, anchors[near])
    return positions
