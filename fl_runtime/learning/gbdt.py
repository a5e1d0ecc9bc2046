"""Gradient-boosted trees as a state machine (``machine``) driven by verified totals: the ``gbdt`` family.

1. ``bins`` 0: every member's training rows and positives, and its rows per cell of the fixed coarse grid of each
   feature (``binning``). From the totals every party derives the fine grid of each feature.
2. ``bins`` 1: rows per cell of the fine grids. From the totals every party derives the global bin edges
   (``binning.edges_from_counts``) and the starting margin (the pooled log-odds).
3. ``level`` r: the integer gradient, hessian and count histograms (``trees.histograms``) of the nodes the state
   asks about, over the member's training rows at the ensemble so far: a tree's root, then at each level the
   smaller child of every split (the larger is its parent minus it). From the totals every party picks the
   level's splits (``trees.best_split``: bit-identical everywhere). When a tree has no more open nodes, its leaf
   values follow from the sums its last splits carried, and the next question is the next tree's root, whose
   answer also carries the summed log loss of the ensemble so far on the members' validation rows: boosting
   stops after ``patience`` trees without a better one, or at ``settings.trees``, keeping the best ensemble.
4. ``evaluate``: every member's validation score histograms and log loss of the final ensemble.

Every quantity is a sum of whole numbers (counts; gradients and hessians in units of 2^-GRADIENT_BITS), so the
totals, and the trees, are those of the pooled rows (``trees.boost`` on the same codes), bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from fl_runtime.learning import binning, trees
from fl_runtime.learning.fixed_point import Layout, Quantity, scale_bits_for
from fl_runtime.learning.machine import BINS, EVALUATE, LEVEL, Declined, Findings, Question, asked
from fl_runtime.learning.metrics import HISTOGRAM_BINS, ScoreHistogram, summed_log_loss, validation_findings
from fl_runtime.learning.model import MAX_ROW_LOSS
from fl_runtime.learning.task import GBDT, ClientRows, TrainingPlan
from fl_runtime.learning.tree_model import BoostedTreesModel
from fl_runtime.learning.trees import GRADIENT_BITS, Ensemble, Tree, TreeSettings

MAX_MEMBER_ROWS = 2**27
PATIENCE = 25  # trees without a better pooled validation loss before boosting stops (10 stopped too early: docs)


@dataclass(frozen=True)
class Growing:
    """The tree being grown: its nodes so far, the histograms of the nodes split next (node -> histogram), the
    nodes whose histograms the members are asked for now, and each larger child with its parent and sibling."""

    tree: Tree
    known: dict[int, np.ndarray]
    asked: tuple[int, ...]
    larger: dict[int, tuple[int, int]]  # larger child -> (parent, smaller sibling)
    cells: dict[int, np.ndarray]  # asked node (below the root) -> the (features, BINS) cells it is described in


@dataclass(frozen=True)
class GbdtState:
    plan: TrainingPlan
    features: tuple[str, ...]
    question: Question | None
    settings: TreeSettings
    rows: int = 0
    positives: int = 0
    fine: tuple[np.ndarray, ...] = ()
    edges: tuple[np.ndarray, ...] = ()
    missing_kept: tuple[bool, ...] = ()  # per feature: its missing values a bin of their own (enough of them)
    ensemble: Ensemble | None = None
    growing: Growing | None = None
    best: tuple[float, int] = (math.inf, 0)  # the lowest validation loss seen, and with how many trees


class GradientBoostedTreesFamily:
    """The boosting state machine (module docstring)."""

    name = GBDT
    version_name = "trees"
    short_name = "gbdt"
    node_floors: tuple[str, ...] = ("min-rows-leaf", "cell-rows")

    def start(self, plan: TrainingPlan, features: tuple[str, ...]) -> GbdtState:
        return GbdtState(plan, tuple(features), Question(BINS, 0), plan.trees)

    # --- fixed point -------------------------------------------------------------------------------------
    def layout(self, state: GbdtState) -> Layout:
        question = asked(state)
        if question.kind == BINS:
            grids = _grids(state)
            cells = Quantity("cells", sum(len(g) + 1 for g in grids), 0)
            return Layout(
                (Quantity("rows", 1, 0), Quantity("positives", 1, 0), cells) if question.round == 0 else (cells,)
            )
        validation = _validation_quantities(state)
        if question.kind == EVALUATE:
            return Layout(
                (
                    Quantity("histogram-positive", HISTOGRAM_BINS, 0),
                    Quantity("histogram-negative", HISTOGRAM_BINS, 0),
                    *validation,
                )
            )
        values = sum(int(_cells_of(state, node).sum()) for node in _growing(state).asked)
        histograms = (
            Quantity("gradient", values, GRADIENT_BITS),
            Quantity("hessian", values, GRADIENT_BITS),
            Quantity("count", values, 0),
        )
        return Layout((*histograms, *validation) if _is_root(state) else histograms)

    # --- a member's answer -------------------------------------------------------------------------------
    def answer(self, state: GbdtState, rows: ClientRows, min_rows: int) -> dict[str, np.ndarray]:
        question = asked(state)
        train = rows.data.train
        if train.n_rows < min_rows:
            raise Declined(f"{question.label}: its training part has fewer rows than its min_rows ({min_rows})")
        if question.kind == BINS:
            cells = np.concatenate(binning.counts(train.X, _grids(state)))
            if question.round == 1:
                return {"cells": cells}
            return {"rows": np.array([train.n_rows]), "positives": np.array([int(train.y.sum())]), "cells": cells}
        if question.kind == EVALUATE:
            return _validation_answer(state, rows, min_rows, with_histogram=True)
        codes, margin = _codes_and_margin(state, rows, "train")
        gradient, hessian = trees.fixed_gradients(margin, train.y.astype(np.float64))
        growing = _growing(state)
        node_of_row = growing.tree.leaves_of(codes)
        parts = []
        for node in growing.asked:  # each node's histograms, in its cells: (3, values of the node)
            histogram = trees.histograms(codes, gradient, hessian, np.flatnonzero(node_of_row == node))
            cells = _cells_of(state, node)
            parts.append((histogram if node == 0 else trees.regroup(histogram, cells))[:, cells])
        stacked = np.concatenate(parts, axis=1)
        scale = 2.0**-GRADIENT_BITS
        found = {"gradient": stacked[0] * scale, "hessian": stacked[1] * scale, "count": stacked[2]}
        if not _is_root(state):
            return found
        return {**found, **_validation_answer(state, rows, min_rows, with_histogram=False)}

    # --- every party's step ------------------------------------------------------------------------------
    def advance(self, state: GbdtState, totals: dict[str, np.ndarray], members: int) -> tuple[GbdtState, Findings]:
        question = asked(state)
        if question.kind == BINS:
            return _advance_bins(state, totals, members)
        validation = validation_findings(totals)
        if question.kind == EVALUATE:
            final = len(_ensemble(state).trees)
            return replace(state, question=None), Findings(question, members, validation, validated=final)
        return _advance_level(state, totals, members, validation)

    def probabilities(self, state: GbdtState, X: np.ndarray) -> np.ndarray:
        return trees.sigmoid(_ensemble(state).margin(binning.bin_codes(X, state.edges, state.missing_kept)))

    def model(self, state: GbdtState, features: tuple[str, ...], threshold: float | None) -> BoostedTreesModel:
        return BoostedTreesModel(tuple(features), state.edges, _ensemble(state), threshold, state.missing_kept)

    def same_members(self, state: GbdtState) -> bool:
        """Every question after the first: a level's larger children are its parents' histograms minus the
        smaller ones', and the counts of the bins and of every root do not depend on the model, so two such totals
        over members with one left out would be that member's own counts. A member lost after the first step
        ends the run; only the first step may be re-run by the survivors (its first attempt never added up)."""
        question = state.question
        return question is not None and question != Question(BINS, 0)

    def most_steps(self, plan: TrainingPlan) -> int:
        return 2 + plan.trees.trees * plan.trees.depth + 2  # the bins, every level, the stopping root, evaluation

    def describe(self, plan: TrainingPlan) -> str:
        grown = plan.trees
        return (
            f"histogram gradient-boosted trees on the logistic loss: at most {grown.trees} trees of depth "
            f"{grown.depth}, learning rate {grown.learning_rate:g}, L2 {grown.l2:g} on the leaves, at least "
            f"{grown.min_rows_leaf} rows of the federation and {grown.min_hessian:g} hessian in every node; up to 255 "
            "bins per feature agreed from the members' pooled counts; each level's splits chosen by every member "
            "and the server from the level's verified histograms; boosting stops after "
            f"{PATIENCE} trees without a better pooled validation log loss, keeping the best. Each member sent its row "
            "counts per cell of fixed grids (twice), the gradient, hessian and count histograms of the nodes of "
            "every level, its validation log loss at each tree's root, and the final model's validation histograms."
        )


def _advance_bins(state: GbdtState, totals: dict[str, np.ndarray], members: int) -> tuple[GbdtState, Findings]:
    question = asked(state)
    grids = _grids(state)
    cells = np.split(np.rint(totals["cells"]).astype(np.int64), np.cumsum([len(g) + 1 for g in grids])[:-1])
    floor = state.settings.min_rows_leaf
    if question.round == 0:
        rows, positives = int(totals["rows"][0]), int(totals["positives"][0])
        fine = tuple(binning.fine_grid(c, rows, floor) for c in cells)
        # a feature's missing values are a bin of their own only if they are at least the floor of a node's rows
        kept = tuple(rows - int(c.sum()) >= floor for c in cells)
        following = replace(
            state, question=Question(BINS, 1), rows=rows, positives=positives, fine=fine, missing_kept=kept
        )
        return following, Findings(question, members, {"rows": rows, "positives": positives})
    edges = tuple(binning.edges_from_counts(g, c, floor) for g, c in zip(grids, cells))
    ensemble = Ensemble(trees.baseline(state.rows, state.positives))
    following = replace(state, question=Question(LEVEL, 1), edges=edges, ensemble=ensemble, growing=_new_tree())
    return following, Findings(question, members, {"edges": [len(e) for e in edges]})


def _advance_level(state, totals, members, validation) -> tuple[GbdtState, Findings]:
    question, growing, settings = asked(state), _growing(state), state.settings
    ensemble = _ensemble(state)
    best = state.best
    validated = None
    if _is_root(state):  # the validation loss of the ensemble so far, before this tree
        count = len(ensemble.trees)
        validated = count or None  # the baseline alone is no version
        loss = validation["validation-log-loss"]
        if loss < best[0]:
            best = (loss, count)
        if count - best[1] >= PATIENCE or count == settings.trees:
            kept = Ensemble(ensemble.baseline, ensemble.trees[: best[1]])
            done = replace(state, question=Question(EVALUATE, question.round), ensemble=kept, growing=None, best=best)
            stop = _stop_record(count, best, settings.trees)
            return done, Findings(question, members, {"trees": best[1], **validation}, validated=validated, stop=stop)
    level = _level_histograms(state, totals)
    tree = _copy(growing.tree)
    known: dict[int, np.ndarray] = {}
    to_ask: list[int] = []
    larger: dict[int, tuple[int, int]] = {}
    cells: dict[int, np.ndarray] = {}
    for node in sorted(level):
        tree.sums[node] = trees.node_sums(level[node])
        split = trees.best_split(level[node], settings)
        if split is None:
            continue
        left, right = tree.split(node, split)
        if tree.depth_of(left) == settings.depth:
            continue
        small, big = (left, right) if split.left.rows <= split.right.rows else (right, left)
        to_ask.append(small)
        larger[big] = (node, small)
        known[node] = level[node]
        cells[small] = trees.child_cells(level[node], min(split.left.rows, split.right.rows), settings)
    found = {"trees": len(ensemble.trees), **validation}
    if to_ask:
        following = Growing(tree, known, tuple(to_ask), larger, cells)
        return replace(state, question=Question(LEVEL, question.round + 1), growing=following, best=best), Findings(
            question, members, found, validated=validated
        )
    tree.set_leaf_values(settings)
    grown = Ensemble(ensemble.baseline, [*ensemble.trees, tree])
    following_state = replace(
        state, question=Question(LEVEL, question.round + 1), ensemble=grown, growing=_new_tree(), best=best
    )
    return following_state, Findings(question, members, found, made=len(grown.trees), validated=validated)


def _stop_record(grown: int, best: tuple[float, int], most: int) -> dict:
    if grown == most:
        why = f"at the most trees ({most}, --trees)"
    else:
        why = f"after {grown} trees: the last {grown - best[1]} gave no lower pooled validation log loss"
    return {
        "trees": best[1],
        "grown": grown,
        "validation-log-loss": best[0],
        "reason": f"stopped boosting {why}; kept the best {best[1]} trees (pooled validation log loss {best[0]:.4f})",
    }


def _level_histograms(state: GbdtState, totals: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Every node of this level's histogram: the asked ones from the totals, their larger siblings by subtraction."""
    growing = _growing(state)
    scale = 2.0**GRADIENT_BITS
    blocks = np.stack(
        [
            np.rint(totals[name] * (scale if name != "count" else 1.0)).astype(np.int64)
            for name in ("gradient", "hessian", "count")
        ]
    )
    level: dict[int, np.ndarray] = {}
    start = 0
    for node in growing.asked:  # each node's values, in its cells, in the order the layout lists them
        cells = _cells_of(state, node)
        dense = np.zeros((3, len(state.features), trees.BINS), dtype=np.int64)
        dense[:, cells] = blocks[:, start : start + int(cells.sum())]
        start += int(cells.sum())
        level[node] = dense
    for big, (parent, small) in growing.larger.items():  # in the cells of its smaller sibling
        level[big] = trees.regroup(growing.known[parent], growing.cells[small]) - level[small]
    return level


