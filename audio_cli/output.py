"""Render embedding results: rich summaries and tables for people, JSON (Lines) for programs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, TextIO

import numpy as np

from .speaker import EmbeddingResult, WindowEmbedding

if TYPE_CHECKING:
    from rich.console import Console

    from .batch import Outcome

PREVIEW_VALUES = 8
TABLE_PREVIEW = 3  # values per row in the many-input table


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


def window_to_dict(window: WindowEmbedding, model: str, engine: str) -> dict:
    """One JSON Lines record of `--window`: the window's times and vector."""
    return {
        "file": window.file,
        "start": round(window.start, 6),
        "end": round(window.end, 6),
        "embedding": [float(v) for v in window.embedding],
        "dimension": int(window.embedding.shape[0]),
        "model": model,
        "engine": engine,
    }


def outcome_records(outcome: Outcome, model: str, engine: str) -> list[dict]:
    """The JSON Lines records of one input: its result, one per window, or its error."""
    if outcome.error is not None:
        return [{"file": outcome.file, "error": outcome.message}]
    if outcome.windows is not None:
        return [{**window_to_dict(w, model, engine), "file": outcome.file}
                for w in outcome.windows]
    return [{**result_to_dict(outcome.result), "file": outcome.file}]


class JsonLinesSink:
    """JSON Lines on a stream (stdout), flushed after each input so pipes see it at once."""

    def __init__(self, stream: TextIO, model: str, engine: str):
        self.stream, self.model, self.engine = stream, model, engine

    def add(self, outcome: Outcome) -> None:
        """Write the input's records."""
        for record in outcome_records(outcome, self.model, self.engine):
            self.stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.stream.flush()


class TableSink:
    """A rich table of every input (or window), printed when the run ends."""

    def __init__(self, windows: bool):
        self.windows = windows
        self.rows: list[tuple[str, ...]] = []

    def add(self, outcome: Outcome) -> None:
        """Keep one row per input (per window with `--window`)."""
        blank = ("", "") if self.windows else ("",)
        if outcome.error is not None:
            reason = outcome.message.removeprefix(f"{outcome.file}: ")
            self.rows.append((outcome.file, *blank, "", "", f"error: {reason}"))
        elif outcome.windows is not None:
            for w in outcome.windows:
                self.rows.append((outcome.file, f"{w.start:.2f}", f"{w.end:.2f}",
                                  *_vector_cells(w.embedding), "ok"))
        else:
            r = outcome.result
            self.rows.append((outcome.file, f"{r.duration:.2f}", *_vector_cells(r.embedding),
                              "ok"))

    def render(self, console: Console) -> None:
        """Print the table."""
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        table.add_column("file", overflow="fold")
        for name in ("start", "end") if self.windows else ("duration",):
            table.add_column(name, justify="right", no_wrap=True)
        table.add_column("L2 norm", justify="right", no_wrap=True)
        table.add_column(f"first {TABLE_PREVIEW}", no_wrap=True)
        table.add_column("status", overflow="fold")
        for row in self.rows:
            table.add_row(*row)
        with console.capture() as captured:
            console.print(table)
        console.file.write("".join(line.rstrip() + "\n" for line in captured.get().splitlines()))


def _vector_cells(v: np.ndarray) -> tuple[str, str]:
    preview = ", ".join(f"{x:+.3f}" for x in v[:TABLE_PREVIEW])
    return f"{float(np.linalg.norm(v)):.6f}", f"[{preview}]"
