"""The optimal one-to-one assignment (linear sum assignment) of rows to columns of a cost matrix.

Scoring pairs reference with hypothesis speakers this way; stitching speaker labels across
chunks needs the same. scipy is not a dependency of this project, so the Hungarian method is
written here: the shortest-augmenting-path form with row and column potentials (Kuhn 1955,
Munkres 1957; the O(n^2 m) variant described by Jonker and Volgenant 1987), n <= m.
"""

from __future__ import annotations

import numpy as np


def min_cost_assignment(cost: np.ndarray) -> list[tuple[int, int]]:
    """The pairs (row, column) that minimise the summed cost, each row and column used at
    most once and min(rows, columns) pairs in all; sorted by row.

    cost: (rows, columns) finite numbers. Where several assignments reach the minimum, one of
    them is returned.
    """
    cost = np.asarray(cost, dtype=np.float64)
    if cost.ndim != 2:
        raise ValueError(f"a cost matrix has 2 dimensions, not {cost.ndim}")
    if not np.isfinite(cost).all():
        raise ValueError("the cost matrix holds a non-finite value")
    transposed = cost.shape[0] > cost.shape[1]
    if transposed:
        cost = cost.T
    pairs = _assign(cost)
    if transposed:
        pairs = [(column, row) for row, column in pairs]
    return sorted(pairs)


def _assign(cost: np.ndarray) -> list[tuple[int, int]]:
    """The assignment for rows <= columns: every row gets a column.

    Rows are added one at a time; each addition grows a shortest-path tree over the columns
    (reduced costs cost - u - v stay >= 0) until it reaches a free column, then flips the
    matching along that path. Index 0 of the column arrays is a virtual column holding the
    row being added."""
    rows, columns = cost.shape
    u = np.zeros(rows + 1)  # row potentials (1-based)
    v = np.zeros(columns + 1)  # column potentials; v[0] belongs to the virtual column
    owner = np.zeros(columns + 1, dtype=np.int64)  # row (1-based) holding each column; 0: free
    previous = np.zeros(columns + 1, dtype=np.int64)  # the column before it on the path
    for row in range(1, rows + 1):
        owner[0] = row
        column = 0
        slack = np.full(columns + 1, np.inf)
        reached = np.zeros(columns + 1, dtype=bool)
        while owner[column] != 0:
            reached[column] = True
            current = owner[column]
            reduced = cost[current - 1] - u[current] - v[1:]
            closer = ~reached[1:] & (reduced < slack[1:])
            slack[1:][closer] = reduced[closer]
            previous[1:][closer] = column
            candidates = np.where(reached, np.inf, slack)
            column_next = int(np.argmin(candidates))
            delta = candidates[column_next]
            u[owner[reached]] += delta
            v[reached] -= delta
            slack[~reached] -= delta
            column = column_next
        while column != 0:  # flip the matching along the path back to the virtual column
            before = previous[column]
            owner[column] = owner[before]
            column = before
    return [(int(owner[c]) - 1, c - 1) for c in range(1, columns + 1) if owner[c] != 0]