def _new_tree() -> Growing:
    tree = Tree()
    tree.add(trees.NodeSums(0, 0, 0))  # the root's sums arrive with its histograms
    return Growing(tree, {}, (0,), {}, {})


def _copy(tree: Tree) -> Tree:
    return Tree(
        list(tree.feature),
        list(tree.bin),
        list(tree.left),
        list(tree.right),
        list(tree.value),
        list(tree.sums),
        list(tree.parent),
        list(tree.default_left),
    )


def _is_root(state: GbdtState) -> bool:
    return _growing(state).asked == (0,)


def _grids(state: GbdtState) -> tuple[np.ndarray, ...]:
    return state.fine if state.fine else (binning.coarse_grid(),) * len(state.features)


def _cells_of(state: GbdtState, node: int) -> np.ndarray:
    """The (features, BINS) cells an asked node's histograms are answered in: the root in every bin of the
    agreed edges and the missing-value bin, a node below it in the cells its split chose (``trees.child_cells``)."""
    return _used(state) if node == 0 else _growing(state).cells[node]


def _used(state: GbdtState) -> np.ndarray:
    """(features, BINS) mask of the bins that exist: feature j has len(edges[j]) + 1, and the missing-value bin."""
    used = np.zeros((len(state.features), trees.BINS), dtype=bool)
    for j, feature_edges in enumerate(state.edges):
        used[j, : len(feature_edges) + 1] = True
    used[:, trees.MISSING] = state.missing_kept
    return used


