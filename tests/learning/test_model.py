"""Local updates, FedAvg with shared curvature, SMOTE, and the saved scikit-learn Pipeline."""

from __future__ import annotations

import io
import warnings

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from fl_runtime.learning.balance import SMOTE
from fl_runtime.learning.model import (
    LocalObjective,
    Weights,
    average,
    build_pipeline,
    fit_to_convergence,
    l1_update,
    newton_step,
    oversample,
)
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.stats import FeatureMoments, GlobalStats


@pytest.fixture(scope="module")
def skewed(synthetic):
    """Three clients with very different fraud rates, standardised and oversampled like the clients do."""
    _, clients = partition(synthetic, PartitionSpec(3, "non-iid", "label", 0.5, test_fraction=0.1, seed=4))
    stats = GlobalStats.from_moments([FeatureMoments.of(c) for c in clients], SMOTE)
    parts = [oversample(stats.standardise(c.X), c.y, stats.negatives_per_positive, seed=0) for c in clients]
    return stats, [(Z, y.astype(float)) for Z, y in parts]


def _objectives(stats, parts, C):
    return [LocalObjective(Z, y, ridge=1.0 / (C * stats.pooled_examples)) for Z, y in parts]


def _fedavg(objectives, rounds, shared):
    weights, curvature = Weights.zeros(objectives[0].Z.shape[1]), None
    for _ in range(rounds):
        steps = [
            (newton_step(o, weights, curvature if curvature is not None else o.curvature(weights)).vector, o.n_examples)
            for o in objectives
        ]
        if shared:
            curvature = average([(o.curvature(weights), o.n_examples) for o in objectives])
        weights = Weights.from_vector(average(steps))
    return weights


