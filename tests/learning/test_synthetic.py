"""The embedded synthetic dataset: CMS schema, realistic shape, learnable but not trivially."""

from __future__ import annotations

import numpy as np
import pytest

from fl_runtime.errors import OptionsError
from fl_runtime.learning.data import CMS_FEATURES
from fl_runtime.learning.synthetic import generate


def test_same_seed_same_rows_other_seed_other_rows():
    a, b, c = generate(500, seed=3), generate(500, seed=3), generate(500, seed=4)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)


def test_schema_and_prevalence_match_the_cms_dataset():
    data = generate(5500, seed=0)
    assert data.features == CMS_FEATURES
    assert data.n_positive == 500  # 9.09 %, as in the curated CMS data


def test_counts_and_amounts_are_non_negative_skewed_and_counts_are_whole(cms):
    data = generate(5500, seed=0)
    assert np.all(data.X >= 0)
    drug_cost = data.X[:, CMS_FEATURES.index("total_drug_cost_sum")]
    assert drug_cost.max() / np.median(drug_cost) > 50  # heavy right tail, like the real column
    for column in ("total_claim_count_sum", "bene_count_mean", "line_svc_cnt_sum"):
        values = data.X[:, CMS_FEATURES.index(column)]
        np.testing.assert_array_equal(values, np.round(values))
    # the same order of magnitude as the real data, column by column (medians within a factor 5)
    ratio = (np.median(data.X, axis=0) + 1) / (np.median(cms.X, axis=0) + 1)
    assert np.all((ratio > 0.2) & (ratio < 5))


def test_a_logistic_regression_learns_the_signal_but_not_perfectly():
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    data = generate(5500, seed=1)
    X_train, X_test, y_train, y_test = train_test_split(
        np.log1p(data.X), data.y, test_size=0.3, stratify=data.y, random_state=0
    )
    mean, scale = X_train.mean(0), X_train.std(0)
    model = LogisticRegression(max_iter=2000).fit((X_train - mean) / scale, y_train)
    auc = roc_auc_score(y_test, model.predict_proba((X_test - mean) / scale)[:, 1])
    assert 0.75 < auc < 0.92


def test_too_few_rows_is_refused():
    with pytest.raises(OptionsError, match="n_rows=5"):
        generate(5)
