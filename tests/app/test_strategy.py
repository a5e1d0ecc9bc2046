"""Server-side mechanics that the end-to-end runs do not isolate: bounded waits, metric aggregation."""

from __future__ import annotations

import time

import pytest
from flwr.app import MetricRecord, RecordDict

from fl_runtime.app import records
from fl_runtime.app.strategy import sum_histograms_and_average, wait_for_clients
from fl_runtime.errors import FederationError


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