def _codes_and_margin(state: GbdtState, rows: ClientRows, part: str) -> tuple[np.ndarray, np.ndarray]:
    """A part's bin codes (made once per run) and its margins at the ensemble so far: kept between questions and
    brought up to date by the trees added since (trees are only appended; the final ensemble may keep fewer)."""
    if rows.cache.get(GBDT, (None,))[0] is not state.edges:  # a new run: nothing of the last one holds
        rows.cache[GBDT] = (state.edges, {})
    kept = rows.cache[GBDT][1]
    ensemble = _ensemble(state)
    if part not in kept:
        data = rows.data.train if part == "train" else rows.data.validation
        codes = binning.bin_codes(data.X, state.edges, state.missing_kept)
        kept[part] = (codes, 0, np.full(codes.shape[0], ensemble.baseline))
    codes, counted, margin = kept[part]
    if counted > len(ensemble.trees):
        counted, margin = 0, np.full(codes.shape[0], ensemble.baseline)
    for tree in ensemble.trees[counted:]:  # added tree by tree, as Ensemble.margin adds them
        margin = margin + tree.predict(codes)
    kept[part] = (codes, len(ensemble.trees), margin)
    return codes, margin


def _validation_quantities(state: GbdtState) -> tuple[Quantity, ...]:
    return (
        Quantity("validation-loss", 1, scale_bits_for(2.0 * MAX_MEMBER_ROWS * MAX_ROW_LOSS)),
        Quantity("validation-rows", 1, 0),
    )


