"""The gbdt state machine, replayed in process with fixed-point totals: the federation's trees are the pooled
rows' trees bit for bit, whatever the members."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fl_runtime.learning import binning
from fl_runtime.learning.baselines import exact_totals, split_clients
from fl_runtime.learning.data import LabelledData
from fl_runtime.learning.gbdt import GRADIENT_BOOSTED_TREES, PATIENCE
from fl_runtime.learning.machine import BINS, EVALUATE, LEVEL, Question
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.task import ClientRows, TrainingPlan
from fl_runtime.learning.trees import TreeSettings, boost

SETTINGS = TreeSettings(trees=8, depth=3, min_rows_leaf=20)


def _federate(settings, clients, features):
    family = GRADIENT_BOOSTED_TREES
    rows = [ClientRows(client, 0) for client in clients]
    state = family.start(TrainingPlan(family="gbdt", trees=settings), features)
    asked, found = [], []
    while state.question is not None:
        asked.append(state.question)
        state, findings = family.advance(state, exact_totals(family, state, rows), len(rows))
        found.append(findings)
    return state, asked, found


@pytest.fixture(scope="module")
def members(cms):
    test, parts = partition(cms, PartitionSpec(3, "non-iid", skew="label", seed=1))
    return test, split_clients(parts, seed=0)


def test_the_federations_trees_are_the_pooled_rows_trees_bit_for_bit(members):
    test, clients = members
    final, asked, found = _federate(SETTINGS, clients, tuple(test.features))
    train = [c.train for c in clients]
    edges = binning.agree_edges([t.X for t in train], SETTINGS.min_rows_leaf)
    assert all(np.array_equal(a, b) for a, b in zip(final.edges, edges))
    pooled = boost(
        binning.bin_codes(np.vstack([t.X for t in train]), edges),
        np.concatenate([t.y for t in train]).astype(np.float64),
        replace(SETTINGS, trees=len(final.ensemble.trees)),
    )
    assert len(final.ensemble.trees) == SETTINGS.trees
    assert final.ensemble.baseline == pooled.baseline
    for ours, theirs in zip(final.ensemble.trees, pooled.trees):
        assert (ours.feature, ours.bin, ours.value) == (theirs.feature, theirs.bin, theirs.value)
    codes = binning.bin_codes(test.X, edges)
    assert np.array_equal(final.ensemble.margin(codes), pooled.margin(codes))
    # two bin questions, then depth exchanges per tree (root, level 1, level 2), the stopping root, the evaluation
    assert asked[:2] == [Question(BINS, 0), Question(BINS, 1)] and asked[-1].kind == EVALUATE
    assert sum(q.kind == LEVEL for q in asked) == SETTINGS.trees * SETTINGS.depth + 1
    assert found[-1].values["histogram"].positive.sum() == sum(int(c.validation.y.sum()) for c in clients)


def test_with_missing_values_the_federations_trees_are_the_pooled_rows_trees_bit_for_bit(cms_missing):
    test, parts = partition(cms_missing, PartitionSpec(3, "non-iid", skew="label", seed=1))
    clients = split_clients(parts, seed=0)
    settings = replace(SETTINGS, trees=4)
    final, _, _ = _federate(settings, clients, tuple(test.features))
    train = [c.train for c in clients]
    edges = binning.agree_edges([t.X for t in train], settings.min_rows_leaf)
    assert all(np.array_equal(a, b) for a, b in zip(final.edges, edges))
    codes = binning.bin_codes(np.vstack([t.X for t in train]), edges)
    pooled = boost(codes, np.concatenate([t.y for t in train]).astype(np.float64), settings)
    for ours, theirs in zip(final.ensemble.trees, pooled.trees):
        assert (ours.feature, ours.bin, ours.default_left, ours.value) == (
            theirs.feature, theirs.bin, theirs.default_left, theirs.value
        )  # fmt: skip
    assert any(any(tree.default_left) for tree in final.ensemble.trees)
    assert not np.isnan(GRADIENT_BOOSTED_TREES.probabilities(final, test.X)).any()


def test_the_trees_do_not_depend_on_how_the_rows_are_split_among_members(members):
    test, clients = members
    settings = replace(SETTINGS, trees=3)
    three, _, _ = _federate(settings, clients, tuple(test.features))
    train = [c.train for c in clients]
    pooled = LabelledData(train[0].features, np.vstack([t.X for t in train]), np.concatenate([t.y for t in train]), "")
    order = np.random.default_rng(3).permutation(pooled.n_rows)
    regrouped = [
        replace(clients[0], train=pooled.subset(np.sort(part)), validation=clients[i].validation)
        for i, part in enumerate(np.array_split(order, 3))
    ]
    other, _, _ = _federate(settings, regrouped, tuple(test.features))
    for ours, theirs in zip(three.ensemble.trees, other.ensemble.trees):
        assert (ours.feature, ours.bin, ours.value) == (theirs.feature, theirs.bin, theirs.value)


def test_boosting_stops_after_patience_trees_without_a_better_validation_loss_and_keeps_the_best(members):
    test, clients = members
    settings = TreeSettings(trees=60, depth=4, learning_rate=1.0, min_rows_leaf=10)
    final, _, found = _federate(settings, clients, tuple(test.features))
    losses = [f.values["validation-log-loss"] for f in found if "validation-log-loss" in f.values][:-1]  # roots
    best = int(np.argmin(losses))
    assert len(losses) == best + PATIENCE + 1 < 60  # stopped early, PATIENCE trees after the best
    assert len(final.ensemble.trees) == best


def test_a_member_declines_a_root_question_over_fewer_validation_rows_than_its_min_rows(members):
    from fl_runtime.learning.machine import Declined

    test, clients = members
    family = GRADIENT_BOOSTED_TREES
    rows = [ClientRows(client, 0) for client in clients]
    state = family.start(TrainingPlan(family="gbdt", trees=SETTINGS), tuple(test.features))
    while state.question.kind == BINS:
        state, _ = family.advance(state, exact_totals(family, state, rows), len(rows))
    small = min(rows, key=lambda r: r.data.validation.n_rows)
    floor = small.data.validation.n_rows + 1
    assert small.data.train.n_rows >= floor  # the training part alone would pass
    with pytest.raises(
        Declined, match=rf"tree exchange 1: its validation part has fewer rows than its min_rows \({floor}\)"
    ):
        family.answer(state, small, floor)


def test_a_features_few_missing_values_get_no_bin_of_their_own_and_count_as_its_lowest(cms, tmp_path):
    """A missing-value cell of a few rows would describe those rows alone (their label, through the gradient):
    a feature with fewer missing values in the federation than min-rows-leaf takes them as its lowest value
    (bin 0) everywhere: in the federation, the pooled reference, the saved model and its XGBoost export."""
    import json

    import xgboost

    from fl_runtime.learning.tree_model import BoostedTreesModel

    X = cms.X.copy()
    few, many = cms.features.index("bene_count_sum"), cms.features.index("total_drug_cost_sum")
    X[np.arange(0, 50, 10), few] = np.nan  # 5 missing values in the whole federation
    X[np.random.default_rng(4).random(len(X)) < 0.2, many] = np.nan
    data = LabelledData(cms.features, X, cms.y, "few-missing")
    test, parts = partition(data, PartitionSpec(3, "non-iid", skew="label", seed=1))
    clients = split_clients(parts, seed=0)
    settings = replace(SETTINGS, trees=4)
    final, _, _ = _federate(settings, clients, tuple(test.features))
    assert not final.missing_kept[few] and final.missing_kept[many]
    train = np.vstack([c.train.X for c in clients])
    codes = binning.bin_codes(train, final.edges, final.missing_kept)
    assert (codes[np.isnan(train[:, few]), few] == 0).all()
    pooled = boost(codes, np.concatenate([c.train.y for c in clients]).astype(np.float64), settings)
    for ours, theirs in zip(final.ensemble.trees, pooled.trees):
        assert (ours.feature, ours.bin, ours.default_left, ours.value) == (
            theirs.feature, theirs.bin, theirs.default_left, theirs.value
        )  # fmt: skip
    model = GRADIENT_BOOSTED_TREES.model(final, tuple(test.features), 0.5)
    assert isinstance(model, BoostedTreesModel)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(model.xgboost_json()))
    named = xgboost.DMatrix(train, feature_names=list(test.features))
    theirs = xgboost.Booster(model_file=str(path)).predict(named, output_margin=True)
    assert np.abs(theirs - model.decision_function(train)).max() < 1e-5
