"""Metrics and the threshold chosen from client histograms."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from fl_runtime.learning.metrics import HISTOGRAM_BINS, ScoreHistogram, decision_metrics, ranking_metrics


@pytest.fixture
def scored():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.1).astype(int)
    p = np.clip(rng.beta(2, 8, 2000) + 0.25 * y, 0, 1)
    return y, p


def test_decisions_from_histograms_equal_decisions_from_raw_scores_at_bin_edges(scored):
    y, p = scored
    histogram = ScoreHistogram.of(y, p)
    for threshold in (0.1, 0.235, 0.5, 0.9):
        assert histogram.decisions(threshold) == pytest.approx(decision_metrics(y, p, threshold))


def test_pooled_histograms_equal_the_histogram_of_the_pooled_rows(scored):
    y, p = scored
    pooled = ScoreHistogram.of(y[:700], p[:700]) + ScoreHistogram.of(y[700:], p[700:])
    whole = ScoreHistogram.of(y, p)
    np.testing.assert_array_equal(pooled.positive, whole.positive)
    np.testing.assert_array_equal(pooled.negative, whole.negative)


def test_the_chosen_threshold_maximises_f1_over_all_bin_edges(scored):
    y, p = scored
    threshold = ScoreHistogram.of(y, p).f1_threshold()
    best = max(f1_score(y, p >= edge / HISTOGRAM_BINS) for edge in range(HISTOGRAM_BINS))
    assert f1_score(y, p >= threshold) == pytest.approx(best)


def test_no_positives_falls_back_to_one_half():
    assert ScoreHistogram.of(np.zeros(10, dtype=int), np.linspace(0, 1, 10)).f1_threshold() == 0.5


def test_ranking_metrics_match_scikit_learn_and_handle_one_class(scored):
    y, p = scored
    assert ranking_metrics(y, p)["roc-auc"] == pytest.approx(roc_auc_score(y, p))
    assert np.isnan(ranking_metrics(np.zeros(5, dtype=int), np.full(5, 0.2))["roc-auc"])
