"""Exact per-row reasons for boosted trees: path-dependent TreeSHAP (Lundberg et al., 2018, Algorithm 2).

A row's reasons are Shapley values of its margin, where "a feature unknown" means following both children of a
split on it, weighted by their cover (the hessian sums each node was grown with, as XGBoost's own TreeSHAP uses):
so the bias (the cover-weighted mean leaf value, plus the ensemble's baseline) and the row's contributions add up
to its margin, exactly but for float rounding. The recursion is the shap package's ``tree_shap_recursive`` (its
C++ ``tree_shap.h``), written out here with NumPy only (a training client needs nothing else) and for every row
at once: the recursion visits both children of every split, and a row's "one" fraction is 1 on the child it
takes and 0 on the other, so rows differ only in arrays, not in the path the recursion walks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_runtime.learning.trees import MISSING, Ensemble, Tree


@dataclass
class _Element:
    """One feature on the path to a node, for every row at once."""

    feature: int
    zero: float  # the share of the cover that goes this way when the feature is unknown
    one: np.ndarray  # per row: 1 if the row itself goes this way, else 0
    weight: np.ndarray  # per row: the path's permutation weight


def _extend(path: list[_Element], zero: float, one: np.ndarray, feature: int) -> None:
    depth = len(path)
    path.append(_Element(feature, zero, one, np.full(one.shape, 1.0 if depth == 0 else 0.0)))
    for i in range(depth - 1, -1, -1):
        path[i + 1].weight = path[i + 1].weight + one * path[i].weight * (i + 1) / (depth + 1)
        path[i].weight = zero * path[i].weight * (depth - i) / (depth + 1)


def _unwind(path: list[_Element], index: int) -> None:
    depth = len(path) - 1
    one, zero = path[index].one, path[index].zero
    goes = one != 0
    safe_one = np.where(goes, one, 1.0)
    following = path[depth].weight
    for i in range(depth - 1, -1, -1):
        kept = path[i].weight
        through = following * (depth + 1) / ((i + 1) * safe_one)
        path[i].weight = np.where(goes, through, kept * (depth + 1) / (zero * (depth - i)))
        following = np.where(goes, kept - path[i].weight * zero * (depth - i) / (depth + 1), following)
    for i in range(index, depth):
        path[i].feature, path[i].zero, path[i].one = path[i + 1].feature, path[i + 1].zero, path[i + 1].one
    path.pop()


def _unwound_sum(path: list[_Element], index: int) -> np.ndarray:
    depth = len(path) - 1
    one, zero = path[index].one, path[index].zero
    goes = one != 0
    safe_one = np.where(goes, one, 1.0)
    following = path[depth].weight
    total = np.zeros(one.shape)
    for i in range(depth - 1, -1, -1):
        part = following * (depth + 1) / ((i + 1) * safe_one)
        stays = (path[i].weight / zero) / ((depth - i) / (depth + 1)) if zero else np.zeros(one.shape)
        total = total + np.where(goes, part, stays)
        following = np.where(goes, path[i].weight - part * zero * ((depth - i) / (depth + 1)), following)
    return total


def _recurse(tree, cover, codes, phi, node, parent, zero, one, feature) -> None:
    """Every row at once: the recursion visits every node; a row's ``one`` says whether it goes there itself."""
    path = [_Element(e.feature, e.zero, e.one, e.weight.copy()) for e in parent]
    _extend(path, zero, one, feature)
    split = tree.feature[node]
    if split < 0:
        for i in range(1, len(path)):
            phi[:, path[i].feature] += _unwound_sum(path, i) * (path[i].one - path[i].zero) * tree.value[node]
        return
    code = codes[:, split]
    goes_left = np.where(code == MISSING, tree.default_left[node], code <= tree.bin[node]).astype(np.float64)
    incoming_zero, incoming_one = 1.0, np.ones(codes.shape[0])
    seen = next((i for i, e in enumerate(path) if e.feature == split), None)
    if seen is not None:  # split on this feature before: undo it, to redo it here
        incoming_zero, incoming_one = path[seen].zero, path[seen].one
        _unwind(path, seen)
    for child, goes in ((tree.left[node], goes_left), (tree.right[node], 1.0 - goes_left)):
        share = cover[child] / cover[node] * incoming_zero
        _recurse(tree, cover, codes, phi, child, path, share, incoming_one * goes, split)


def expected_value(tree: Tree) -> float:
    """The tree's cover-weighted mean leaf value: its part of the bias."""
    cover = tree.cover()
    return sum(v * cover[n] for n, (f, v) in enumerate(zip(tree.feature, tree.value)) if f < 0) / cover[0]


def contributions(ensemble: Ensemble, codes: np.ndarray) -> tuple[np.ndarray, float]:
    """Each row's contribution of each feature to its margin (rows x features), and the bias they all share:
    bias + a row's contributions = its margin."""
    phi = np.zeros(codes.shape, dtype=np.float64)
    bias = ensemble.baseline + sum(expected_value(tree) for tree in ensemble.trees)
    for tree in ensemble.trees:
        _recurse(tree, tree.cover(), codes, phi, 0, [], 1.0, np.ones(codes.shape[0]), -1)
    return phi, bias
