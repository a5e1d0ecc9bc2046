"""Exact histogram boosting: the same trees as scikit-learn on the same bin codes, whatever the row order or
the split of rows among members."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from fl_runtime.errors import OptionsError
from fl_runtime.learning.baselines import hist_gradient_boosting_reference
from fl_runtime.learning.binning import agree_edges, bin_codes
from fl_runtime.learning.trees import (
    MISSING,
    TreeSettings,
    best_split,
    boost,
    cell_ends,
    fixed_gradients,
    histograms,
    regroup,
)

# cell_rows 0: every bin in every node, as scikit-learn's trees (the federation's default merges bins: cell_ends)
SETTINGS = TreeSettings(trees=20, depth=3, learning_rate=0.1, l2=1.0, min_rows_leaf=20, cell_rows=0)


@pytest.fixture(scope="module")
def coded(cms):
    """The CMS rows as dense bin codes (up to 255 per feature, by quantile): every code 0..k occurs, so
    scikit-learn's own binning of them keeps them as they are."""
    codes = np.zeros(cms.X.shape, dtype=np.uint8)
    for j in range(cms.X.shape[1]):
        edges = np.unique(np.quantile(cms.X[:, j], np.linspace(0, 1, 256)[1:-1]).astype(np.float32))
        raw = np.searchsorted(edges, cms.X[:, j].astype(np.float32), side="right")
        codes[:, j] = np.unique(raw, return_inverse=True)[1]
    return codes, cms.y.astype(np.float64)


def _ours(tree, node=0):
    if tree.feature[node] < 0:
        return ("leaf", tree.value[node])
    return (tree.feature[node], tree.bin[node], _ours(tree, tree.left[node]), _ours(tree, tree.right[node]))


def _theirs(nodes, node=0):
    entry = nodes[node]
    if entry["is_leaf"]:
        return ("leaf", float(entry["value"]))
    threshold = float(entry["num_threshold"])
    assert threshold % 1 == 0.5  # between codes b and b + 1
    left, right = int(entry["left"]), int(entry["right"])
    return (int(entry["feature_idx"]), int(threshold), _theirs(nodes, left), _theirs(nodes, right))


def _same_shape(ours, theirs, tolerance):
    if ours[0] == "leaf" or theirs[0] == "leaf":
        return ours[0] == theirs[0] and abs(ours[1] - theirs[1]) <= tolerance
    return ours[:2] == theirs[:2] and all(_same_shape(a, b, tolerance) for a, b in zip(ours[2:], theirs[2:]))


def test_the_trees_are_scikit_learns_histogram_boosting_on_the_same_bin_codes(coded):
    codes, y = coded
    ensemble = boost(codes, y, SETTINGS)
    reference = hist_gradient_boosting_reference(SETTINGS).fit(codes.astype(np.float64), y)
    differ = [
        index
        for index, (tree, [predictor]) in enumerate(zip(ensemble.trees, reference._predictors))
        if not _same_shape(_ours(tree), _theirs(predictor.nodes), 1e-5)
    ]
    assert differ == [], f"trees that differ from scikit-learn's (split or leaf value beyond 1e-5): {differ}"
    assert len(ensemble.trees) == SETTINGS.trees
    theirs = reference._raw_predict(codes.astype(np.float64)).ravel()
    assert np.abs(ensemble.margin(codes) - theirs).max() < 1e-5
    assert abs(ensemble.baseline - reference._baseline_prediction.ravel()[0]) < 1e-12


def test_the_trees_do_not_depend_on_the_order_of_the_rows(coded):
    codes, y = coded
    order = np.random.default_rng(0).permutation(len(y))
    once, shuffled = boost(codes, y, SETTINGS), boost(codes[order], y[order], SETTINGS)
    for a, b in zip(once.trees, shuffled.trees):
        assert (a.feature, a.bin, a.value) == (b.feature, b.bin, b.value)  # bit for bit
    assert once.baseline == shuffled.baseline


def test_members_histograms_add_up_to_the_pooled_histogram_exactly(coded):
    codes, y = coded
    margin = np.random.default_rng(1).normal(size=len(y))
    gradient, hessian = fixed_gradients(margin, y)
    pooled = histograms(codes, gradient, hessian, np.arange(len(y)))
    member_of_row = np.random.default_rng(2).integers(0, 3, size=len(y))
    members = [histograms(codes, gradient, hessian, np.flatnonzero(member_of_row == m)) for m in range(3)]
    assert np.array_equal(sum(members), pooled)
    assert best_split(sum(members), SETTINGS) == best_split(pooled, SETTINGS)


def test_every_leaf_keeps_min_rows_leaf_rows(coded):
    codes, y = coded
    settings = TreeSettings(trees=5, depth=6, min_rows_leaf=40)
    ensemble = boost(codes, y, settings)
    leaves = [sums.rows for tree in ensemble.trees for f, sums in zip(tree.feature, tree.sums) if f < 0]
    assert min(leaves) >= 40
    assert max(len(tree.feature) for tree in ensemble.trees) > 15  # deep enough that the rule bites


