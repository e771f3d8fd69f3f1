"""Render embedding results: a rich summary for people, one JSON object for programs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from .speaker import EmbeddingResult

if TYPE_CHECKING:
    from rich.console import Console

PREVIEW_VALUES = 8


def result_to_dict(result: EmbeddingResult) -> dict:
    """The `--json` payload: the full vector and how it was made."""
    return {
        "embedding": [float(v) for v in result.embedding],
        "dimension": result.dimension,
        "elapsed": round(result.elapsed, 6),
        "file": result.file,
        "duration": round(result.duration, 6),
        "sample_rate": result.sample_rate,
        "model": result.model,
        "engine": result.engine,
    }


def result_to_json(result: EmbeddingResult) -> str:
    """One line of JSON for a result."""
    return json.dumps(result_to_dict(result), separators=(",", ":"))


def render_summary(result: EmbeddingResult, console: Console) -> None:
    """Print a short human-readable summary of one embedding."""
    from rich.table import Table  # only the text path pays for importing rich

    v = result.embedding
    preview = ", ".join(f"{x:+.4f}" for x in v[:PREVIEW_VALUES])
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("file", result.file)
    table.add_row("duration", f"{result.duration:.2f} s ({result.sample_rate} Hz)")
    table.add_row("dimension", str(result.dimension))
    table.add_row("L2 norm", f"{float(np.linalg.norm(v)):.6f}")
    table.add_row("range", f"[{float(v.min()):+.4f}, {float(v.max()):+.4f}]")
    table.add_row(f"first {min(PREVIEW_VALUES, len(v))}", f"[{preview}]")
    table.add_row("engine", result.engine)
    table.add_row("model", result.model)
    table.add_row("time", f"{result.elapsed * 1000:.1f} ms")
    console.print(table)
