"""EER, minDCF and trial scores (audio_cli.evaluation) on small score sets worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from audio_cli.evaluation.metrics import (
    Trials,
    equal_error_rate,
    evaluate,
    min_dcf,
    trial_counts,
    trial_scores,
)

# (target, non-target, EER, EER threshold, minDCF at p=0.01, its threshold); derivations in
# the comments use P_miss = #(target < t)/Nt and P_fa = #(non-target >= t)/Nn.
HAND_CASES = {
    # t = 0.8 accepts both targets and no non-target; minDCF 0 there too.
    "perfect separation": ([0.8, 0.9], [0.1, 0.2, 0.3], 0.0, 0.8, 0.0, 0.8),
    # Every target below every non-target: at t = 0.9 P_miss = P_fa = 1. Rejecting all costs
    # p*1/0.01 = 1, less than any finite threshold (t = 0.9: (0.01 + 0.99)/0.01 = 100).
    "reversed": ([0.1], [0.9], 1.0, 0.9, 1.0, math.inf),
    # t = 0.6: one miss (0.4) of 4, one false alarm (0.7) of 4 -> exact crossing at 0.25.
    # minDCF: P_miss + 99 P_fa is smallest at t = 0.8 (2/4 + 0).
    "exact crossing": ([0.4, 0.6, 0.8, 0.9], [0.1, 0.2, 0.5, 0.7], 0.25, 0.6, 0.5, 0.8),
    # t = 0.4: P_miss 1/3, P_fa 2/4 (d = -1/6); t = 0.5: 1/3, 1/4 (d = +1/12). Along the
    # segment alpha = (1/6)/(1/4) = 2/3: P_miss stays 1/3, P_fa = 1/2 - 2/3 * 1/4 = 1/3.
    # minDCF: t = 0.6 gives 1/3 + 0.
    "interpolated": ([0.3, 0.6, 0.9], [0.1, 0.2, 0.4, 0.5], 1 / 3, 0.4, 1 / 3, 0.6),
    # Ties at 0.5 (two targets, one non-target) move together: t = 0.5: (0, 1/2), d = -1/2;
    # t = 0.9: (2/3, 0), d = +2/3; alpha = 3/7, EER = 3/7 * 2/3 = 2/7 = 1/2 - 3/7 * 1/2.
    # minDCF: t = 0.9 gives 2/3, below rejecting all (1).
    "ties": ([0.5, 0.5, 0.9], [0.1, 0.5], 2 / 7, 0.5, 2 / 3, 0.9),
    # All scores equal: accept all (0, 1) or reject all (1, 0); halfway is 0.5.
    "all tied": ([0.5, 0.5], [0.5, 0.5], 0.5, 0.5, 1.0, math.inf),
}


@pytest.mark.parametrize("case", HAND_CASES, ids=list(HAND_CASES))
def test_eer_and_min_dcf_match_hand_computation(case):
    target, nontarget, eer, eer_t, dcf, dcf_t = HAND_CASES[case]
    assert equal_error_rate(target, nontarget) == pytest.approx((eer, eer_t), abs=1e-12)
    assert min_dcf(target, nontarget) == pytest.approx((dcf, dcf_t), abs=1e-12)


def test_min_dcf_with_even_prior_is_the_best_total_error():
    # p_target 0.5 normalises to P_miss + P_fa; for "interpolated" the best is t = 0.6 (1/3).
    assert min_dcf([0.3, 0.6, 0.9], [0.1, 0.2, 0.4, 0.5], p_target=0.5) == pytest.approx(
        (1 / 3, 0.6))


def test_results_do_not_depend_on_the_order_of_tied_trials():
    rng = np.random.default_rng(1)
    target = np.round(rng.normal(0.6, 0.2, 200), 1)  # coarse scores: many ties
    nontarget = np.round(rng.normal(0.2, 0.2, 300), 1)
    first = (equal_error_rate(target, nontarget), min_dcf(target, nontarget))
    for _ in range(5):
        again = (equal_error_rate(rng.permutation(target), rng.permutation(nontarget)),
                 min_dcf(rng.permutation(target), rng.permutation(nontarget)))
        assert again == first


def _rates(target, nontarget, t):
    return float(np.mean(target < t)), float(np.mean(nontarget >= t))


def test_min_dcf_equals_a_brute_force_search():
    rng = np.random.default_rng(2)
    target, nontarget = rng.normal(0.5, 0.2, 150), rng.normal(0.1, 0.2, 700)
    for p in (0.01, 0.05, 0.5):
        costs = []
        for t in [*np.unique(np.concatenate([target, nontarget])), math.inf]:
            p_miss, p_fa = _rates(target, nontarget, t)
            costs.append(((p * p_miss + (1 - p) * p_fa) / min(p, 1 - p), t))
        best = min(costs, key=lambda c: c[0])  # first (lowest threshold) among equal costs
        assert min_dcf(target, nontarget, p_target=p) == pytest.approx(best)


def test_eer_lies_between_the_rates_either_side_of_its_threshold():
    rng = np.random.default_rng(3)
    target, nontarget = rng.normal(0.5, 0.2, 120), rng.normal(0.1, 0.2, 400)
    eer, t = equal_error_rate(target, nontarget)
    p_miss, p_fa = _rates(target, nontarget, t)
    above = np.min(np.concatenate([target, nontarget])[np.concatenate([target, nontarget]) > t])
    p_miss_next, p_fa_next = _rates(target, nontarget, above)
    assert p_miss <= eer <= p_fa
    assert p_fa_next <= eer <= p_miss_next
    assert 0.05 < eer < 0.25  # two unit-ish Gaussians 2 sigma apart: about 16 %


def test_empty_or_non_finite_scores_are_refused():
    with pytest.raises(ValueError, match="no target"):
        equal_error_rate([], [0.1])
    with pytest.raises(ValueError, match="no non-target"):
        min_dcf([0.1], [])
    with pytest.raises(ValueError, match="finite"):
        equal_error_rate([0.1, math.nan], [0.2])


def test_trial_scores_pair_every_embedding_once():
    # Angles 0, 60, 90 and 180 degrees from the x axis.
    s3 = math.sqrt(3) / 2
    x = np.array([[1, 0], [0.5, s3], [0, 2], [-3, 0]])  # lengths differ: cosine normalises
    trials = trial_scores(x, ["a", "a", "b", "b"])
    assert sorted(trials.target) == pytest.approx([0.0, 0.5])  # a-a: 60 deg; b-b: 90 deg
    # a0-b2 0, a0-b3 -1, a1-b2 cos 30 deg, a1-b3 -0.5
    assert sorted(trials.nontarget) == pytest.approx([-1, -0.5, 0, s3])
    impostors = np.array([[0, -1]])
    extra = trial_scores(x, ["a", "a", "b", "b"], impostors)
    assert sorted(extra.nontarget) == pytest.approx(sorted([-1, -0.5, 0, s3, 0, -s3, -1, 0]))
    assert trial_counts(["a", "a", "b", "b"], impostors=1) == (2, 8)


def test_trial_counts_agree_with_trial_scores():
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 6, 40).astype(str)
    trials = trial_scores(rng.standard_normal((40, 8)), labels, rng.standard_normal((7, 8)))
    assert trial_counts(labels, 7) == (trials.target.size, trials.nontarget.size)


def test_zero_embedding_is_refused():
    with pytest.raises(ValueError, match="non-zero"):
        trial_scores(np.array([[1.0, 0.0], [0.0, 0.0]]), ["a", "b"])


def test_evaluate_reports_means_and_counts():
    metrics = evaluate(Trials(np.array([0.8, 0.9]), np.array([0.1, 0.2, 0.3])))
    assert (metrics.target_trials, metrics.nontarget_trials) == (2, 3)
    assert metrics.mean_target == pytest.approx(0.85)
    assert metrics.mean_nontarget == pytest.approx(0.2)
    assert (metrics.eer, metrics.min_dcf, metrics.p_target) == (0.0, 0.0, 0.01)
