"""The run's record, round by round, evaluated on the test set that only the server holds.

Each round's global model is scored on the test set as soon as it exists (ROC-AUC, PR-AUC, log loss).
Its decision threshold is chosen from the clients' validation histograms of that same model, which
arrive with the next round's training replies (or, for the final model, with the final federated
evaluation); accuracy, precision, recall and F1 on the test set are filled in then. The test set is
never used to choose anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, MetricRecord

from fl_runtime.app import records
from fl_runtime.app.strategy import Exchange
from fl_runtime.learning.convergence import Stop
from fl_runtime.learning.data import LabelledData
from fl_runtime.learning.metrics import ScoreHistogram, decision_metrics, ranking_metrics
from fl_runtime.learning.model import Weights
from fl_runtime.learning.stats import GlobalStats


@dataclass
class RoundResult:
    round: int
    seconds: float
    clients: list[str]
    train_loss: float | None
    test: dict[str, float]
    validation: dict[str, float] = field(default_factory=dict)  # pooled client validation, from histograms
    timing: list[dict[str, float | str]] = field(default_factory=list)  # one breakdown per message exchange


@dataclass(frozen=True)
class Dropout:
    client: str
    round: int
    stage: str
    seconds_into_run: float
    reason: str


class History:
    """Collects per-round results; ``evaluate`` is the strategy's evaluate_fn."""

    def __init__(
        self, test: LabelledData, stats: GlobalStats, names: dict[int, str], emit: Callable[[dict], None]
    ) -> None:
        self.test = test
        self.stats = stats
        self.names = dict(names)
        self.emit = emit
        self.rounds: dict[int, RoundResult] = {}
        self.thresholds: dict[int, float] = {}
        self.dropouts: list[Dropout] = []
        self.stopped: Stop | None = None  # after which round training ended, and why
        self.client_validation: dict[str, dict[str, float]] = {}
        self._test_Z = stats.standardise(test.X)
        self._scores: dict[int, np.ndarray] = {}
        self._histograms: dict[int, ScoreHistogram] = {}
        self._started = time.monotonic()
        self._round_started: dict[int, float] = {}
        self._participants: dict[int, list[str]] = {}
        self._timing: dict[int, list[dict[str, float | str]]] = {}

    def start_round(self, server_round: int) -> None:
        self._round_started.setdefault(server_round, time.monotonic())

    def drop(self, client: str, server_round: int, stage: str, reason: str) -> None:
        """A client left the federation (round 0: the moments round, before training)."""
        dropout = Dropout(client, server_round, stage, time.monotonic() - self._started, reason)
        self.dropouts.append(dropout)
        self.emit({"event": "dropout", **dropout.__dict__})

    def stop(self, stop: Stop) -> None:
        """Training ended after ``stop.round``: converged, or the last round allowed."""
        self.stopped = stop
        self.emit({"event": "stopped", **stop.record()})

    def on_replies(self, exchange: Exchange) -> None:
        """Replies of one exchange: drop-outs, time breakdown, and the histograms that fix a threshold."""
        server_round = exchange.round
        for node, reason in exchange.failures:
            self.drop(self.names.get(node, f"node {node}"), server_round, exchange.stage, reason)
        if not exchange.replies:
            return
        self._timing.setdefault(server_round, []).append(exchange_timing(exchange))
        good = [(node, reply) for node, reply, _ in exchange.replies]
        histogram = sum(
            (records.read_histogram(records.metrics_of(reply.content)) for _, reply in good), ScoreHistogram.empty()
        )
        if exchange.stage == "evaluate":  # the final model, scored by every client on its validation part
            self._decide(server_round, histogram)
            for node, reply in good:
                metrics = records.metrics_of(reply.content)
                ranking = {key: records.number(metrics, key) for key in ("roc-auc", "pr-auc", "log-loss")}
                decisions = records.read_histogram(metrics).decisions(self.thresholds[server_round])
                self.client_validation[self.names[node]] = {
                    "rows": records.whole(metrics, records.EXAMPLES),
                    **ranking,
                    **decisions,
                }
            return
        self._participants[server_round] = [self.names[node] for node, _ in good]
        if server_round > 1:  # training replies score the model the round started from
            examples = [records.number(records.metrics_of(reply.content), records.EXAMPLES) for _, reply in good]
            losses = [records.number(records.metrics_of(reply.content), records.TRAIN_LOSS) for _, reply in good]
            self.rounds[server_round - 1].train_loss = float(np.average(losses, weights=examples))
            self._decide(server_round - 1, histogram)

    def _decide(self, server_round: int, histogram: ScoreHistogram) -> None:
        self.thresholds[server_round] = histogram.f1_threshold()
        self._histograms[server_round] = histogram
        self._apply_threshold_when_scored(server_round)

    def _apply_threshold_when_scored(self, server_round: int) -> None:
        if server_round not in self._scores or server_round not in self._histograms:
            return
        threshold = self.thresholds[server_round]
        result = self.rounds[server_round]
        result.test.update(decision_metrics(self.test.y, self._scores.pop(server_round), threshold))
        result.validation = self._histograms.pop(server_round).decisions(threshold)

    def evaluate(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Score the round's global model on the test set (evaluate_fn of ``Strategy.start``)."""
        if server_round == 0:
            return None  # the all-zero initial model says nothing
        weights, _ = records.read_weights(arrays)
        scores = self.scores(weights)
        seconds = time.monotonic() - self._round_started.get(server_round, self._started)
        result = RoundResult(
            server_round,
            seconds,
            self._participants.get(server_round, []),
            None,
            ranking_metrics(self.test.y, scores),
            timing=self._timing.get(server_round, []),
        )
        self.rounds[server_round] = result
        self._scores[server_round] = scores
        self._apply_threshold_when_scored(server_round)
        self.emit(
            {"event": "round", "round": server_round, "seconds": seconds, "clients": result.clients, **result.test}
        )
        return MetricRecord(dict(result.test))

    def scores(self, weights: Weights) -> np.ndarray:
        """Calibrated fraud probabilities of the test rows under ``weights``."""
        return weights.probabilities(self._test_Z, self.stats.prior_logit)


def exchange_timing(exchange: Exchange) -> dict[str, float | str]:
    """Where one exchange's time went, each phase taken at its slowest client.

    - ``until-client-starts``: message pushed -> the task starts on the client: the SuperNode's next
      poll (Flower sleeps a fixed 3 s after each empty poll) plus the runner's task poll;
    - ``client-startup``: task start -> handler start (pulling the message; for a process started per
      message, also Python, Flower and app imports);
    - ``client-compute``: the handler itself (training, validation scoring);
    - ``reply-transport``: handler end -> reply pulled by the server (the SuperNode's 0.5 s reply poll,
      the push, and the server's 50 ms pull);
    - ``exchange``: first push -> last reply.
    """
    phases: dict[str, list[float]] = {
        "until-client-starts": [],
        "client-startup": [],
        "client-compute": [],
        "reply-transport": [],
    }
    for _, reply, arrived in exchange.replies:
        metrics = records.metrics_of(reply.content)
        started, handler, done = (
            records.number(metrics, key) for key in (records.TASK_START, records.HANDLER_START, records.HANDLER_END)
        )
        phases["until-client-starts"].append(started - exchange.pushed_at)
        phases["client-startup"].append(handler - started)
        phases["client-compute"].append(done - handler)
        phases["reply-transport"].append(arrived - done)
    last = max(arrived for _, _, arrived in exchange.replies)
    return {
        "stage": exchange.stage,
        "exchange": last - exchange.pushed_at,
        **{key: max(values) for key, values in phases.items()},
    }