@pytest.mark.parametrize(
    "change, named",
    [
        ({"depth": 0}, "--depth must be a whole number from 1 to 8, got 0"),
        ({"depth": 2.5}, "--depth must be a whole number from 1 to 8, got 2.5"),
        ({"learning_rate": 0.0}, "--learning-rate must be a number above 0 and at most 1, got 0.0"),
        ({"l2": float("nan")}, "--l2 must be a number above 0, got nan"),
        ({"l2": 0.0}, "--l2 must be a number above 0, got 0.0"),
        ({"min_rows_leaf": 0}, "--min-rows-leaf must be a whole number of at least 1, got 0"),
        ({"trees": True}, "--trees must be a whole number of at least 1, got True"),
    ],
)
def test_settings_out_of_range_are_refused_by_name(change, named):
    with pytest.raises(OptionsError, match=re.escape(named)):
        TreeSettings(**change)


def test_settings_round_trip_through_run_config_keys():
    settings = TreeSettings(
        trees=7, depth=2, learning_rate=0.3, l2=0.5, min_rows_leaf=12, min_hessian=0.01, cell_rows=30
    )
    config = settings.to_config()
    assert config == {"trees": 7, "depth": 2, "learning-rate": 0.3, "l2": 0.5, "min-rows-leaf": 12,
                      "min-hessian": 0.01, "cell-rows": 30}  # fmt: skip
    assert TreeSettings.from_config(config) == settings


def test_one_class_alone_is_refused():
    with pytest.raises(ValueError, match="needs both classes: 0 positives among 3 rows"):
        boost(np.zeros((3, 1), dtype=np.uint8), np.zeros(3), SETTINGS)


def _one_feature(missing_label: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes 0..9 (100 rows each), frauds in codes 0..2, and 150 missing values whose label is ``missing_label``."""
    codes = np.r_[np.repeat(np.arange(10), 100), np.full(150, MISSING)].astype(np.uint8).reshape(-1, 1)
    y = np.r_[(np.repeat(np.arange(10), 100) <= 2).astype(float), np.full(150, float(missing_label))]
    return codes, y


@pytest.mark.parametrize("missing_label, default_left", [(1, True), (0, False)])
def test_a_missing_value_goes_to_the_side_it_gains_most_on_and_the_tree_sends_it_there(missing_label, default_left):
    codes, y = _one_feature(missing_label)
    gradient, hessian = fixed_gradients(np.zeros(len(y)), y)
    split = best_split(histograms(codes, gradient, hessian, np.arange(len(y))), SETTINGS)
    assert (split.feature, split.bin, split.default_left) == (0, 2, default_left)
    assert split.left.rows == 300 + (150 if default_left else 0)
    tree = boost(codes, y, TreeSettings(trees=1, depth=1, min_rows_leaf=20)).trees[0]
    leaves = tree.leaves_of(codes)
    assert set(leaves[-150:]) == {tree.left[0] if default_left else tree.right[0]}


def test_with_missing_values_the_trees_are_scikit_learns_on_the_same_codes(cms_missing):
    """scikit-learn also learns where missing values go; on the same codes (NaN where missing) it grows the same
    trees, ties of direction aside (none on this data)."""
    edges = agree_edges([cms_missing.X], SETTINGS.min_rows_leaf)
    codes = bin_codes(cms_missing.X, edges)
    y = cms_missing.y.astype(np.float64)
    ensemble = boost(codes, y, SETTINGS)
    as_floats = np.where(codes == MISSING, np.nan, codes.astype(np.float64))
    reference = hist_gradient_boosting_reference(SETTINGS).fit(as_floats, y)
    theirs = reference._raw_predict(as_floats).ravel()
    assert np.abs(ensemble.margin(codes) - theirs).max() < 1e-5
    assert any(any(tree.default_left) for tree in ensemble.trees)  # some splits send missing values left


def test_below_the_root_a_cell_holds_at_least_the_threshold_of_the_parents_rows(coded):
    codes, y = coded
    gradient, hessian = fixed_gradients(np.zeros(len(y)), y)
    parent = histograms(codes, gradient, hessian, np.arange(len(y)))
    ends = cell_ends(parent, 200.0)
    counts = parent[2, :, :MISSING]
    for feature in range(codes.shape[1]):
        at = np.flatnonzero(ends[feature, :MISSING])
        assert (counts[feature, at] > 0).all()  # a cell ends only where the parent has rows
        cells = np.diff(np.cumsum(counts[feature])[at], prepend=0)
        assert cells.sum() == len(y) and (cells >= 200).all() and len(cells) <= len(y) // 200
    regrouped = regroup(parent, ends)
    assert np.array_equal(regrouped.sum(axis=2), parent.sum(axis=2)) and not regrouped[:, ~ends].any()
    assert np.array_equal(cell_ends(parent, 0.0)[:, :MISSING], counts > 0)


def test_merging_small_nodes_cells_keeps_every_node_above_the_leaf_floor_and_costs_little(coded):
    """The default cells (about 20 of a child's rows each) against every bin: the same floor on the leaves, and
    a training loss within 2 % of every bin's after 20 trees."""
    codes, y = coded
    merged = boost(codes, y, replace(SETTINGS, cell_rows=20))
    every_bin = boost(codes, y, SETTINGS)
    assert min(s.rows for tree in merged.trees for f, s in zip(tree.feature, tree.sums) if f < 0) >= 20

    def loss(ensemble):
        p = 1 / (1 + np.exp(-ensemble.margin(codes)))
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    assert loss(merged) <= 1.02 * loss(every_bin)
