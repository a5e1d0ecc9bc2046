"""Logistic regression as a state machine on verified totals: the pooled optimum, exactly, from sums alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from fl_runtime.learning import fixed_point
from fl_runtime.learning.baselines import exact_totals, federated, split_clients
from fl_runtime.learning.fixed_point import LIMIT, MAX_MEMBERS
from fl_runtime.learning.logistic import LOGISTIC_REGRESSION, pooled_newton_step
from fl_runtime.learning.machine import EVALUATE, MOMENTS, ROUND, Declined, Question
from fl_runtime.learning.model import Weights, fit_to_convergence, row_sums
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.task import ClientRows, TrainConfig, TrainingPlan


@pytest.fixture(scope="module")
def federation(cms):
    test, clients = partition(cms, PartitionSpec(3, "non-iid", "label", 1.0, test_fraction=0.2, seed=3))
    return test, split_clients(clients, seed=3)


def _pooled_rows(split, stats):
    prepared = [member.prepare(stats, seed=3) for member in split]
    weights = [p.train_weights for p in prepared]
    return (
        np.vstack([p.train_Z for p in prepared]),
        np.concatenate([p.train_y for p in prepared]),
        None if weights[0] is None else np.concatenate(weights),
    )


@pytest.mark.parametrize("method", ["none", "class-weights"])
def test_the_federation_reaches_scikit_learns_pooled_optimum_from_totals_alone(federation, method):
    test, split = federation
    plan = TrainingPlan(rounds=20, train=TrainConfig(class_balance=method), seed=3, tolerance=1e-10)
    outcome = federated(split, test, plan)
    Z, y, s = _pooled_rows(split, outcome.state.stats)
    reference = fit_to_convergence(Z, y, 1.0, "l2", s)
    np.testing.assert_allclose(outcome.state.weights.vector, reference.vector, rtol=0, atol=1e-8)


def test_with_missing_values_the_federation_equals_the_pooled_pipeline_that_imputes_the_mean_then_standardises(
    cms_missing,
):
    """An empty cell is imputed, on log1p values, with the federation's mean of the present values (a verified
    total); the federated model is then the pooled pipeline's that does the same, and the published Pipeline
    scores rows with missing values as every party's machine does."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    test, clients = partition(cms_missing, PartitionSpec(3, "non-iid", "label", 1.0, test_fraction=0.2, seed=3))
    split = split_clients(clients, seed=3)
    plan = TrainingPlan(rounds=20, seed=3, tolerance=1e-10)
    outcome = federated(split, test, plan)
    pooled_X = np.vstack([c.train.X for c in split])
    pooled_y = np.concatenate([c.train.y for c in split])
    preprocess = make_pipeline(
        FunctionTransformer(np.log1p), SimpleImputer(strategy="mean", keep_empty_features=True), StandardScaler()
    ).fit(pooled_X)
    reference = fit_to_convergence(preprocess.transform(pooled_X), pooled_y.astype(float), 1.0, "l2")
    np.testing.assert_allclose(outcome.state.weights.vector, reference.vector, rtol=0, atol=1e-8)
    model = LOGISTIC_REGRESSION.model(outcome.state, tuple(test.features), outcome.threshold)
    assert np.isnan(test.X).any()
    np.testing.assert_allclose(
        model.predict_proba(test.X)[:, 1], LOGISTIC_REGRESSION.probabilities(outcome.state, test.X), atol=1e-12
    )


def test_l1_takes_proximal_newton_steps_to_scikit_learns_l1_optimum(federation):
    test, split = federation
    plan = TrainingPlan(rounds=20, train=TrainConfig(C=0.05, penalty="l1"), seed=3, tolerance=1e-10)
    outcome = federated(split, test, plan)
    assert outcome.state.stop is not None and outcome.state.stop.converged and outcome.state.stop.round <= 12
    Z, y, _ = _pooled_rows(split, outcome.state.stats)
    reference = fit_to_convergence(Z, y, 0.05, "l1")
    np.testing.assert_allclose(outcome.state.weights.vector, reference.vector, atol=1e-6)
    zeros = int(np.sum(outcome.state.weights.coef == 0))
    assert 0 < zeros < len(test.features) and zeros == int(np.sum(np.abs(reference.coef) < 1e-9))


def test_one_pooled_step_is_scikit_learns_newton_cholesky_iteration_on_the_pooled_rows(federation):
    test, split = federation
    stats = federated(split, test, TrainingPlan(rounds=1, seed=3)).state.stats
    Z, y, _ = _pooled_rows(split, stats)
    start = Weights.zeros(Z.shape[1])
    sums = row_sums(Z, y, start)
    ours = pooled_newton_step(start, sums.examples, sums.gradient, sums.curvature, 1.0, "l2")
    sk = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=1, warm_start=True)
    sk.coef_, sk.intercept_ = start.coef.copy(), start.intercept.copy()
    with pytest.warns(Warning):  # one iteration does not converge, as intended
        sk.fit(Z, y)
    np.testing.assert_allclose(ours.vector, np.r_[sk.coef_[0], sk.intercept_], rtol=1e-6, atol=1e-8)