def _validation_answer(
    state: GbdtState, rows: ClientRows, min_rows: int, with_histogram: bool
) -> dict[str, np.ndarray]:
    """The summed log loss and rows of the member's validation part at the ensemble so far (a root), and its score
    histograms too for the evaluation."""
    validation = rows.data.validation
    if validation.n_rows < min_rows:
        raise Declined(f"{asked(state).label}: its validation part has fewer rows than its min_rows ({min_rows})")
    p = trees.sigmoid(_codes_and_margin(state, rows, "validation")[1])
    found = {
        "validation-loss": np.array([summed_log_loss(validation.y, p)]),
        "validation-rows": np.array([validation.n_rows]),
    }
    if with_histogram:
        histogram = ScoreHistogram.of(validation.y, np.clip(p, 1e-15, 1 - 1e-15))
        found |= {"histogram-positive": histogram.positive, "histogram-negative": histogram.negative}
    return found


def _growing(state: GbdtState) -> Growing:
    if state.growing is None:
        raise ValueError("no tree is growing")
    return state.growing


def _ensemble(state: GbdtState) -> Ensemble:
    if state.ensemble is None:
        raise ValueError("no ensemble before the bin edges")
    return state.ensemble


GRADIENT_BOOSTED_TREES = GradientBoostedTreesFamily()
