"""Global bin edges from pooled counts, never from any member's raw values or local quantiles.

Every feature is a count or an amount (non-negative). Edges are float32 and a row's bin code is the number of
edges at or below its value, so code <= b exactly when value < edges[b]: the rule XGBoost applies to a split
(``x < split_condition`` goes left), which makes the exported model score as the federation's own.

Edges come from two sum questions, each a count of rows per cell of a grid every party derives alone:
1. ``coarse``: a fixed grid, cells of width 1/``STEPS`` in log1p(value) (``coarse_grid``), the same for every run;
2. ``fine``: each coarse cell holding at least ``max(min_rows, rows / max_bins)`` rows of the federation (a cell
   that may need an edge inside it) cut again into ``STEPS`` cells (``fine_grid``), derived from the coarse totals.
Then ``edges_from_counts`` walks the cells in order and closes a bin at a cell boundary once it holds about
rows / max_bins rows and at least ``min_rows``; the last bin too holds at least ``min_rows``. So no bin, and no
cell that was asked about in finer detail, describes fewer than ``min_rows`` rows of the federation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fl_runtime.learning.trees import MISSING  # the code of a missing value (NaN): a bin of its own

STEPS = 32  # cells per unit of log1p(value); the fine grid cuts a coarse cell into as many again
# log1p of the largest feature value the data contract accepts (csv_blocks.MAX_VALUE; not imported: this module
# ships in model.tar.gz with the tree modules, the CSV reader does not)
MAX_LOG = math.log1p(2.0**64)
MAX_BINS = 255  # bins of present values (codes 0..254)


def coarse_grid() -> np.ndarray:
    """The fixed boundaries (float32, increasing): cell k holds values in [grid[k-1], grid[k])."""
    return _boundaries(np.arange(1, math.ceil(MAX_LOG * STEPS) + 1) / STEPS)


def _boundaries(logs: np.ndarray) -> np.ndarray:
    return np.unique(np.expm1(logs).astype(np.float32))


def cell_of(values: np.ndarray, boundaries: np.ndarray) -> np.ndarray:
    """Each value's cell (or bin code): how many boundaries are at or below it, compared in float32."""
    return np.searchsorted(boundaries, values.astype(np.float32), side="right")


def counts(X: np.ndarray, grids: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One member's answer: rows per cell of each feature's grid (len(grid) + 1 cells); a missing value is in
    none of them (the total rows minus a feature's cells is its missing count)."""
    return [
        np.bincount(cell_of(column[~np.isnan(column)], grid), minlength=len(grid) + 1)
        for column, grid in zip(X.T, grids)
    ]


def fine_grid(coarse_counts: np.ndarray, rows: int, min_rows: int, max_bins: int = MAX_BINS) -> np.ndarray:
    """One feature's finer boundaries: the coarse grid, plus STEPS - 1 cuts inside every coarse cell holding at
    least max(min_rows, rows / max_bins) rows of the federation (``coarse_counts``, its totals)."""
    grid = coarse_grid()
    crowded = np.flatnonzero(coarse_counts >= max(min_rows, rows / max_bins))
    cuts = [grid]
    for cell in crowded:
        # cell k spans log1p values [(k) / STEPS, (k + 1) / STEPS); the last cell is open above: not cut
        if cell >= len(grid):
            continue
        inside = (cell + np.arange(1, STEPS) / STEPS) / STEPS
        cuts.append(_boundaries(inside))
    return np.unique(np.concatenate(cuts))


def edges_from_counts(
    boundaries: np.ndarray, cell_counts: np.ndarray, min_rows: int, max_bins: int = MAX_BINS
) -> np.ndarray:
    """Up to ``max_bins`` edges at cell boundaries, each bin about rows / max_bins rows and at least
    ``min_rows`` (the federation's totals per cell: ``cell_counts``, len(boundaries) + 1 cells)."""
    rows = int(cell_counts.sum())
    target = max(min_rows, rows / max_bins)
    edges: list[np.float32] = []
    held, left = 0, rows
    for cell, count in enumerate(cell_counts[:-1]):
        held, left = held + int(count), left - int(count)
        if held >= target and left >= min_rows and len(edges) < max_bins - 1:
            edges.append(boundaries[cell])
            held = 0
    return np.asarray(edges, dtype=np.float32)


def agree_edges(parts: Sequence[np.ndarray], min_rows: int, max_bins: int = MAX_BINS) -> list[np.ndarray]:
    """Every feature's edges from the members' rows (``parts``), through the two count questions: what the
    federation agrees, computed in process (the sums are integers, so the split among members is irrelevant)."""
    features = parts[0].shape[1]
    coarse = [coarse_grid()] * features
    coarse_totals = _add_up([counts(X, coarse) for X in parts])
    rows = sum(X.shape[0] for X in parts)
    fine = [fine_grid(total, rows, min_rows, max_bins) for total in coarse_totals]
    fine_totals = _add_up([counts(X, fine) for X in parts])
    return [edges_from_counts(grid, total, min_rows, max_bins) for grid, total in zip(fine, fine_totals)]


def _add_up(answers: list[list[np.ndarray]]) -> list[np.ndarray]:
    """The members' counts, feature by feature."""
    return [np.sum(per_member, axis=0) for per_member in zip(*answers)]


def bin_codes(X: np.ndarray, edges: Sequence[np.ndarray], missing_kept: Sequence[bool] | None = None) -> np.ndarray:
    """Rows as uint8 bin codes: code <= b exactly when value < edges[b] (float32 comparison); MISSING for NaN, or,
    for a feature whose missing values are too few to be a bin of their own (``missing_kept`` False), bin 0: a
    missing value is then taken as the lowest."""
    codes = np.empty(X.shape, dtype=np.uint8)
    for j, feature_edges in enumerate(edges):
        missing = MISSING if not missing_kept or missing_kept[j] else 0  # none given: every feature's kept
        codes[:, j] = np.where(np.isnan(X[:, j]), missing, cell_of(X[:, j], feature_edges))
    return codes
