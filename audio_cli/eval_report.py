"""Render an evaluation: a small table for people, one JSON object for programs."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from .eval_run import EvalReport

if TYPE_CHECKING:
    from rich.console import Console


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def report_to_dict(report: EvalReport) -> dict:
    """The `--json` payload (rates as fractions; a threshold of +inf, i.e. reject all, is null)."""
    m = report.metrics
    return {
        "dataset": str(report.dataset.source),
        "layout": report.dataset.layout,
        "speakers": report.speakers,
        "files": report.files,
        "impostor_files": report.impostor_files,
        "embedded": report.files + report.impostor_files - len(report.failures),
        "failed": len(report.failures),
        "trials": m.target_trials + m.nontarget_trials,
        "target_trials": m.target_trials,
        "nontarget_trials": m.nontarget_trials,
        "eer": m.eer,
        "eer_threshold": m.eer_threshold,
        "min_dcf": m.min_dcf,
        "min_dcf_threshold": _finite(m.min_dcf_threshold),
        "p_target": m.p_target,
        "mean_target_score": m.mean_target,
        "mean_nontarget_score": m.mean_nontarget,
        "model": report.model,
        "engine": report.engine,
        "elapsed": round(report.elapsed, 3),
    }


def report_to_json(report: EvalReport) -> str:
    """One line of JSON for a report."""
    return json.dumps(report_to_dict(report), separators=(",", ":"))


def render_report(report: EvalReport, console: Console) -> None:
    """Print the evaluation as a two-column table."""
    from rich.table import Table  # only the text path pays for importing rich

    m = report.metrics
    d = report_to_dict(report)
    dcf_threshold = "reject all" if d["min_dcf_threshold"] is None else f"{m.min_dcf_threshold:.4f}"
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("dataset", f"{d['dataset']} ({d['layout']})")
    table.add_row("files", f"{d['files']} ({report.speakers} speakers)"
                  + (f" + {d['impostor_files']} impostors" if d["impostor_files"] else "")
                  + (f", {d['failed']} failed" if d["failed"] else ""))
    table.add_row("trials", f"{d['trials']:,} ({m.target_trials:,} target, "
                  f"{m.nontarget_trials:,} non-target)")
    table.add_row("EER", f"{m.eer * 100:.2f} % (threshold {m.eer_threshold:.4f})")
    table.add_row(f"minDCF (p={m.p_target:g})", f"{m.min_dcf:.4f} (threshold {dcf_threshold})")
    table.add_row("mean score", f"target {m.mean_target:.4f}, non-target {m.mean_nontarget:.4f}")
    table.add_row("model", f"{report.model} ({report.engine})")
    table.add_row("time", f"{report.elapsed:.1f} s to embed")
    console.print(table)
