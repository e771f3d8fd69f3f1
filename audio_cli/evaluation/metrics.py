"""Speaker-verification metrics: trial scores from embeddings, EER and minDCF (pure numpy).

Conventions (also in docs/cli.md):

- A trial is accepted when its score is >= the threshold. The operating points are the
  thresholds at every distinct score, plus +inf (reject everything); at each one
  P_miss = fraction of target scores below it, P_fa = fraction of non-target scores at or
  above it. Tied scores therefore move together, and results do not depend on trial order.
- EER: the ROC is the polyline through those points, in threshold order. The segment
  between two neighbouring points is what accepting the trials tied at the lower threshold
  with some probability gives, so interpolating linearly along it is exact for that
  randomised decision. The EER is where the polyline crosses P_miss = P_fa, and its
  threshold is the lower threshold of that segment (the score whose trials are split), or
  the operating point itself when P_miss = P_fa there exactly.
- minDCF: min over the operating points of
  (C_miss * P_miss * p_target + C_fa * P_fa * (1 - p_target)) / min(C_miss * p_target,
  C_fa * (1 - p_target)); its threshold is the lowest one reaching the minimum, +inf when
  only rejecting everything does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_P_TARGET = 0.01


@dataclass(frozen=True)
class Trials:
    """Scores of same-speaker (target) and different-speaker (non-target) trials."""

    target: np.ndarray  # (Nt,) float64 cosine scores
    nontarget: np.ndarray  # (Nn,) float64 cosine scores


@dataclass(frozen=True)
class Metrics:
    """What `audio eval` reports about a set of trials (rates are fractions in [0, 1])."""

    target_trials: int
    nontarget_trials: int
    eer: float
    eer_threshold: float
    min_dcf: float
    min_dcf_threshold: float  # +inf when rejecting every trial is the best operating point
    p_target: float
    mean_target: float
    mean_nontarget: float


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """(N, D) -> float64 rows scaled to unit length; zero or non-finite rows are an error."""
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, D), got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.isfinite(x).all() or np.any(norms == 0):
        raise ValueError("embeddings must be finite and non-zero")
    return x / norms


def trial_scores(embeddings: np.ndarray, labels: np.ndarray | list,
                 impostors: np.ndarray | None = None) -> Trials:
    """Cosine scores of every unordered pair of (N, D) `embeddings`, split by `labels` (N,).

    Pairs with equal labels are target trials, the others non-target. `impostors` (M, D),
    if given, adds every embedding-vs-impostor pair (N * M) as non-target trials.
    """
    x = _unit_rows(embeddings)
    labels = np.asarray(labels)
    if labels.shape != (x.shape[0],):
        raise ValueError(f"need one label per embedding ({x.shape[0]}), got {labels.shape}")
    rows, cols = np.triu_indices(x.shape[0], k=1)
    scores = (x @ x.T)[rows, cols]
    same = labels[rows] == labels[cols]
    nontarget = scores[~same]
    if impostors is not None:
        y = _unit_rows(impostors)
        if y.shape[1] != x.shape[1]:
            raise ValueError(f"impostor dimension {y.shape[1]} != embedding dimension "
                             f"{x.shape[1]}")
        nontarget = np.concatenate([nontarget, (x @ y.T).ravel()])
    return Trials(scores[same], nontarget)


def _checked(scores: np.ndarray, kind: str) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).ravel()
    if s.size == 0:
        raise ValueError(f"no {kind} scores")
    if not np.isfinite(s).all():
        raise ValueError(f"{kind} scores must be finite")
    return s


def operating_points(target: np.ndarray, nontarget: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, miss counts, false-alarm counts) at every distinct score and at +inf."""
    target = np.sort(_checked(target, "target"))
    nontarget = np.sort(_checked(nontarget, "non-target"))
    thresholds = np.append(np.unique(np.concatenate([target, nontarget])), np.inf)
    misses = np.searchsorted(target, thresholds, side="left")
    false_alarms = nontarget.size - np.searchsorted(nontarget, thresholds, side="left")
    return thresholds, misses, false_alarms


