"""One client's task: split once, moments of the training part, rounds from the global weights."""

from __future__ import annotations

import numpy as np
import pytest

from fl_runtime.errors import OptionsError
from fl_runtime.learning.model import Weights
from fl_runtime.learning.stats import GlobalStats
from fl_runtime.learning.task import ClientData, TrainConfig


@pytest.fixture
def prepared(synthetic):
    client = ClientData.split(synthetic, seed=0)
    return client, client.prepare(GlobalStats.from_moments([client.moments()], "smote"), seed=0)


def test_split_is_stratified_disjoint_and_reproducible(synthetic):
    a, b = ClientData.split(synthetic, seed=3), ClientData.split(synthetic, seed=3)
    np.testing.assert_array_equal(a.train.X, b.train.X)
    assert a.train.n_rows + a.validation.n_rows == synthetic.n_rows
    assert a.validation.n_rows == pytest.approx(0.2 * synthetic.n_rows, abs=1)
    assert a.validation.n_positive / a.validation.n_rows == pytest.approx(
        synthetic.n_positive / synthetic.n_rows, abs=0.01
    )
    train_rows = {row.tobytes() for row in a.train.X}
    assert not any(row.tobytes() in train_rows for row in a.validation.X)


def test_moments_cover_the_training_part_only(synthetic):
    client = ClientData.split(synthetic, seed=0)
    assert client.moments().n_rows == client.train.n_rows


def test_smote_touches_the_training_part_only_and_validation_keeps_real_rows(prepared):
    client, prepared = prepared
    stats = GlobalStats.from_moments([client.moments()], "smote")
    assert prepared.n_examples > client.train.n_rows  # synthetic positives added
    assert len(prepared.validation_y) == client.validation.n_rows
    np.testing.assert_allclose(prepared.validation_Z, stats.standardise(client.validation.X))


def test_a_round_reports_weights_examples_own_curvature_and_the_incoming_models_loss(synthetic, prepared):
    _, prepared = prepared
    start = Weights.zeros(len(synthetic.features))
    update = prepared.update(start, TrainConfig())
    assert update.n_examples == prepared.n_examples
    assert update.curvature.shape == (len(synthetic.features) + 1,) * 2
    assert update.train_loss == pytest.approx(np.log(2))  # all-zero weights score 0.5 everywhere
    again = prepared.update(update.weights, TrainConfig())
    assert again.train_loss < update.train_loss


def test_shared_curvature_replaces_the_clients_own_in_the_step(synthetic, prepared):
    _, prepared = prepared
    start = Weights.zeros(len(synthetic.features))
    own = prepared.update(start, TrainConfig())
    doubled = prepared.update(start, TrainConfig(), shared_curvature=2 * own.curvature)
    np.testing.assert_allclose(doubled.weights.vector, 0.5 * own.weights.vector, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"local_iterations": 0}, "local-iterations must be a whole number of at least 1"),
        ({"C": 0.0}, "C must be a positive number"),
        ({"C": float("inf")}, "C must be a positive number"),
        ({"penalty": "elasticnet"}, "penalty must be one of l2, l1"),
    ],
)
def test_invalid_round_config_is_refused_naming_the_setting(kwargs, message):
    with pytest.raises(OptionsError, match=message):
        TrainConfig(**kwargs)
