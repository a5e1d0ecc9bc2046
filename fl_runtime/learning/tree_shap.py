"""Exact per-row reasons for boosted trees: path-dependent TreeSHAP (Lundberg et al., 2018, Algorithm 2).

A row's reasons are Shapley values of its margin, where "a feature unknown" means following both children of a
split on it, weighted by their cover (the hessian sums each node was grown with, as XGBoost's own TreeSHAP uses):
so the bias (the cover-weighted mean leaf value, plus the ensemble's baseline) and the row's contributions add up
to its margin, exactly but for float rounding. The recursion is the shap package's ``tree_shap_recursive`` (its
C++ ``tree_shap.h``), written out here with NumPy only: a training client needs nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_runtime.learning.trees import GRADIENT_BITS, Ensemble, Tree


@dataclass
class _Element:
    feature: int
    zero: float  # the fraction of paths through here when the feature is unknown (by cover)
    one: float  # 1 if the row itself goes this way, else 0
    weight: float


def _extend(path: list[_Element], zero: float, one: float, feature: int) -> None:
    depth = len(path)
    path.append(_Element(feature, zero, one, 1.0 if depth == 0 else 0.0))
    for i in range(depth - 1, -1, -1):
        path[i + 1].weight += one * path[i].weight * (i + 1) / (depth + 1)
        path[i].weight = zero * path[i].weight * (depth - i) / (depth + 1)


def _unwind(path: list[_Element], index: int) -> None:
    depth = len(path) - 1
    one, zero = path[index].one, path[index].zero
    following = path[depth].weight
    for i in range(depth - 1, -1, -1):
        if one != 0:
            kept = path[i].weight
            path[i].weight = following * (depth + 1) / ((i + 1) * one)
            following = kept - path[i].weight * zero * (depth - i) / (depth + 1)
        else:
            path[i].weight = path[i].weight * (depth + 1) / (zero * (depth - i))
    for i in range(index, depth):
        path[i].feature, path[i].zero, path[i].one = path[i + 1].feature, path[i + 1].zero, path[i + 1].one
    path.pop()


def _unwound_sum(path: list[_Element], index: int) -> float:
    depth = len(path) - 1
    one, zero = path[index].one, path[index].zero
    following = path[depth].weight
    total = 0.0
    for i in range(depth - 1, -1, -1):
        if one != 0:
            part = following * (depth + 1) / ((i + 1) * one)
            total += part
            following = path[i].weight - part * zero * ((depth - i) / (depth + 1))
        else:
            total += (path[i].weight / zero) / ((depth - i) / (depth + 1))
    return total


def _cover(tree: Tree) -> list[float]:
    return [s.hessian / 2.0**GRADIENT_BITS for s in tree.sums]


def _recurse(tree, cover, codes_row, phi, node, parent, zero, one, feature) -> None:
    path = [_Element(e.feature, e.zero, e.one, e.weight) for e in parent]
    _extend(path, zero, one, feature)
    split = tree.feature[node]
    if split < 0:
        for i in range(1, len(path)):
            phi[path[i].feature] += _unwound_sum(path, i) * (path[i].one - path[i].zero) * tree.value[node]
        return
    goes_left = codes_row[split] <= tree.bin[node]
    hot, cold = (tree.left[node], tree.right[node]) if goes_left else (tree.right[node], tree.left[node])
    incoming_zero, incoming_one = 1.0, 1.0
    seen = next((i for i, e in enumerate(path) if e.feature == split), None)
    if seen is not None:  # split on this feature before: undo it, to redo it here
        incoming_zero, incoming_one = path[seen].zero, path[seen].one
        _unwind(path, seen)
    share = cover[node]
    _recurse(tree, cover, codes_row, phi, hot, path, cover[hot] / share * incoming_zero, incoming_one, split)
    _recurse(tree, cover, codes_row, phi, cold, path, cover[cold] / share * incoming_zero, 0.0, split)


def expected_value(tree: Tree) -> float:
    """The tree's cover-weighted mean leaf value: its part of the bias."""
    cover = _cover(tree)
    return sum(v * cover[n] for n, (f, v) in enumerate(zip(tree.feature, tree.value)) if f < 0) / cover[0]


def contributions(ensemble: Ensemble, codes: np.ndarray) -> tuple[np.ndarray, float]:
    """Each row's contribution of each feature to its margin (rows x features), and the bias they all share:
    bias + a row's contributions = its margin."""
    phi = np.zeros(codes.shape, dtype=np.float64)
    bias = ensemble.baseline + sum(expected_value(tree) for tree in ensemble.trees)
    for tree in ensemble.trees:
        cover = _cover(tree)
        for row in range(codes.shape[0]):
            _recurse(tree, cover, codes[row], phi[row], 0, [], 1.0, 1.0, -1)
    return phi, bias
