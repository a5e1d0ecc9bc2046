"""Class balance by evidence: smote, class-weights and none, each exact in federation; calibration; auto."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fl_runtime.errors import OptionsError
from fl_runtime.learning.balance import CLASS_WEIGHTS, METHODS, NONE, SMOTE, class_weights, example_weights
from fl_runtime.learning.baselines import federated, split_clients
from fl_runtime.learning.compare import compare
from fl_runtime.learning.metrics import ScoreHistogram
from fl_runtime.learning.model import Weights, fit_to_convergence, row_sums
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.stats import FeatureMoments, GlobalStats
from fl_runtime.learning.task import ClientData, TrainConfig, TrainingPlan

C = 0.5


@pytest.fixture(scope="module")
def federation(synthetic):
    """Three clients skewed in size and fraud rate at once, split into training and validation parts."""
    test, clients = partition(synthetic, PartitionSpec(3, "non-iid", "size-label", 1.0, test_fraction=0.2, seed=2))
    return test, clients, split_clients(clients, seed=0)


def _prepared(split, method):
    stats = GlobalStats.from_moments([c.moments() for c in split], method)
    return stats, [c.prepare(stats, seed=0) for c in split]


def _pooled(prepared):
    weights = [p.train_weights for p in prepared]
    return (
        np.vstack([p.train_Z for p in prepared]),
        np.concatenate([p.train_y for p in prepared]),
        None if weights[0] is None else np.concatenate(weights),
    )


def test_class_weights_come_from_the_federations_global_counts(federation):
    _, _, split = federation
    stats, prepared = _prepared(split, CLASS_WEIGHTS)
    rows = sum(c.train.n_rows for c in split)
    positives = sum(c.train.n_positive for c in split)
    negative, positive = class_weights(stats.negatives_per_positive)
    assert negative == pytest.approx(rows / (2 * (rows - positives)))
    assert positive == pytest.approx(rows / (2 * positives))
    # the same weights on every client, whatever its own fraud rate; they average to 1 over the pooled rows
    for part in prepared:
        np.testing.assert_allclose(part.train_weights, example_weights(part.train_y, stats.negatives_per_positive))
    assert np.concatenate([p.train_weights for p in prepared]).mean() == pytest.approx(1.0)
    assert sum(p.n_examples for p in prepared) == rows  # no rows added


@pytest.mark.parametrize("method", METHODS)
def test_with_each_method_the_members_row_sums_add_up_to_the_pooled_rows_sums(federation, method):
    _, _, split = federation
    _, prepared = _prepared(split, method)
    Z, y, s = _pooled(prepared)
    rng = np.random.default_rng(0)
    for _ in range(3):
        weights = Weights.from_vector(rng.normal(scale=0.5, size=Z.shape[1] + 1))
        members = [p.sums(weights) for p in prepared]
        pooled = row_sums(Z, y, weights, s)
        assert sum(m.examples for m in members) == pooled.examples
        assert sum(m.loss for m in members) == pytest.approx(pooled.loss)
        np.testing.assert_allclose(sum(m.gradient for m in members), pooled.gradient, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(sum(m.curvature for m in members), pooled.curvature, rtol=1e-12, atol=1e-9)


def test_federated_class_weights_reach_scikit_learns_balanced_fit_on_the_pooled_rows(federation):
    test, _, split = federation
    plan = TrainingPlan(rounds=20, train=TrainConfig(C=C, class_balance=CLASS_WEIGHTS), tolerance=1e-9)
    outcome = federated(split, test, plan)
    stats = outcome.state.stats
    Z = np.vstack([stats.standardise(c.train.X) for c in split])
    y = np.concatenate([c.train.y for c in split])
    reference = LogisticRegression(C=C, class_weight="balanced", tol=1e-10, max_iter=10_000).fit(Z, y)
    np.testing.assert_allclose(outcome.state.weights.coef, reference.coef_, atol=1e-5)
    np.testing.assert_allclose(outcome.state.weights.intercept, reference.intercept_, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_probabilities_are_calibrated_mean_predicted_probability_is_the_base_rate(cms, method):
    _, clients = partition(cms, PartitionSpec(3, "non-iid", "size-label", 1.0, seed=0))
    split = split_clients(clients, seed=0)
    stats, prepared = _prepared(split, method)
    Z_pooled, y_pooled, s_pooled = _pooled(prepared)
    weights = fit_to_convergence(Z_pooled, y_pooled, 1.0, "l2", s_pooled)
    Z = np.vstack([stats.standardise(c.train.X) for c in split])
    y = np.concatenate([c.train.y for c in split])
    mean = weights.probabilities(Z, stats.prior_logit).mean()
    assert mean == pytest.approx(y.mean(), abs=0.015), f"{method}: mean probability {mean:.4f}, rate {y.mean():.4f}"
    if method != NONE:  # trained at balance: without the shift it would be far off
        assert weights.probabilities(Z, 0.0).mean() > 2 * y.mean()


def test_plain_training_needs_no_shift_and_is_exactly_calibrated_on_its_training_rows(federation):
    _, _, split = federation
    stats, prepared = _prepared(split, NONE)
    Z, y, _ = _pooled(prepared)
    weights = fit_to_convergence(Z, y, 1.0, "l2")  # the intercept is not penalised
    assert stats.prior_logit == 0.0
    assert weights.probabilities(Z, stats.prior_logit).mean() == pytest.approx(y.mean(), abs=1e-4)


def test_auto_chooses_by_validation_never_by_the_test_set(federation):
    test, clients, _ = federation
    plan = TrainingPlan(seed=0)
    chosen = compare(test, clients, ["a", "b", "c"], plan)
    flipped = dataclasses.replace(test, y=1 - test.y)
    again = compare(flipped, clients, ["a", "b", "c"], plan)
    assert again.chosen == chosen.chosen
    assert again.validation_pr_auc == chosen.validation_pr_auc
    assert chosen.validation_pr_auc[chosen.chosen] == max(chosen.validation_pr_auc.values())
    assert chosen.federated.name == f"federated {chosen.chosen}"
    # the test metrics did change: the test set is read for the report, only not for the choice
    assert again.federated.test["roc-auc"] == pytest.approx(1 - chosen.federated.test["roc-auc"])


def test_an_explicit_method_is_taken_as_asked(federation):
    test, clients, _ = federation
    comparison = compare(test, clients, ["a", "b", "c"], TrainingPlan(seed=0), SMOTE)
    assert comparison.chosen == SMOTE and comparison.federated.name == "federated smote"
    assert {o.name for o in comparison.references} == {
        "centralised plain",
        "centralised class-weights",
        "centralised smote",
    }


def test_histogram_pr_auc_is_average_precision_of_the_binned_scores():
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.1).astype(int)
    p = np.clip(rng.random(2000) * 0.6 + 0.3 * y, 0, 0.999)
    binned = np.floor(p * 200) / 200
    assert ScoreHistogram.of(y, p).pr_auc() == pytest.approx(average_precision_score(y, binned))
    assert np.isnan(ScoreHistogram.of(np.zeros(5, dtype=int), np.full(5, 0.5)).pr_auc())


def test_an_unknown_class_balance_is_refused_naming_the_setting():
    with pytest.raises(OptionsError, match="class-balance must be one of smote, class-weights, none, got 'auto'"):
        TrainConfig(class_balance="auto")


def test_statistics_travel_with_their_method(federation):
    _, _, split = federation
    moments = [FeatureMoments.of(c.train) for c in split]
    assert GlobalStats.from_moments(moments, SMOTE).class_balance == SMOTE
    assert (
        GlobalStats.from_moments(moments, CLASS_WEIGHTS).prior_logit
        == GlobalStats.from_moments(moments, SMOTE).prior_logit
    )
    assert isinstance(split[0], ClientData)
