"""History: a training reply of round r scores the model of round r-1, so that model's threshold, its decision
metrics on the test set and its training loss are filled in one round late; the final model gets them from the
final evaluation. The test set never chooses anything."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from flwr.app import MetricRecord, RecordDict

from fl_runtime.app import records
from fl_runtime.app.history import History
from fl_runtime.app.strategy import Exchange
from fl_runtime.learning.convergence import Stop
from fl_runtime.learning.metrics import ScoreHistogram, decision_metrics
from fl_runtime.learning.model import Weights
from fl_runtime.learning.stats import FeatureMoments, GlobalStats

NAMES = {1: "insurer-a", 2: "insurer-b"}


@pytest.fixture
def history(synthetic):
    test = synthetic.subset(np.arange(600))
    stats = GlobalStats.from_moments([FeatureMoments.of(synthetic.subset(np.arange(600, 3000)))])
    events: list[dict] = []
    made = History(test, stats, NAMES, events.append)
    made.events = events  # type: ignore[attr-defined]
    return made


def _weights(seed: int, n: int) -> Weights:
    rng = np.random.default_rng(seed)
    return Weights(rng.normal(0, 0.3, (1, n)), rng.normal(0, 0.3, 1))


def _histogram(seed: int) -> ScoreHistogram:
    rng = np.random.default_rng(seed)
    return ScoreHistogram(rng.integers(0, 5, 200), rng.integers(0, 50, 200))


def _reply(histogram: ScoreHistogram, examples: int, loss: float = 0.5, **extra: float) -> SimpleNamespace:
    metrics = {
        records.EXAMPLES: examples,
        records.TRAIN_LOSS: loss,
        **records.histogram_metrics(histogram),
        records.TASK_START: 10.0,
        records.HANDLER_START: 11.0,
        records.HANDLER_END: 11.5,
        **extra,
    }
    return SimpleNamespace(content=RecordDict({"metrics": MetricRecord(metrics)}))


def _exchange(stage: str, server_round: int, replies: dict[int, SimpleNamespace], failures=()) -> Exchange:
    return Exchange(stage, server_round, 9.0, [(node, reply, 12.0) for node, reply in replies.items()], list(failures))


def test_a_training_reply_fixes_the_threshold_of_the_model_the_round_started_from(history):
    n = len(history.test.features)
    first, second = _histogram(1), _histogram(2)
    history.on_replies(_exchange("train", 1, {1: _reply(_histogram(9), 100), 2: _reply(_histogram(8), 300)}))
    history.evaluate(1, records.weights_record(_weights(1, n)))
    assert "threshold" not in history.rounds[1].test  # round 1's model has not been scored by the clients yet
    assert history.rounds[1].clients == ["insurer-a", "insurer-b"] and history.rounds[1].train_loss is None

    history.on_replies(_exchange("train", 2, {1: _reply(first, 100, 0.2), 2: _reply(second, 300, 0.6)}))
    pooled = first + second
    threshold = pooled.f1_threshold()
    assert history.thresholds == {1: threshold}
    scores = history.scores(_weights(1, n))
    assert history.rounds[1].test == {**history.rounds[1].test, **decision_metrics(history.test.y, scores, threshold)}
    assert history.rounds[1].validation == pooled.decisions(threshold)
    assert history.rounds[1].train_loss == pytest.approx((0.2 * 100 + 0.6 * 300) / 400)  # weighted by examples


def test_the_final_model_is_decided_by_the_final_evaluation_and_each_client_keeps_its_validation(history):
    n = len(history.test.features)
    history.on_replies(_exchange("train", 1, {1: _reply(_histogram(1), 100), 2: _reply(_histogram(2), 300)}))
    history.evaluate(1, records.weights_record(_weights(1, n)))
    final_a, final_b = _histogram(5), _histogram(6)
    ranking = {"roc-auc": 0.9, "pr-auc": 0.5, "log-loss": 0.3}
    history.on_replies(_exchange("evaluate", 1, {1: _reply(final_a, 40, **ranking), 2: _reply(final_b, 60, **ranking)}))
    threshold = (final_a + final_b).f1_threshold()
    assert history.thresholds[1] == threshold and history.rounds[1].test["threshold"] == threshold
    assert history.client_validation["insurer-a"] == {"rows": 40, **ranking, **final_a.decisions(threshold)}
    assert history.client_validation["insurer-b"]["rows"] == 60


def test_failures_become_named_dropouts_and_the_time_breakdown_is_kept_per_exchange(history):
    history.on_replies(
        _exchange("train", 1, {1: _reply(_histogram(1), 100)}, failures=[(2, "MemoryError"), (7, "timeout")])
    )
    assert [(d.client, d.round, d.stage, d.reason) for d in history.dropouts] == [
        ("insurer-b", 1, "train", "MemoryError"),
        ("node 7", 1, "train", "timeout"),
    ]
    assert [e["client"] for e in history.events if e["event"] == "dropout"] == ["insurer-b", "node 7"]
    history.evaluate(1, records.weights_record(Weights.zeros(len(history.test.features))))
    [timing] = history.rounds[1].timing
    assert timing == {
        "stage": "train",
        "exchange": 3.0,
        "until-client-starts": 1.0,
        "client-startup": 1.0,
        "client-compute": 0.5,
        "reply-transport": 0.5,
    }


def test_the_initial_all_zero_model_is_not_scored(history):
    assert history.evaluate(0, records.weights_record(Weights.zeros(len(history.test.features)))) is None
    assert history.rounds == {}


def test_the_stop_is_kept_for_the_outputs_and_announced_to_the_launcher(history):
    stop = Stop(3, 0.0002, 0.001, 10)
    history.stop(stop)
    assert history.stopped == stop
    assert history.events[-1] == {"event": "stopped", **stop.record()}
    assert history.events[-1]["reason"] == "converged: parameter change 2.00e-04 below tolerance 0.001 at round 3"
