"""What travels in Flower records round-trips exactly."""

from __future__ import annotations

import numpy as np
from flwr.app import ConfigRecord, RecordDict

from fl_runtime.app import records
from fl_runtime.learning.metrics import ScoreHistogram
from fl_runtime.learning.model import Weights
from fl_runtime.learning.stats import FeatureMoments, GlobalStats
from fl_runtime.learning.task import TrainConfig


def test_weights_keep_scikit_learns_binary_shapes_and_optional_curvature():
    weights = Weights(np.arange(4.0).reshape(1, 4), np.array([0.5]))
    record = records.weights_record(weights)
    assert set(record) == {"coef", "intercept"}
    assert record["coef"].numpy().shape == (1, 4) and record["intercept"].numpy().shape == (1,)
    again, curvature = records.read_weights(record)
    np.testing.assert_array_equal(again.vector, weights.vector)
    assert curvature is None
    _, curvature = records.read_weights(records.weights_record(weights, np.eye(5)))
    np.testing.assert_array_equal(curvature, np.eye(5))


def test_global_stats_and_round_config_survive_a_config_record():
    stats = GlobalStats(np.array([1.0, 2.0]), np.array([0.5, 3.0]), 10.0, -2.3, 1234)
    config = ConfigRecord({**records.stats_config(stats), **TrainConfig(2, 0.3, "l1").to_config()})
    again = records.read_stats(config)
    np.testing.assert_array_equal(again.mean, stats.mean)
    np.testing.assert_array_equal(again.scale, stats.scale)
    assert (again.negatives_per_positive, again.prior_logit, again.pooled_examples) == (10.0, -2.3, 1234)
    assert TrainConfig.from_config(config) == TrainConfig(2, 0.3, "l1")


def test_moments_reply_carries_name_columns_and_sums():
    moments = FeatureMoments(100, 9, np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    content = RecordDict(records.moments_records("insurer-a", ("x1", "x2"), moments))
    name, features, again = records.read_moments(content)
    assert (name, features, again.n_rows, again.n_positive) == ("insurer-a", ("x1", "x2"), 100, 9)
    np.testing.assert_array_equal(again.total_squares, moments.total_squares)


def test_histograms_travel_as_integer_lists():
    histogram = ScoreHistogram.of(np.array([0, 1, 1]), np.array([0.1, 0.7, 0.71]))
    metrics = records.histogram_metrics(histogram)
    assert all(isinstance(v, int) for v in metrics[records.HISTOGRAM_POSITIVE])
    from flwr.app import MetricRecord

    again = records.read_histogram(MetricRecord(metrics))
    np.testing.assert_array_equal(again.positive, histogram.positive)
