"""One member's task: split once, moments of the training part, its sums at a model, prepared once."""

from __future__ import annotations

import numpy as np
import pytest

from fl_runtime.errors import OptionsError
from fl_runtime.learning.model import Weights
from fl_runtime.learning.stats import GlobalStats
from fl_runtime.learning.task import ClientData, ClientRows, TrainConfig


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


def test_a_members_sums_at_the_all_zero_model_score_every_row_one_half(synthetic, prepared):
    _, prepared = prepared
    sums = prepared.sums(Weights.zeros(len(synthetic.features)))
    assert sums.examples == prepared.n_examples
    assert sums.loss == pytest.approx(prepared.n_examples * np.log(2))
    assert sums.curvature.shape == (len(synthetic.features) + 1,) * 2
    assert sums.curvature[-1, -1] == pytest.approx(prepared.n_examples / 4)
    assert sums.weighing_in == pytest.approx(prepared.n_examples)  # every row weighs the same


def test_a_members_rows_are_prepared_once_per_run_statistics(synthetic):
    client = ClientData.split(synthetic, seed=0)
    rows = ClientRows(client, seed=0)
    stats = GlobalStats.from_moments([client.moments()], "smote")
    first = rows.prepared(stats)
    assert rows.prepared(stats) is first  # SMOTE once
    other = GlobalStats.from_moments([client.moments()], "none")
    assert rows.prepared(other) is not first and rows.prepared(other).n_examples == client.train.n_rows


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"C": 0.0}, "C must be a positive number"),
        ({"C": float("inf")}, "C must be a positive number"),
        ({"penalty": "elasticnet"}, "penalty must be one of l2, l1"),
    ],
)
def test_invalid_round_config_is_refused_naming_the_setting(kwargs, message):
    with pytest.raises(OptionsError, match=message):
        TrainConfig(**kwargs)


def test_the_family_picked_has_the_highest_validation_pr_auc_ties_go_to_the_first_and_nan_never_wins():
    from fl_runtime.learning.task import pick_family

    assert pick_family({"logistic": 0.47, "gbdt": 0.53}) == "gbdt"
    assert pick_family({"logistic": 0.5, "gbdt": 0.5}) == "logistic"
    assert pick_family({"logistic": float("nan"), "gbdt": 0.01}) == "gbdt"
    assert pick_family({"gbdt": float("nan"), "logistic": float("nan")}) == "gbdt"
    with pytest.raises(ValueError, match="no family"):
        pick_family({})
