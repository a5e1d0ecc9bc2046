"""Global bin edges from pooled counts: the same whatever the split among members, no bin under min_rows rows,
binned as XGBoost applies a split, and good enough that trees on them match trees on the raw values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from fl_runtime.learning.binning import (
    MAX_BINS,
    agree_edges,
    bin_codes,
    coarse_grid,
    counts,
    fine_grid,
)
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.trees import TreeSettings, boost

MIN_ROWS = 10


@pytest.fixture(scope="module")
def split(cms):
    return partition(cms, PartitionSpec(3, seed=0))


@pytest.fixture(scope="module")
def edges(split):
    _test, clients = split
    return agree_edges([c.X for c in clients], MIN_ROWS)


def test_the_edges_do_not_depend_on_how_rows_are_split_among_members(split, edges):
    _test, clients = split
    pooled = np.vstack([c.X for c in clients])
    order = np.random.default_rng(0).permutation(len(pooled))
    regrouped = np.array_split(pooled[order], 5)
    for ours, theirs in zip(edges, agree_edges(regrouped, MIN_ROWS)):
        assert np.array_equal(ours, theirs)


def test_no_bin_and_no_finer_cell_describes_fewer_than_min_rows_rows(split, edges):
    _test, clients = split
    pooled = np.vstack([c.X for c in clients])
    codes = bin_codes(pooled, edges)
    for j, feature_edges in enumerate(edges):
        assert len(feature_edges) <= MAX_BINS - 1 and np.all(np.diff(feature_edges) > 0)
        per_bin = np.bincount(codes[:, j], minlength=len(feature_edges) + 1)
        assert per_bin.min() >= MIN_ROWS, f"feature {j}: a bin of {per_bin.min()} rows"
        coarse = counts(pooled[:, [j]], [coarse_grid()])[0]
        finer = fine_grid(coarse, len(pooled), MIN_ROWS)
        refined = set(np.setdiff1d(finer, coarse_grid()).tolist())
        crowded = coarse >= max(MIN_ROWS, len(pooled) / MAX_BINS)
        cell_of_cut = np.searchsorted(coarse_grid(), np.array(sorted(refined), dtype=np.float32), side="right")
        assert crowded[cell_of_cut].all()  # cut only inside cells of enough rows


def test_a_value_equal_to_an_edge_goes_right_as_in_xgboost(edges):
    feature_edges = edges[3]
    edge = feature_edges[len(feature_edges) // 2]
    below = np.nextafter(edge, np.float32(0))
    X = np.zeros((2, len(edges)))
    X[:, 3] = [float(below), float(edge)]
    codes = bin_codes(X, edges)[:, 3]
    b = len(feature_edges) // 2
    assert codes[0] <= b < codes[1]  # below < edges[b] goes left; edges[b] itself does not


def test_trees_on_the_agreed_bins_rank_as_well_as_scikit_learn_on_the_raw_values(split, edges):
    test, clients = split
    X = np.vstack([c.X for c in clients])
    y = np.concatenate([c.y for c in clients]).astype(np.float64)
    ensemble = boost(bin_codes(X, edges), y, TreeSettings(trees=100, depth=3))
    ours = roc_auc_score(test.y, ensemble.margin(bin_codes(test.X, edges)))
    raw = HistGradientBoostingClassifier(
        max_iter=100, max_depth=3, learning_rate=0.1, l2_regularization=1.0, early_stopping=False
    ).fit(X, y)
    theirs = roc_auc_score(test.y, raw.decision_function(test.X))
    assert ours > 0.87 and abs(ours - theirs) < 0.01, (ours, theirs)
