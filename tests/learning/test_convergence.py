"""The stopping rule: the relative change of the global parameters against a tolerance, or the last round;
and what stopping early costs on the real CMS data (nothing measurable)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fl_runtime import defaults
from fl_runtime.errors import OptionsError
from fl_runtime.learning.baselines import federated, split_clients
from fl_runtime.learning.convergence import Stop, relative_change, stop_after
from fl_runtime.learning.model import Weights
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.task import TrainConfig, TrainingPlan

SEEDS = (0, 1, 2, 3, 4)  # compare's splits: 3 clients, non-IID label skew, alpha 1, 20 % test set


def _weights(*values: float) -> Weights:
    return Weights.from_vector(np.array(values, dtype=np.float64))


def test_the_change_is_the_step_relative_to_the_longer_parameter_vector_whatever_their_scale():
    previous, current = _weights(3.0, 0.0, 0.0), _weights(3.0, 4.0, 0.0)
    assert relative_change(previous, current) == pytest.approx(4 / 5)
    scaled = relative_change(Weights.from_vector(1e-6 * previous.vector), Weights.from_vector(1e-6 * current.vector))
    assert scaled == pytest.approx(4 / 5)
    assert relative_change(current, previous) == relative_change(previous, current)


def test_the_first_round_from_all_zero_weights_changes_everything_and_all_zero_twice_changes_nothing():
    zeros = Weights.zeros(2)
    assert relative_change(zeros, _weights(0.1, -0.2, 0.05)) == 1.0
    assert relative_change(zeros, zeros) == 0.0


def test_training_goes_on_while_a_round_moves_the_parameters_by_the_tolerance_or_more():
    assert stop_after(3, _weights(0.0, 1024.0), _weights(0.0, 1000.0), tolerance=1 / 1024, max_rounds=10) is None
    assert stop_after(3, _weights(0.0, 1024.0), _weights(0.0, 1023.0), tolerance=1 / 1024, max_rounds=10) is None


def test_training_stops_converged_once_a_round_moves_the_parameters_by_less_than_the_tolerance():
    stop = stop_after(4, _weights(0.0, 2.0), _weights(0.0, 1.999), tolerance=0.001, max_rounds=10)
    assert stop == Stop(4, pytest.approx(0.0005), 0.001, 10) and stop.converged
    assert stop.reason == "converged: parameter change 5.00e-04 below tolerance 0.001 at round 4"
    assert stop.record() == {
        "round": 4,
        "converged": True,
        "parameter-change": stop.change,
        "tolerance": 0.001,
        "max-rounds": 10,
        "reason": stop.reason,
    }


def test_training_stops_unconverged_at_the_last_round_and_says_so():
    stop = stop_after(10, _weights(1.0, 0.0), _weights(1.0, 0.5), tolerance=0.001, max_rounds=10)
    assert stop is not None and not stop.converged and stop.round == 10
    assert stop.reason.startswith("reached the maximum of 10 rounds (--rounds) without converging: parameter change")


def test_a_tolerance_of_0_stops_only_at_the_last_round_even_when_nothing_moves():
    unchanged = _weights(1.0, 2.0)
    assert stop_after(5, unchanged, unchanged, tolerance=0.0, max_rounds=10) is None
    last = stop_after(10, unchanged, unchanged, tolerance=0.0, max_rounds=10)
    assert last is not None and not last.converged


@pytest.mark.parametrize("tolerance", [-0.1, math.nan, math.inf, True])
def test_a_plan_refuses_a_tolerance_that_is_not_a_number_of_at_least_0(tolerance):
    with pytest.raises(OptionsError, match="--tolerance must be a number of at least 0"):
        TrainingPlan(tolerance=tolerance)


def test_a_plan_applies_its_own_tolerance_and_rounds():
    plan = TrainingPlan(rounds=6, tolerance=0.01)
    assert plan.stop_after(2, _weights(0.0, 2.0), _weights(0.0, 1.99)) == Stop(2, pytest.approx(0.005), 0.01, 6)
    assert plan.stop_after(5, _weights(0.0, 2.0), _weights(0.0, 1.9)) is None
    assert plan.stop_after(6, _weights(0.0, 2.0), _weights(0.0, 1.0)) == Stop(6, 0.5, 0.01, 6)
    assert TrainingPlan().tolerance == defaults.CONVERGENCE_TOLERANCE


def test_l1_training_is_stopped_by_the_same_coefficient_change_rule(synthetic):
    """L1's proximal Newton steps converge like L2's: the same rule stops them before the maximum, and a run
    given fewer rounds than it needs says it reached the maximum without converging."""
    test, clients = partition(synthetic, PartitionSpec(3, seed=0))
    split = split_clients(clients, 0)
    l1 = TrainConfig(penalty="l1")
    converged = federated(split, test, TrainingPlan(rounds=20, train=l1, seed=0)).state.stop
    assert converged is not None and converged.converged and converged.round < 20
    short = federated(split, test, TrainingPlan(rounds=2, train=l1, seed=0)).state.stop
    assert short is not None and (short.round, short.converged) == (2, False)


@pytest.fixture(scope="module")
def cms_runs(cms):
    """compare's federated model on each seed's split: stopped at convergence, and after every one of
    its 10 rounds (tolerance 0)."""
    runs = {}
    for seed in SEEDS:
        test, clients = partition(cms, PartitionSpec(3, "non-iid", "label", 1.0, test_fraction=0.2, seed=seed))
        split = split_clients(clients, seed)
        runs[seed] = tuple(
            federated(split, test, TrainingPlan(rounds=defaults.ROUNDS, seed=seed, tolerance=tolerance))
            for tolerance in (defaults.CONVERGENCE_TOLERANCE, 0.0)
        )
    return runs


def test_on_cms_the_federation_converges_before_the_default_rounds_on_every_seed(cms_runs):
    for seed, (converged, full) in cms_runs.items():
        assert converged.state.stop is not None and converged.state.stop.converged, (
            f"seed {seed}: {converged.state.stop}"
        )
        assert converged.state.stop.round < defaults.ROUNDS, f"seed {seed}"
        assert (
            full.state.stop is not None and full.state.stop.round == defaults.ROUNDS and not full.state.stop.converged
        )


def test_on_cms_stopping_at_convergence_costs_less_than_0_0005_roc_auc_on_every_seed(cms_runs):
    for seed, (converged, full) in cms_runs.items():
        gap = converged.test["roc-auc"] - full.test["roc-auc"]
        assert abs(gap) < 0.0005, f"seed {seed}: stopped at round {converged.state.stop.round}, ROC-AUC gap {gap:+.6f}"
