"""One party's row sums (the terms of the pooled objective), SMOTE, and the saved scikit-learn Pipeline."""

from __future__ import annotations

import io
import warnings

import joblib
import numpy as np
import pytest
from sklearn.pipeline import Pipeline

from fl_runtime.learning import model
from fl_runtime.learning.balance import SMOTE
from fl_runtime.learning.model import (
    MAX_ROW_LOSS,
    Weights,
    build_pipeline,
    effective_rows,
    oversample,
    row_sums,
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


def _pooled_sums(parts, weights):
    return [row_sums(Z, y, weights) for Z, y in parts]


def test_row_sums_summed_over_blocks_of_rows_equal_the_whole_design_matrix_formula(skewed, monkeypatch):
    _, parts = skewed
    Z, y = parts[0]
    weights = Weights.from_vector(np.random.default_rng(2).normal(scale=0.3, size=Z.shape[1] + 1))
    design = np.hstack([Z, np.ones((len(y), 1))])
    p = 1 / (1 + np.exp(-(design @ weights.vector)))
    monkeypatch.setattr(model, "ROW_BLOCK", 97)  # many blocks, the last one partial
    assert len(y) % 97 != 0
    sums = row_sums(Z, y, weights)
    np.testing.assert_allclose(sums.curvature, (design.T * (p * (1 - p))) @ design, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(sums.gradient, design.T @ (p - y), rtol=1e-12, atol=1e-10)
    assert sums.examples == len(y)
    assert sums.loss == pytest.approx(
        float(np.sum(np.logaddexp(0, design @ weights.vector) - y * (design @ weights.vector)))
    )


def test_the_gradient_and_curvature_of_the_summed_loss_agree_with_finite_differences(skewed):
    _, parts = skewed
    Z, y = parts[0]
    rng = np.random.default_rng(1)
    weights = Weights.from_vector(rng.normal(scale=0.3, size=Z.shape[1] + 1))
    direction = rng.normal(size=Z.shape[1] + 1)
    eps = 1e-5

    def loss(theta):
        return row_sums(Z, y, Weights.from_vector(theta)).loss

    numeric = (loss(weights.vector + eps * direction) - loss(weights.vector - eps * direction)) / (2 * eps)
    sums = row_sums(Z, y, weights)
    assert sums.gradient @ direction == pytest.approx(numeric, rel=1e-5)
    moved = row_sums(Z, y, Weights.from_vector(weights.vector + eps * direction))
    np.testing.assert_allclose(sums.curvature @ direction, (moved.gradient - sums.gradient) / eps, rtol=1e-3, atol=1e-4)


def test_class_weights_scale_each_rows_terms(skewed):
    _, parts = skewed
    Z, y = parts[0]
    weights = Weights.from_vector(np.random.default_rng(3).normal(scale=0.3, size=Z.shape[1] + 1))
    doubled = row_sums(Z, y, weights, np.full(len(y), 2.0))
    plain = row_sums(Z, y, weights)
    np.testing.assert_allclose(doubled.gradient, 2 * plain.gradient)
    np.testing.assert_allclose(doubled.curvature, 2 * plain.curvature)
    assert doubled.loss == pytest.approx(2 * plain.loss)
    assert doubled.weighing_in == pytest.approx(plain.weighing_in)  # a common factor changes no row's share


def test_effective_rows_count_equal_weights_fully_and_one_dominant_row_as_one():
    assert effective_rows(np.ones(50)) == pytest.approx(50)
    assert effective_rows(np.r_[1.0, np.full(999, 1e-9)]) == pytest.approx(1.0, abs=1e-5)
    assert effective_rows(np.r_[np.ones(10), np.zeros(90)]) == pytest.approx(10)
    assert effective_rows(np.zeros(5)) == 0.0


def test_a_row_loss_counts_at_most_the_cap(skewed):
    _, parts = skewed
    Z, y = parts[0]
    far = Weights.from_vector(np.r_[np.full(Z.shape[1], 0.0), 1e6])  # every row scored certain fraud
    sums = row_sums(Z, y, far)
    assert sums.loss == pytest.approx(MAX_ROW_LOSS * float(np.sum(y == 0)))


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
    assert [name for name, _ in model.steps] == ["log1p", "standardise", "impute", "logistic_regression"]
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