def test_fixed_point_totals_give_the_float_model_within_the_resolution(federation):
    """The same machine advanced by exact float sums and by decoded fixed-point totals lands on the same model."""
    test, split = federation
    plan = TrainingPlan(rounds=10, seed=3)
    rows = [ClientRows(member, 3) for member in split]
    exact = coded = LOGISTIC_REGRESSION.start(plan, tuple(test.features))
    while coded.question is not None and coded.question.kind != EVALUATE:
        floats = [LOGISTIC_REGRESSION.answer(exact, member, 1) for member in rows]
        sums = {key: sum(np.asarray(f[key], dtype=np.float64) for f in floats) for key in floats[0]}
        exact, _ = LOGISTIC_REGRESSION.advance(exact, sums, len(rows))
        coded, _ = LOGISTIC_REGRESSION.advance(coded, exact_totals(LOGISTIC_REGRESSION, coded, rows), len(rows))
        assert exact.question == coded.question
    np.testing.assert_allclose(coded.weights.vector, exact.weights.vector, rtol=0, atol=1e-9)  # measured 6e-11


def test_every_layout_fits_the_most_members_and_honest_cms_answers_fit_their_ranges(federation):
    test, split = federation
    rows = [ClientRows(member, 3) for member in split]
    for method in ("none", "class-weights", "smote"):
        state = LOGISTIC_REGRESSION.start(TrainingPlan(train=TrainConfig(class_balance=method), seed=3), test.features)
        while state.question is not None:
            layout = LOGISTIC_REGRESSION.layout(state)
            for quantity in layout.quantities:
                assert quantity.range * quantity.scale * MAX_MEMBERS <= LIMIT * MAX_MEMBERS < 2**63
            for member in rows:  # encode refuses any value out of range: none is
                layout.encode(LOGISTIC_REGRESSION.answer(state, member, 1))
            if state.question.kind == EVALUATE:
                break
            state, _ = LOGISTIC_REGRESSION.advance(state, exact_totals(LOGISTIC_REGRESSION, state, rows), len(rows))


def test_the_questions_run_moments_rounds_then_the_evaluation_of_the_model_the_rule_stopped_at(federation):
    test, split = federation
    rows = [ClientRows(member, 3) for member in split]
    state = LOGISTIC_REGRESSION.start(TrainingPlan(rounds=4, seed=3, tolerance=0.0), test.features)
    asked = []
    while state.question is not None:
        asked.append(state.question)
        state, findings = LOGISTIC_REGRESSION.advance(state, exact_totals(LOGISTIC_REGRESSION, state, rows), 3)
        assert findings.members == 3
    assert asked == [Question(MOMENTS, 0), *(Question(ROUND, r) for r in range(1, 5)), Question(EVALUATE, 4)]


def test_a_member_declines_to_answer_at_a_model_where_a_single_row_weighs_in(federation):
    test, split = federation
    rows = ClientRows(split[0], 3)
    state = LOGISTIC_REGRESSION.start(TrainingPlan(seed=3), test.features)
    state, _ = LOGISTIC_REGRESSION.advance(state, exact_totals(LOGISTIC_REGRESSION, state, [rows]), 1)
    prepared = rows.prepared(state.stats)
    direction = np.zeros(len(test.features))
    direction[np.argmax(prepared.train_Z.std(axis=0))] = 1.0
    projected = prepared.train_Z @ direction
    target = np.sort(projected)[len(projected) // 2]  # a sharp logit through one row along the direction
    sharp = Weights.from_vector(np.r_[1e4 * direction, -1e4 * target])
    assert row_sums(prepared.train_Z, prepared.train_y, sharp).weighing_in < 3
    crafted = type(state)(state.plan, state.features, state.question, state.stats, state.moment_rows, sharp)
    with pytest.raises(Declined, match=r"round 1: fewer of its rows than its min_rows \(10\) weigh in"):
        LOGISTIC_REGRESSION.answer(crafted, rows, 10)
    LOGISTIC_REGRESSION.answer(state, rows, 10)  # the honest model of the same round: answered


def test_a_member_with_fewer_training_rows_than_its_min_rows_declines_the_moments_query(federation):
    test, split = federation
    state = LOGISTIC_REGRESSION.start(TrainingPlan(seed=3), test.features)
    rows = ClientRows(split[0], 3)
    with pytest.raises(Declined, match=r"the moments query: its training part has fewer rows than its min_rows"):
        LOGISTIC_REGRESSION.answer(state, rows, split[0].train.n_rows + 1)


def test_a_moments_sum_beyond_its_range_is_refused_naming_the_feature(federation):
    """The range holds any member of up to 2^27 rows whose features are below 2^64; a larger sum is refused."""
    test, split = federation
    state = LOGISTIC_REGRESSION.start(TrainingPlan(seed=3), test.features)
    values = LOGISTIC_REGRESSION.answer(state, ClientRows(split[0], 3), 1)
    values["log1p-sum"][2] = 2.0**27 * math.log1p(2.0**64) * 4
    with pytest.raises(fixed_point.OutOfRange, match=rf"log1p-sum\[{test.features[2]}\] is outside"):
        LOGISTIC_REGRESSION.layout(state).encode(values)
