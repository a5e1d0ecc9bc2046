"""Tree reasons: Shapley values of the margin that add up to it, equal to the exhaustive Shapley computation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from fl_runtime.learning.tree_shap import contributions, expected_value
from fl_runtime.learning.trees import Ensemble, TreeSettings, boost


@pytest.fixture(scope="module")
def model(cms):
    codes = np.zeros(cms.X.shape, dtype=np.uint8)
    for j in range(cms.X.shape[1]):  # 16 quantile bins per feature: quick, and enough splits to reuse features
        edges = np.unique(np.quantile(cms.X[:, j], np.linspace(0, 1, 17)[1:-1]))
        codes[:, j] = np.searchsorted(edges, cms.X[:, j], side="right")
    return boost(codes, cms.y.astype(np.float64), TreeSettings(trees=15, depth=4, learning_rate=0.3)), codes


def _expected(tree, cover, row, known, node=0):
    """The tree's value for ``row`` when only the features in ``known`` are known (cover-weighted otherwise)."""
    feature = tree.feature[node]
    if feature < 0:
        return tree.value[node]
    left, right = tree.left[node], tree.right[node]
    if feature in known:
        return _expected(tree, cover, row, known, left if row[feature] <= tree.bin[node] else right)
    return (
        cover[left] * _expected(tree, cover, row, known, left)
        + cover[right] * _expected(tree, cover, row, known, right)
    ) / cover[node]


def _exhaustive(tree, row) -> dict[int, float]:
    cover = tree.cover()
    used = sorted({f for f in tree.feature if f >= 0})
    n = len(used)
    phi = {}
    for feature in used:
        others = [f for f in used if f != feature]
        total = 0.0
        for size in range(n):
            for subset in itertools.combinations(others, size):
                weight = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
                with_it = _expected(tree, cover, row, {*subset, feature})
                total += weight * (with_it - _expected(tree, cover, row, set(subset)))
        phi[feature] = total
    return phi


def test_bias_and_contributions_add_up_to_every_rows_margin(model):
    ensemble, codes = model
    rows = codes[:300]
    phi, bias = contributions(ensemble, rows)
    assert np.abs(bias + phi.sum(axis=1) - ensemble.margin(rows)).max() < 1e-9
    assert (phi != 0).any(axis=0).sum() > 5  # many features carry reasons


def test_contributions_are_the_exhaustive_shapley_values_of_each_tree(model):
    ensemble, codes = model
    reused = [t for t in ensemble.trees if len({f for f in t.feature if f >= 0}) < sum(f >= 0 for f in t.feature)]
    assert reused, "no tree splits twice on one feature: the unwinding path is not exercised"
    for tree in [ensemble.trees[0], reused[0]]:
        single = Ensemble(0.0, [tree])
        for row in codes[[0, 7, 42, 1000]]:
            phi, bias = contributions(single, row[None, :])
            assert bias == pytest.approx(expected_value(tree), abs=1e-12)
            for feature, value in _exhaustive(tree, row).items():
                assert phi[0, feature] == pytest.approx(value, abs=1e-9)


def test_with_missing_values_the_contributions_still_add_up_to_the_margin(cms_missing):
    from fl_runtime.learning.binning import agree_edges, bin_codes

    edges = agree_edges([cms_missing.X], 20)
    codes = bin_codes(cms_missing.X, edges)
    ensemble = boost(codes, cms_missing.y.astype(np.float64), TreeSettings(trees=10, depth=4, learning_rate=0.3))
    phi, bias = contributions(ensemble, codes)
    np.testing.assert_allclose(phi.sum(axis=1) + bias, ensemble.margin(codes), atol=1e-10)
