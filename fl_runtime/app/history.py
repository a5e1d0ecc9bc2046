"""The run's record, step by step, from totals only, evaluated on the test set that only the server holds.

Every figure about the members' data is a total over the members who answered a step: training rows and
frauds, validation histograms (which fix a model's decision threshold) and validation loss, and for logistic
regression the training loss per round. The server never sees one member's values. What it does see of each
member is operational, not data: that it answered, when (the time breakdown per exchange), and why it dropped
out.

A model *version* (a logistic round, a number of trees: ``machine.Findings``) is scored on the test set as soon
as the step that made it is verified (ROC-AUC, PR-AUC, log loss). Its threshold is chosen from the members'
validation histograms of that same version when a later step carries them (every logistic round; for trees,
the final evaluation); accuracy, precision, recall and F1 on the test set are filled in then. The test set is
never used to choose anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fl_runtime.app.grid import Exchange
from fl_runtime.app.protocol import HANDLER_END, HANDLER_START, TASK_START
from fl_runtime.app.relay import Dropout
from fl_runtime.learning.data import LabelledData
from fl_runtime.learning.families import family
from fl_runtime.learning.machine import EVALUATE, Findings
from fl_runtime.learning.metrics import ScoreHistogram, decision_metrics, ranking_metrics


@dataclass
class RoundResult:
    """One model version: a logistic round, or the ensemble of ``round`` trees."""

    round: int
    seconds: float  # since the previous version was made
    members: list[str]
    train_loss: float | None  # of this version, from a later step's totals (logistic regression)
    test: dict[str, float]
    validation: dict[str, float] = field(default_factory=dict)  # pooled over the members, from their totals
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
        self.rounds: dict[int, RoundResult] = {}  # by model version
        self.thresholds: dict[int, float] = {}
        self.dropouts: list[dict] = []
        self.stopped: dict | None = None  # why training stopped (``Findings.stop``)
        self.totals: dict[str, int] = {}
        self.validation: dict[str, float] = {}  # the final model on the members' pooled validation parts
        self.seen: list[Seen] = []
        self.state: Any = None
        self._evaluated: int | None = None  # the version the evaluation step validated: the run's model
        self._started = self._last = time.monotonic()
        self._timings: list[dict[str, float | str]] = []  # the exchanges since the last version was made
        self._scores: dict[int, np.ndarray] = {}

    def drop(self, dropout: Dropout) -> None:
        entry = {**dropout.__dict__, "seconds-into-run": time.monotonic() - self._started}
        self.dropouts.append(entry)
        self.emit({"event": "dropout", **entry})

    def on_findings(self, findings: Findings, state: Any, exchange: Exchange, quantities: list[dict]) -> None:
        """One step's totals: the federation's size, a version validated, a new version scored, why it stopped."""
        self.state = state
        values = findings.values
        self.seen.append(Seen(findings.question.label, findings.members, quantities))
        self._timings.append(exchange_timing(exchange))
        if "rows" in values and not self.totals:
            self.totals = {"training-rows": values["rows"], "training-positives": values["positives"]}
            self.emit({"event": "federation", "members": exchange_members(exchange), **self.totals})
        if findings.validated is not None:
            if findings.validated not in self.rounds:  # never made (trees: none beat the baseline): the state's
                self._score(findings.validated, exchange, state)
            self._validated(findings.validated, values, final=findings.question.kind == EVALUATE)
        if findings.made is not None:
            self._score(findings.made, exchange, state)
        if findings.stop is not None:
            self.stopped = findings.stop
            self.emit({"event": "stopped", **findings.stop})

    def _validated(self, version: int, values: dict, final: bool) -> None:
        result = self.rounds[version]
        if "train-loss" in values:
            result.train_loss = values["train-loss"]
        if "validation-log-loss" in values:
            result.validation["log-loss"] = values["validation-log-loss"]
        histogram: ScoreHistogram | None = values.get("histogram")
        if histogram is not None:
            self._decide(version, histogram)
        if final:
            self._evaluated = version
            self.validation = {
                "rows": values["validation-rows"],
                "pr-auc": histogram.pr_auc() if histogram is not None else float("nan"),
                "log-loss": values["validation-log-loss"],
                **(histogram.decisions(self.thresholds[version]) if histogram is not None else {}),
            }

    def _score(self, version: int, exchange: Exchange, state: Any) -> None:
        now = time.monotonic()
        seconds, self._last = now - self._last, now
        scores = self.scores(state)
        result = RoundResult(
            version, seconds, exchange_members(exchange), None, ranking_metrics(self.test.y, scores), {}, self._timings
        )
        self._timings = []
        self.rounds[version] = result
        self._scores = {version: scores}  # kept until a later step validates it (older ones: recomputed if needed)
        self.emit(
            {
                "event": "round",
                "round": version,
                "version": family(state.plan.family).version_name,
                "seconds": seconds,
                "clients": result.members,
                **result.test,
            }
        )

    def _decide(self, version: int, histogram: ScoreHistogram) -> None:
        self.thresholds[version] = threshold = histogram.f1_threshold()
        result = self.rounds[version]
        scores = self._scores.pop(version, None)
        if scores is None:  # an earlier version, validated again by the evaluation: the state holds that model
            scores = self.scores()
        result.test.update(decision_metrics(self.test.y, scores, threshold))
        result.validation.update(histogram.decisions(threshold))

    def scores(self, state: Any = None) -> np.ndarray:
        """Fraud probabilities of the test rows under ``state``'s model (the latest by default)."""
        state = state if state is not None else self.state
        if state is None:
            raise ValueError("no model before the first step's totals")
        return family(state.plan.family).probabilities(state, self.test.X)

    @property
    def final_round(self) -> int:
        """The run's model version: the one its evaluation validated (the last made, before that)."""
        return self._evaluated if self._evaluated is not None else max(self.rounds)


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
