"""Plain-text tables: `aligned` lines up rows of cells for every command that prints a
table; `TableSink` is embed-speaker's table of every input (or window), printed when the run
ends."""

from __future__ import annotations

from typing import TextIO

import numpy as np

TABLE_PREVIEW = 3  # values per row in the many-input table


def aligned(rows: list[tuple[str, ...]], align: str) -> str:
    """Rows of cells as lines of text. Column i, for each letter of `align` (one per column
    but the last), is padded to its widest cell: on the left for "r" (numbers), on the right
    for "l". The last cell is written as it is, so a path or a name of any length is never
    cut and a row is one line; two spaces between cells, no trailing spaces."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(align))]
    return "".join(
        "  ".join([*(cell.rjust(w) if side == "r" else cell.ljust(w)
                     for cell, w, side in zip(row, widths, align, strict=False)),
                   row[-1]]).rstrip() + "\n"
        for row in rows)


class TableSink:
    """A table of every input (or window), printed when the run ends.

    Plain text with the path last: the fixed-width columns line up, and a path of any length
    is never cut or folded (it runs on, as in `ls -l`); a piped row is one line.
    """

    def __init__(self, windows: bool):
        self.windows = windows
        self.rows: list[tuple[str, ...]] = []

    def add(self, outcome) -> None:
        """Keep one row per input (per window with `--window`)."""
        blank = ("", "") if self.windows else ("",)
        if outcome.error is not None:
            reason = outcome.message.removeprefix(f"{outcome.file}: ")
            self.rows.append((*blank, "", "", "error", f"{outcome.file}: {reason}"))
        elif outcome.windows is not None:
            for w in outcome.windows:
                if w.embedding is None:  # VAD found too little speech in it
                    self.rows.append((f"{w.start:.2f}", f"{w.end:.2f}", "", "",
                                      f"{w.speech:.2f} s speech", outcome.file))
                    continue
                self.rows.append((f"{w.start:.2f}", f"{w.end:.2f}", *_vector_cells(w.embedding),
                                  "ok", outcome.file))
        else:
            r = outcome.result
            self.rows.append((f"{r.duration:.2f}", *_vector_cells(r.embedding), "ok",
                              outcome.file))

    def render(self, stream: TextIO) -> None:
        """Print the table."""
        header = (*(("start", "end") if self.windows else ("duration",)), "L2 norm",
                  f"first {TABLE_PREVIEW}", "status", "file")
        numbers = len(header) - 3  # right-aligned columns: times/duration and the norm
        stream.write(aligned([header, *self.rows], "r" * numbers + "l" * 2))


def _vector_cells(v: np.ndarray) -> tuple[str, str]:
    preview = ", ".join(f"{x:+.3f}" for x in v[:TABLE_PREVIEW])
    return f"{float(np.linalg.norm(v)):.6f}", f"[{preview}]"
