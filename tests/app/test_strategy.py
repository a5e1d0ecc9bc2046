"""Server-side mechanics that the end-to-end runs do not isolate: bounded waits, metric aggregation, when
the rounds end."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import MetricRecord, RecordDict

from fl_runtime.app import records
from fl_runtime.app.strategy import FraudFedAvg, sum_histograms_and_average, wait_for_clients
from fl_runtime.errors import FederationError
from fl_runtime.learning.convergence import Stop
from fl_runtime.learning.model import Weights
from fl_runtime.learning.task import TrainingPlan


class Nodes:
    """Whatever answers get_node_ids(): here, a list that grows over time."""

    def __init__(self, schedule: list[tuple[float, list[int]]]) -> None:
        self.start = time.monotonic()
        self.schedule = schedule

    def get_node_ids(self):
        elapsed = time.monotonic() - self.start
        return next((ids for after, ids in reversed(self.schedule) if elapsed >= after), [])


def test_waiting_for_clients_returns_as_soon_as_enough_are_connected():
    nodes = Nodes([(0.0, [1]), (0.3, [1, 2])])
    started = time.monotonic()
    assert wait_for_clients(nodes, 2, timeout=5) == [1, 2]
    assert time.monotonic() - started < 2


def test_waiting_for_clients_gives_up_at_the_deadline_and_says_how_many_came():
    started = time.monotonic()
    with pytest.raises(FederationError, match="only 1 of the minimum 3 clients connected within 0.5 s"):
        wait_for_clients(Nodes([(0.0, [7])]), 3, timeout=0.5)
    assert time.monotonic() - started < 2


def test_waiting_counts_only_members_of_the_federation():
    with pytest.raises(FederationError, match="only 1 of the minimum 2"):
        wait_for_clients(Nodes([(0.0, [1, 99])]), 2, timeout=0.3, among={1, 2})


def test_client_metrics_sum_histograms_and_counts_and_weight_the_rest_by_examples():
    def reply(examples, loss, positive):
        return RecordDict(
            {
                "metrics": MetricRecord(
                    {
                        records.EXAMPLES: examples,
                        records.TRAIN_LOSS: loss,
                        records.VALIDATION_ROWS: 10,
                        records.HISTOGRAM_POSITIVE: positive,
                    }
                )
            }
        )

    aggregated = sum_histograms_and_average([reply(100, 0.5, [1, 2]), reply(300, 0.1, [3, 0])], records.EXAMPLES)
    assert aggregated[records.EXAMPLES] == 400
    assert aggregated[records.VALIDATION_ROWS] == 20
    assert aggregated[records.TRAIN_LOSS] == pytest.approx(0.2)
    assert aggregated[records.HISTOGRAM_POSITIVE] == [4, 2]


def test_waiting_prefers_every_expected_client_and_settles_for_the_minimum_at_the_deadline():
    nodes = Nodes([(0.0, [1, 2]), (0.4, [1, 2, 3])])
    assert wait_for_clients(nodes, 2, timeout=5, expected=3) == [1, 2, 3]  # not [1, 2]: the third was coming
    started = time.monotonic()
    assert wait_for_clients(Nodes([(0.0, [1, 2])]), 2, timeout=0.5, expected=3) == [1, 2]
    assert 0.5 <= time.monotonic() - started < 2


class ScriptedRounds(FraudFedAvg):
    """FraudFedAvg's round loop alone: no messages, each round's average is the next model of a script."""

    def __init__(self, models: list[Weights], plan: TrainingPlan) -> None:
        self.stops: list[Stop] = []
        super().__init__(
            members={1: "a"},
            min_clients=1,
            node_wait_timeout=1.0,
            round_config=lambda server_round: {},
            on_replies=lambda exchange: None,
            stop_after=plan.stop_after,
            on_stop=self.stops.append,
        )
        self.models = models
        self.trained: list[int] = []
        self.evaluated: list[int] = []

    def configure_train(self, server_round, arrays, config, grid):
        self.trained.append(server_round)
        return []

    def aggregate_train(self, server_round, replies):
        return records.weights_record(self.models[server_round - 1]), None

    def configure_evaluate(self, server_round, arrays, config, grid):
        self.evaluated.append(server_round)
        return []

    def aggregate_evaluate(self, server_round, replies):
        return None


def _run(models: list[Weights], plan: TrainingPlan) -> tuple[ScriptedRounds, list[int], Weights]:
    strategy = ScriptedRounds(models, plan)
    scored: list[int] = []
    grid = SimpleNamespace(send_and_receive=lambda messages, timeout: [])
    result = strategy.start(
        grid,
        records.weights_record(Weights.zeros(1)),
        num_rounds=plan.rounds,
        evaluate_fn=lambda server_round, arrays: scored.append(server_round),
    )
    return strategy, scored, records.read_weights(result.arrays)[0]


def test_the_rounds_end_at_convergence_and_the_clients_evaluate_only_that_final_model():
    models = [Weights.from_vector(np.array([0.0, value])) for value in (1.0, 2.0, 2.01, 2.0101, 2.0101)]
    strategy, scored, final = _run(models, TrainingPlan(rounds=5, tolerance=0.01))
    assert strategy.trained == scored == [1, 2, 3] and strategy.evaluated == [3]
    [stop] = strategy.stops
    assert (stop.round, stop.converged) == (3, True) and stop.change == pytest.approx(0.01 / 2.01)
    np.testing.assert_array_equal(final.vector, models[2].vector)


def test_rounds_that_keep_moving_the_model_end_at_the_maximum_and_say_they_did_not_converge():
    models = [Weights.from_vector(np.array([0.0, 2.0**r])) for r in range(4)]
    strategy, scored, final = _run(models, TrainingPlan(rounds=4, tolerance=0.01))
    assert strategy.trained == scored == [1, 2, 3, 4] and strategy.evaluated == [4]
    [stop] = strategy.stops
    assert (stop.round, stop.converged) == (4, False)
    np.testing.assert_array_equal(final.vector, models[3].vector)
