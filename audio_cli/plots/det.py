"""`audio eval --plot`: DET curves (miss against false-alarm rate on normal-deviate axes,
EER and minDCF points marked) and the same-/different-speaker score histograms.

The curve's points are the operating points of evaluation/metrics.py (a threshold at every
distinct score, accept when score >= threshold), so the picture and the reported EER and
minDCF come from one computation. A DET plot draws each rate at its standard normal
quantile (Martin et al., "The DET curve in assessment of detection task performance",
Eurospeech 1997); rates of exactly 0 or 1 have no quantile and are drawn at the axes' edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from audio_cli.evaluation.metrics import Metrics, Trials, evaluate, operating_points
from audio_cli.plots.figure import pyplot

# Rates labelled on both axes (those inside the axes' range).
TICKS = (0.00001, 0.0001, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
HIGHEST = 0.6  # the axes' highest rate
LOWEST = 0.0005  # the axes' lowest rate, unless one error in the larger set of trials is less
BINS = 60


@dataclass(frozen=True)
class DetRun:
    """One run's trials and what is drawn of them: the rates at every operating point
    (threshold order, rising), the metrics, and the minDCF operating point's rates."""

    label: str
    trials: Trials
    metrics: Metrics
    thresholds: np.ndarray
    p_miss: np.ndarray
    p_fa: np.ndarray
    dcf_point: tuple[float, float]  # (p_fa, p_miss) at the minDCF threshold


def det_run(label: str, trials: Trials) -> DetRun:
    """A run's DET data from its trial scores (evaluation.metrics: one computation)."""
    thresholds, misses, false_alarms = operating_points(trials.target, trials.nontarget)
    p_miss = misses / trials.target.size
    p_fa = false_alarms / trials.nontarget.size
    metrics = evaluate(trials)
    at = int(np.searchsorted(thresholds, metrics.min_dcf_threshold))
    return DetRun(label, trials, metrics, thresholds=thresholds, p_miss=p_miss, p_fa=p_fa,
                  dcf_point=(float(p_fa[at]), float(p_miss[at])))


def lowest_rate(runs: list[DetRun]) -> float:
    """The axes' lowest rate: LOWEST, or half of one error among the most trials of a kind,
    so that a single miss or false alarm is still on the plot."""
    most = max(max(run.trials.target.size, run.trials.nontarget.size) for run in runs)
    return min(LOWEST, 0.5 / most)


def probit(rates: np.ndarray | float, lowest: float = LOWEST) -> np.ndarray:
    """The standard normal quantile of each rate, rates clipped to [lowest, HIGHEST]."""
    inverse = NormalDist().inv_cdf
    clipped = np.clip(np.asarray(rates, dtype=np.float64), lowest, HIGHEST)
    return np.vectorize(inverse, otypes=[np.float64])(clipped)


def det_figure(runs: list[DetRun]):
    """The DET curves of every run on one plot (left) and each run's score histograms with
    its EER and minDCF thresholds (right, one panel per run). Returns the Figure."""
    plt = pyplot()
    figure = plt.figure(figsize=(11, max(4.5, 2.6 * len(runs))))
    grid = figure.add_gridspec(len(runs), 2, width_ratios=(1, 1.15), wspace=0.25, hspace=0.45)
    det = figure.add_subplot(grid[:, 0])
    palette = plt.get_cmap("tab10")
    lowest = lowest_rate(runs)
    for index, run in enumerate(runs):
        colour = palette(index % 10)
        _curve(det, run, colour, lowest)
        _histogram(figure.add_subplot(grid[index, 1]), run, colour)
    _det_axes(det, lowest)
    return figure


def _curve(axes, run: DetRun, colour, lowest: float) -> None:
    m = run.metrics
    axes.plot(probit(run.p_fa, lowest), probit(run.p_miss, lowest), color=colour,
              linewidth=1.6, label=f"{run.label}: EER {m.eer:.3%}, minDCF {m.min_dcf:.4f}",
              gid="det")
    axes.plot(probit(m.eer, lowest), probit(m.eer, lowest), "o", color=colour, markersize=7,
              markeredgecolor="black", gid="eer")
    axes.plot(probit(run.dcf_point[0], lowest), probit(run.dcf_point[1], lowest), "s",
              color=colour, markersize=7, markeredgecolor="black", gid="min_dcf")


def _det_axes(axes, lowest: float) -> None:
    shown = [t for t in TICKS if t >= lowest]
    ticks = probit(np.array(shown), lowest)
    names = [f"{100 * t:g}" for t in shown]
    lo, hi = probit(np.array([lowest, HIGHEST]), lowest)
    axes.plot([lo, hi], [lo, hi], color="0.75", linewidth=0.8, linestyle=":", zorder=0)
    axes.set(xlim=(lo, hi), ylim=(lo, hi), xticks=ticks, yticks=ticks,
             xlabel="false-alarm rate (%)", ylabel="miss rate (%)",
             title="DET curve (o EER, \u25a1 minDCF p=0.01)")
    axes.set_xticklabels(names)
    axes.set_yticklabels(names)
    axes.set_aspect("equal")
    axes.grid(True, color="0.85", linewidth=0.6)
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, frameon=False)


def _histogram(axes, run: DetRun, colour) -> None:
    t, n = run.trials.target, run.trials.nontarget
    edges = np.histogram_bin_edges(np.concatenate([t, n]), BINS)
    axes.hist(n, edges, density=True, color="0.55", alpha=0.6,
              label=f"different speaker ({n.size:,})")
    axes.hist(t, edges, density=True, color=colour, alpha=0.6,
              label=f"same speaker ({t.size:,})")
    m = run.metrics
    axes.axvline(m.eer_threshold, color="black", linewidth=1.2, gid="eer_threshold",
                 label=f"EER threshold {m.eer_threshold:.3f}")
    if np.isfinite(m.min_dcf_threshold):
        axes.axvline(m.min_dcf_threshold, color="black", linewidth=1.0, linestyle="--",
                     gid="min_dcf_threshold",
                     label=f"minDCF threshold {m.min_dcf_threshold:.3f}")
    axes.set(xlabel="cosine score", ylabel="density", title=run.label)
    axes.legend(loc="upper left", fontsize=7, frameon=False)