def equal_error_rate(target: np.ndarray, nontarget: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) by linear interpolation along the ROC (see the module docstring)."""
    thresholds, misses, false_alarms = operating_points(target, nontarget)
    n_t, n_n = len(np.asarray(target).ravel()), len(np.asarray(nontarget).ravel())
    # Sign of P_miss - P_fa in exact integers: misses/n_t - fa/n_n  ~  misses*n_n - fa*n_t.
    diff = misses.astype(np.int64) * n_n - false_alarms.astype(np.int64) * n_t
    i = int(np.argmax(diff >= 0))  # first point at or past the crossing (diff[-1] > 0)
    p_miss = misses / n_t
    if diff[i] == 0:
        return float(p_miss[i]), float(thresholds[i])
    k = i - 1  # diff[k] < 0 < diff[i]; i >= 1 because diff[0] = -n_n * n_t < 0
    alpha = -diff[k] / (diff[i] - diff[k])
    eer = p_miss[k] + alpha * (p_miss[i] - p_miss[k])
    return float(eer), float(thresholds[k])


def calibration_threshold(target: np.ndarray, nontarget: np.ndarray) -> tuple[float, float]:
    """(decision threshold, EER) for `audio calibrate`: the EER's threshold moved down to the
    middle of the gap below it (halfway to the next lower score), so a new trial scoring just
    under the lowest accepted score is not rejected by a threshold sitting on that score."""
    eer, at = equal_error_rate(target, nontarget)
    scores = np.concatenate([_checked(target, "target"), _checked(nontarget, "non-target")])
    below = scores[scores < at]
    return (float((at + below.max()) / 2) if below.size else at), eer


def min_dcf(target: np.ndarray, nontarget: np.ndarray, p_target: float = DEFAULT_P_TARGET,
            c_miss: float = 1.0, c_fa: float = 1.0) -> tuple[float, float]:
    """(normalised minimum detection cost, its threshold) over the operating points."""
    if not 0 < p_target < 1 or c_miss <= 0 or c_fa <= 0:
        raise ValueError("need 0 < p_target < 1 and positive costs")
    thresholds, misses, false_alarms = operating_points(target, nontarget)
    p_miss = misses / len(np.asarray(target).ravel())
    p_fa = false_alarms / len(np.asarray(nontarget).ravel())
    cost = c_miss * p_target * p_miss + c_fa * (1 - p_target) * p_fa
    cost /= min(c_miss * p_target, c_fa * (1 - p_target))
    best = int(np.argmin(cost))
    return float(cost[best]), float(thresholds[best])


def evaluate(trials: Trials, p_target: float = DEFAULT_P_TARGET) -> Metrics:
    """EER, minDCF (C_miss = C_fa = 1) and mean scores of a set of trials."""
    eer, eer_threshold = equal_error_rate(trials.target, trials.nontarget)
    dcf, dcf_threshold = min_dcf(trials.target, trials.nontarget, p_target)
    return Metrics(
        target_trials=int(trials.target.size), nontarget_trials=int(trials.nontarget.size),
        eer=eer, eer_threshold=eer_threshold, min_dcf=dcf, min_dcf_threshold=dcf_threshold,
        p_target=p_target, mean_target=float(np.mean(trials.target)),
        mean_nontarget=float(np.mean(trials.nontarget)),
    )


def trial_counts(labels: list | np.ndarray, impostors: int = 0) -> tuple[int, int]:
    """(target, non-target) trial counts `trial_scores` gives for these labels."""
    _, sizes = np.unique(np.asarray(labels), return_counts=True)
    n = int(sizes.sum())
    target = int(np.sum(sizes * (sizes - 1) // 2))
    return target, n * (n - 1) // 2 - target + n * impostors