def test_fedavg_with_shared_curvature_reaches_scikit_learns_pooled_optimum(skewed):
    stats, parts = skewed
    Z = np.vstack([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    assert len(y) == stats.pooled_examples
    pooled = fit_to_convergence(Z, y, C=1.0, penalty="l2")
    federated = _fedavg(_objectives(stats, parts, 1.0), rounds=12, shared=True)
    np.testing.assert_allclose(federated.vector, pooled.vector, atol=1e-4)


def test_local_curvature_drifts_under_label_skew_shared_curvature_does_not(skewed):
    stats, parts = skewed
    pooled = fit_to_convergence(np.vstack([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), 1.0, "l2")
    shared = _fedavg(_objectives(stats, parts, 1.0), 12, shared=True)
    local = _fedavg(_objectives(stats, parts, 1.0), 12, shared=False)
    assert np.linalg.norm(local.vector - pooled.vector) > 100 * np.linalg.norm(shared.vector - pooled.vector)


def test_a_newton_step_with_own_curvature_equals_scikit_learns_newton_cholesky_iteration(skewed):
    stats, parts = skewed
    objective = _objectives(stats, parts[:1], 1.0)[0]
    start = Weights.zeros(objective.Z.shape[1])
    ours = newton_step(objective, start, objective.curvature(start))
    C = 1.0 / (objective.ridge * objective.n_examples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kwargs = (
            {"l1_ratio": 0.0} if LogisticRegression().get_params()["penalty"] == "deprecated" else {"penalty": "l2"}
        )
        sk = LogisticRegression(C=C, solver="newton-cholesky", max_iter=1, warm_start=True, **kwargs)
        sk.coef_, sk.intercept_ = start.coef.copy(), start.intercept.copy()
        sk.fit(objective.Z, objective.y)
    np.testing.assert_allclose(ours.vector, np.r_[sk.coef_[0], sk.intercept_], rtol=1e-6, atol=1e-8)


def test_gradient_and_curvature_agree_with_finite_differences(skewed):
    stats, parts = skewed
    objective = _objectives(stats, parts[:1], 0.5)[0]
    rng = np.random.default_rng(1)
    weights = Weights.from_vector(rng.normal(scale=0.3, size=objective.Z.shape[1] + 1))

    def value(theta):
        w = Weights.from_vector(theta)
        return objective.log_loss(w) + 0.5 * objective.ridge * np.sum(w.coef**2)

    direction = rng.normal(size=objective.Z.shape[1] + 1)
    eps = 1e-5
    numeric = (value(weights.vector + eps * direction) - value(weights.vector - eps * direction)) / (2 * eps)
    assert objective.gradient(weights) @ direction == pytest.approx(numeric, rel=1e-5)
    moved = Weights.from_vector(weights.vector + eps * direction)
    numeric_curvature = (objective.gradient(moved) - objective.gradient(weights)) / eps
    np.testing.assert_allclose(objective.curvature(weights) @ direction, numeric_curvature, rtol=1e-3, atol=1e-6)


def test_curvature_summed_over_blocks_of_rows_equals_the_whole_design_matrix_formula(skewed, monkeypatch):
    stats, parts = skewed
    objective = _objectives(stats, parts[:1], 1.0)[0]
    weights = Weights.from_vector(np.random.default_rng(2).normal(scale=0.3, size=objective.Z.shape[1] + 1))
    design = np.hstack([objective.Z, np.ones((objective.n_examples, 1))])
    p = 1 / (1 + np.exp(-(design @ weights.vector)))
    mask = np.r_[np.ones(objective.Z.shape[1]), 0.0]
    expected = (design.T * (p * (1 - p))) @ design / objective.n_examples + np.diag(objective.ridge * mask)
    monkeypatch.setattr(LocalObjective, "BLOCK_ROWS", 97)  # many blocks, the last one partial
    assert objective.n_examples % 97 != 0
    np.testing.assert_allclose(objective.curvature(weights), expected, rtol=1e-12, atol=1e-14)
    expected_gradient = design.T @ (p - objective.y) / objective.n_examples + objective.ridge * mask * weights.vector
    np.testing.assert_allclose(objective.gradient(weights), expected_gradient, rtol=1e-12, atol=1e-14)


def test_l1_update_zeroes_coefficients_and_keeps_shapes(skewed):
    stats, parts = skewed
    objective = LocalObjective(parts[0][0], parts[0][1], ridge=1.0 / (0.002 * stats.pooled_examples))
    updated = l1_update(objective, Weights.zeros(objective.Z.shape[1]), epochs=30)
    assert updated.coef.shape == (1, objective.Z.shape[1]) and updated.intercept.shape == (1,)
    assert 0 < np.sum(updated.coef == 0) < objective.Z.shape[1]


def test_smote_brings_a_client_to_the_federations_balance_and_keeps_its_real_rows(synthetic):
    Z = np.log1p(synthetic.X)
    Zs, ys = oversample(Z, synthetic.y, negatives_per_positive=6.0, seed=0)
    assert int(ys.sum()) == round(synthetic.n_positive * 6.0)
    assert int((ys == 0).sum()) == int((synthetic.y == 0).sum())
    np.testing.assert_array_equal(Zs[: len(Z)], Z)  # imblearn appends synthetic rows after the real ones


def test_weights_reject_wrong_shapes_and_non_finite_values():
    with pytest.raises(ValueError, match=r"coef \(1, n\) and intercept \(1,\)"):
        Weights(np.zeros(3), np.zeros(1))
    with pytest.raises(ValueError, match="NaN or infinite"):
        Weights(np.array([[np.nan, 0.0]]), np.zeros(1))


def test_the_saved_pipeline_predicts_raw_rows_like_the_federation_scores_them(synthetic):
    stats = GlobalStats.from_moments([FeatureMoments.of(synthetic)])
    weights = Weights.from_vector(np.random.default_rng(2).normal(scale=0.2, size=len(synthetic.features) + 1))
    model = build_pipeline(synthetic.features, stats.mean, stats.scale, weights, stats.prior_logit)
    assert isinstance(model, Pipeline)
    assert [name for name, _ in model.steps] == ["log1p", "standardise", "logistic_regression"]
    expected = weights.probabilities(stats.standardise(synthetic.X), stats.prior_logit)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy input must not warn about feature names
        np.testing.assert_allclose(model.predict_proba(synthetic.X)[:, 1], expected, rtol=1e-12)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    buffer.seek(0)
    loaded = joblib.load(buffer)
    np.testing.assert_allclose(loaded.predict_proba(synthetic.X)[:, 1], expected, rtol=1e-12)
    assert list(loaded.feature_names_in_) == list(synthetic.features)
    assert loaded.named_steps["logistic_regression"].coef_.shape == (1, len(synthetic.features))
