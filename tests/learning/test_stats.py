"""Global statistics from per-client sums equal what pooled training data would give."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.preprocessing import StandardScaler

from fl_runtime.errors import DataError
from fl_runtime.learning.stats import FeatureMoments, GlobalStats, resampled_size


def test_summed_client_moments_give_the_scaler_of_the_pooled_rows(synthetic):
    parts = [synthetic.subset(range(0, 700)), synthetic.subset(range(700, 2000)), synthetic.subset(range(2000, 3000))]
    stats = GlobalStats.from_moments([FeatureMoments.of(p) for p in parts])
    pooled = StandardScaler().fit(np.log1p(synthetic.X))
    np.testing.assert_allclose(stats.mean, pooled.mean_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.scale, pooled.scale_, rtol=1e-8)
    np.testing.assert_allclose(stats.standardise(synthetic.X), pooled.transform(np.log1p(synthetic.X)), atol=1e-8)


def test_a_client_shares_only_counts_sums_and_sums_of_squares(synthetic):
    moments = FeatureMoments.of(synthetic)
    assert set(vars(moments)) == {"n_rows", "n_positive", "total", "total_squares", "present"}
    assert moments.total.shape == moments.total_squares.shape == moments.present.shape == (len(synthetic.features),)


def test_with_missing_values_the_summed_moments_impute_the_pooled_mean_of_present_log1p_values(synthetic):
    """The federated statistics equal the pooled pipeline that imputes, on log1p values, the mean of the present
    values, and then standardises."""
    from sklearn.impute import SimpleImputer

    X = synthetic.X.copy()
    rng = np.random.default_rng(0)
    X[rng.random(X.shape) < 0.15] = np.nan  # 15 % of the cells missing, in every feature
    X[:, 3] = np.nan  # and one feature never present
    data = type(synthetic)(synthetic.features, X, synthetic.y, "with-missing")
    parts = [data.subset(range(0, 900)), data.subset(range(900, 3000))]
    stats = GlobalStats.from_moments([FeatureMoments.of(p) for p in parts])
    logged = np.log1p(data.subset(range(0, 3000)).X)
    imputed = SimpleImputer(strategy="mean", keep_empty_features=True).fit_transform(logged)
    pooled = StandardScaler().fit(imputed)
    np.testing.assert_allclose(stats.mean, pooled.mean_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stats.scale, pooled.scale_, rtol=1e-8)
    np.testing.assert_allclose(stats.standardise(data.X[:3000]), pooled.transform(imputed), atol=1e-8)
    assert stats.mean[3] == 0.0 and stats.scale[3] == 1.0 and not np.isnan(stats.standardise(data.X)).any()


def test_class_balance_and_prior_follow_the_counts():
    d = 3
    parts = [
        FeatureMoments(1000, 100, np.zeros(d), np.ones(d) * 1000, np.full(d, 1000)),
        FeatureMoments(500, 10, np.zeros(d), np.ones(d) * 500, np.full(d, 500)),
    ]
    stats = GlobalStats.from_moments(parts, "smote")
    assert stats.negatives_per_positive == pytest.approx(1390 / 110)
    assert stats.prior_logit == pytest.approx(math.log(110 / 1390))
    # each member oversamples its positives to the federation's ratio
    assert resampled_size(1000, 100, 1390 / 110) == 900 + round(100 * 1390 / 110)
    # none trains at the real prior, so nothing shifts its intercept
    assert GlobalStats.from_moments(parts, "class-weights").prior_logit == pytest.approx(math.log(110 / 1390))
    assert GlobalStats.from_moments(parts, "none").prior_logit == 0.0


def test_a_constant_feature_gets_scale_one_like_standard_scaler():
    parts = [FeatureMoments(10, 5, np.array([10 * 2.0, 0.0]), np.array([10 * 4.0, 10.0]), np.array([10, 10]))]
    assert GlobalStats.from_moments(parts).scale[0] == 1.0


def test_a_federation_without_positives_is_refused():
    with pytest.raises(DataError, match="single class"):
        GlobalStats.from_moments([FeatureMoments(100, 0, np.zeros(2), np.zeros(2), np.full(2, 100))])
