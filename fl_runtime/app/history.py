"""The run's record, step by step, from totals only, evaluated on the test set that only the server holds.

Every figure about the members' data is a total over the members who answered a step: training rows and
frauds, examples and training loss per round, validation histograms (which fix each model's decision
threshold) and validation loss. The server never sees one member's values. What it does see of each member
is operational, not data: that it answered, when (the time breakdown per exchange), and why it dropped out.

Each round's new model is scored on the test set as soon as the round's totals give it (ROC-AUC, PR-AUC, log
loss). Its threshold is chosen from the next round's validation histograms of that same model (or, for the
final model, from the evaluation step's); accuracy, precision, recall and F1 on the test set are filled in then.
The test set is never used to choose anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fl_runtime.app.grid import Exchange
from fl_runtime.app.protocol import HANDLER_END, HANDLER_START, TASK_START
from fl_runtime.app.relay import Dropout
from fl_runtime.learning.convergence import Stop
from fl_runtime.learning.data import LabelledData
from fl_runtime.learning.families import family
from fl_runtime.learning.logistic import LogisticState
from fl_runtime.learning.machine import EVALUATE, MOMENTS, Findings
from fl_runtime.learning.metrics import ScoreHistogram, decision_metrics, ranking_metrics


@dataclass
class RoundResult:
    round: int
    seconds: float
    members: list[str]
    train_loss: float | None  # of the model this round produced, from the next round's totals
    test: dict[str, float]
    validation: dict[str, float] = field(default_factory=dict)  # pooled over the members, from histogram totals
    timing: list[dict[str, float | str]] = field(default_factory=list)  # operational: one per message exchange


@dataclass(frozen=True)
class Seen:
    """What the server saw of one step: a total over ``members`` members of these quantities."""

    question: str
    members: int
    quantities: list[dict]


class History:
    """Collects the run's record from the relay's findings (``on_findings``) and drop-outs (``drop``)."""

    def __init__(self, test: LabelledData, emit: Callable[[dict], None]) -> None:
        self.test = test
        self.emit = emit
        self.rounds: dict[int, RoundResult] = {}
        self.thresholds: dict[int, float] = {}
        self.dropouts: list[dict] = []
        self.stopped: Stop | None = None
        self.totals: dict[str, int] = {}
        self.validation: dict[str, float] = {}  # the final model on the members' pooled validation parts
        self.seen: list[Seen] = []
        self.state: LogisticState | None = None
        self._started = self._last = time.monotonic()
        self._scores: dict[int, np.ndarray] = {}
        self._histograms: dict[int, ScoreHistogram] = {}

    def drop(self, dropout: Dropout) -> None:
        entry = {**dropout.__dict__, "seconds-into-run": time.monotonic() - self._started}
        self.dropouts.append(entry)
        self.emit({"event": "dropout", **entry})

    def on_findings(self, findings: Findings, state: LogisticState, exchange: Exchange, quantities: list[dict]) -> None:
        """One step's totals: the statistics, a new model scored on the test set, or the final evaluation."""
        self.state = state
        question, values = findings.question, findings.values
        self.seen.append(Seen(question.label, findings.members, quantities))
        now = time.monotonic()
        seconds, self._last = now - self._last, now
        if question.kind == MOMENTS:
            self.totals = {"training-rows": values["rows"], "training-positives": values["positives"]}
            self.emit({"event": "federation", "members": exchange_members(exchange), **self.totals})
            return
        histogram: ScoreHistogram = values["histogram"]
        if question.kind == EVALUATE:
            self._decide(question.round, histogram)
            self.validation = {
                "rows": values["validation-rows"],
                "pr-auc": histogram.pr_auc(),
                "log-loss": values["validation-log-loss"],
                **histogram.decisions(self.thresholds[question.round]),
            }
            return
        if question.round > 1:  # a round's totals score the model the round started from
            self.rounds[question.round - 1].train_loss = values["train-loss"]
            self._decide(question.round - 1, histogram)
        self._score(question.round, seconds, exchange, state)
        if state.stop is not None:
            self.stopped = state.stop
            self.emit({"event": "stopped", **state.stop.record()})

    def _score(self, server_round: int, seconds: float, exchange: Exchange, state: LogisticState) -> None:
        scores = self.scores(state)
        result = RoundResult(
            server_round,
            seconds,
            exchange_members(exchange),
            None,
            ranking_metrics(self.test.y, scores),
            timing=[exchange_timing(exchange)],
        )
        self.rounds[server_round] = result
        self._scores[server_round] = scores
        self.emit(
            {"event": "round", "round": server_round, "seconds": seconds, "clients": result.members, **result.test}
        )

    def _decide(self, server_round: int, histogram: ScoreHistogram) -> None:
        self.thresholds[server_round] = threshold = histogram.f1_threshold()
        result = self.rounds[server_round]
        result.test.update(decision_metrics(self.test.y, self._scores.pop(server_round), threshold))
        result.validation = histogram.decisions(threshold)

    def scores(self, state: LogisticState | None = None) -> np.ndarray:
        """Fraud probabilities of the test rows under ``state``'s model (the latest by default)."""
        state = state if state is not None else self.state
        if state is None:
            raise ValueError("no model before the first round's totals")
        return family(state.plan.family).probabilities(state, self.test.X)

    @property
    def final_round(self) -> int:
        return max(self.rounds)


def exchange_members(exchange: Exchange) -> list[str]:
    return sorted(str(member) for member, _, _ in exchange.replies)


def exchange_timing(exchange: Exchange) -> dict[str, float | str]:
    """Where one exchange's time went, each phase taken at its slowest member (operational data: when, not what).

    - ``until-client-starts``: message pushed -> the task starts on the member: the SuperNode's next poll
      (Flower sleeps a fixed 3 s after each empty poll) plus the runner's task poll;
    - ``client-startup``: task start -> handler start (pulling the message);
    - ``client-compute``: the handler itself (verifying, stepping, answering, masking, signing);
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
    for _, timing, arrived in exchange.replies:
        started, handler, done = (timing.get(key, arrived) for key in (TASK_START, HANDLER_START, HANDLER_END))
        phases["until-client-starts"].append(started - exchange.pushed_at)
        phases["client-startup"].append(handler - started)
        phases["client-compute"].append(done - handler)
        phases["reply-transport"].append(arrived - done)
    last = max((arrived for _, _, arrived in exchange.replies), default=exchange.pushed_at)
    return {
        "stage": exchange.stage,
        "exchange": last - exchange.pushed_at,
        **{key: max(values) if values else 0.0 for key, values in phases.items()},
    }
