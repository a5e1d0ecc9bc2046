"""History: built from totals alone. A round's totals score the model the round started from (its threshold, its
training loss), the final evaluation's totals decide the final model; the test set never chooses anything."""

from __future__ import annotations

import numpy as np
import pytest

from fl_runtime.app.grid import Exchange
from fl_runtime.app.history import History
from fl_runtime.app.relay import Dropout
from fl_runtime.learning.convergence import Stop
from fl_runtime.learning.logistic import LogisticState
from fl_runtime.learning.machine import EVALUATE, MOMENTS, ROUND, Findings, Question
from fl_runtime.learning.metrics import ScoreHistogram, decision_metrics
from fl_runtime.learning.model import Weights
from fl_runtime.learning.stats import FeatureMoments, GlobalStats
from fl_runtime.learning.task import TrainingPlan

MEMBERS = ["insurer-a", "insurer-b", "insurer-c"]


@pytest.fixture
def history(synthetic):
    events: list[dict] = []
    made = History(synthetic.subset(np.arange(600)), events.append)
    made.events = events  # type: ignore[attr-defined]
    return made


def _state(synthetic, weights: Weights | None, stop: Stop | None = None) -> LogisticState:
    stats = GlobalStats.from_moments([FeatureMoments.of(synthetic.subset(np.arange(600, 3000)))])
    return LogisticState(TrainingPlan(), synthetic.features, None, stats, 2400, weights, stop)


def _weights(seed: int, n: int) -> Weights:
    rng = np.random.default_rng(seed)
    return Weights(rng.normal(0, 0.3, (1, n)), rng.normal(0, 0.3, 1))


def _histogram(seed: int) -> ScoreHistogram:
    rng = np.random.default_rng(seed)
    return ScoreHistogram(rng.integers(0, 5, 200), rng.integers(0, 50, 200))


def _exchange(stage: str, server_round: int, members=MEMBERS) -> Exchange:
    timing = {"task-start": 10.0, "handler-start": 11.0, "handler-end": 11.5}
    return Exchange(stage, server_round, 9.0, [(m, timing, 12.0) for m in members], [])


def _round(history, synthetic, server_round: int, histogram: ScoreHistogram, loss: float, stop=None) -> None:
    weights = _weights(server_round, len(synthetic.features))
    values = {"examples": 2400, "train-loss": loss, "histogram": histogram, "validation-rows": 600,
              "validation-log-loss": 0.3}  # fmt: skip
    made, validated = server_round, server_round - 1 if server_round > 1 else None  # as the logistic family says
    findings = Findings(Question(ROUND, server_round), 3, values, made, validated, stop.record() if stop else None)
    history.on_findings(findings, _state(synthetic, weights, stop), _exchange("round", server_round), [])


def test_the_moments_totals_are_reported_as_totals_only(history, synthetic):
    findings = Findings(Question(MOMENTS, 0), 3, {"rows": 2400, "positives": 210})
    history.on_findings(findings, _state(synthetic, Weights.zeros(49)), _exchange("moments", 0), [{"quantity": "rows"}])
    assert history.totals == {"training-rows": 2400, "training-positives": 210}
    assert history.events[-1] == {"event": "federation", "members": MEMBERS, "training-rows": 2400,
                                  "training-positives": 210}  # fmt: skip
    assert history.seen[0].question == "the moments query" and history.seen[0].members == 3


def test_a_rounds_totals_fix_the_threshold_and_loss_of_the_model_the_round_started_from(history, synthetic):
    _round(history, synthetic, 1, _histogram(9), 0.69)
    assert "threshold" not in history.rounds[1].test  # round 1's model has not been scored by the members yet
    assert history.rounds[1].members == MEMBERS and history.rounds[1].train_loss is None
    second = _histogram(2)
    _round(history, synthetic, 2, second, 0.31)
    threshold = second.f1_threshold()
    assert history.thresholds == {1: threshold}
    scores = history.scores(_state(synthetic, _weights(1, len(synthetic.features))))
    assert history.rounds[1].test == {**history.rounds[1].test, **decision_metrics(history.test.y, scores, threshold)}
    assert history.rounds[1].validation == {"log-loss": 0.3, **second.decisions(threshold)}
    assert history.rounds[1].train_loss == 0.31


def test_the_final_model_is_decided_by_the_evaluations_totals(history, synthetic):
    _round(history, synthetic, 1, _histogram(1), 0.69, stop=Stop(1, 0.0, 0.001, 10))
    final = _histogram(5)
    findings = Findings(Question(EVALUATE, 1), 3, {"histogram": final, "validation-rows": 600,
                                                   "validation-log-loss": 0.25}, validated=1)  # fmt: skip
    history.on_findings(findings, _state(synthetic, _weights(1, 49)), _exchange("evaluate", 1), [])
    threshold = final.f1_threshold()
    assert history.thresholds[1] == threshold and history.rounds[1].test["threshold"] == threshold
    assert history.validation == {"rows": 600, "pr-auc": final.pr_auc(), "log-loss": 0.25, **final.decisions(threshold)}
    assert history.stopped == Stop(1, 0.0, 0.001, 10).record() and history.final_round == 1


def test_drop_outs_are_named_with_their_step_and_attempt_and_the_time_breakdown_is_operational(history, synthetic):
    history.drop(Dropout("insurer-b", "round 1", 1, "no answer within 300 s"))
    assert history.dropouts[0]["member"] == "insurer-b" and history.dropouts[0]["attempt"] == 1
    assert history.events[-1]["event"] == "dropout" and history.events[-1]["reason"] == "no answer within 300 s"
    _round(history, synthetic, 1, _histogram(1), 0.69)
    [timing] = history.rounds[1].timing
    assert timing == {
        "stage": "round",
        "exchange": 3.0,
        "until-client-starts": 1.0,
        "client-startup": 1.0,
        "client-compute": 0.5,
        "reply-transport": 0.5,
    }


def test_the_stop_is_kept_for_the_outputs_and_announced_to_the_launcher(history, synthetic):
    stop = Stop(3, 0.0002, 0.001, 10)
    _round(history, synthetic, 1, _histogram(1), 0.6)
    _round(history, synthetic, 2, _histogram(2), 0.4)
    _round(history, synthetic, 3, _histogram(3), 0.3, stop=stop)
    assert history.stopped == stop.record()
    assert history.events[-1] == {"event": "stopped", **stop.record()}


def test_a_tree_runs_findings_make_one_version_per_tree_and_the_evaluation_decides_the_kept_one(history, synthetic):
    """Trees: each finished tree is a version scored on the test set; each root carries the validation loss of
    the trees so far; only the evaluation carries histograms, of the ensemble boosting kept."""
    from fl_runtime.learning.baselines import exact_totals, split_clients
    from fl_runtime.learning.gbdt import GRADIENT_BOOSTED_TREES as machine
    from fl_runtime.learning.task import ClientRows
    from fl_runtime.learning.trees import TreeSettings

    parts = [synthetic.subset(np.arange(600 + 800 * i, 1400 + 800 * i)) for i in range(3)]
    rows = [ClientRows(client, 0) for client in split_clients(parts, 0)]
    plan = TrainingPlan(family="gbdt", trees=TreeSettings(trees=3, depth=2, learning_rate=0.5))
    state = machine.start(plan, synthetic.features)
    while state.question is not None:
        question = state.question
        state, findings = machine.advance(state, exact_totals(machine, state, rows), len(rows))
        history.on_findings(findings, state, _exchange(question.kind, question.round), [])
    assert sorted(history.rounds) == [1, 2, 3] and history.final_round == 3
    assert history.totals == {"training-rows": sum(r.data.train.n_rows for r in rows),
                              "training-positives": sum(int(r.data.train.y.sum()) for r in rows)}  # fmt: skip
    assert set(history.thresholds) == {3} and "f1" in history.rounds[3].test and "f1" not in history.rounds[1].test
    assert all("log-loss" in history.rounds[v].validation for v in (1, 2, 3))  # each from a later root
    assert history.stopped["reason"].startswith("stopped boosting at the most trees (3, --trees)")
    assert [e["version"] for e in history.events if e["event"] == "round"] == ["trees"] * 3
    timings = [t["stage"] for t in history.rounds[1].timing]
    assert timings[:2] == ["bins", "bins"] and set(timings[2:]) == {"level"}


def test_a_tree_run_that_kept_no_tree_reports_the_baseline_as_its_model(history, synthetic):
    """When no tree lowered the pooled validation loss, boosting keeps none: the evaluation validates version 0,
    never made by a tree, and the report scores that model (the pooled base rate) rather than fail."""
    from fl_runtime.learning.binning import agree_edges
    from fl_runtime.learning.gbdt import GbdtState
    from fl_runtime.learning.trees import Ensemble, TreeSettings

    plan = TrainingPlan(family="gbdt")
    edges = tuple(agree_edges([synthetic.X], 20))
    state = GbdtState(plan, synthetic.features, None, TreeSettings(), edges=edges, ensemble=Ensemble(-2.0))
    final = _histogram(5)
    values = {"histogram": final, "validation-rows": 600, "validation-log-loss": 0.3}
    history.on_findings(Findings(Question(EVALUATE, 9), 3, values, validated=0), state, _exchange("evaluate", 9), [])
    assert history.final_round == 0 and history.thresholds == {0: final.f1_threshold()}
    assert history.rounds[0].test["roc-auc"] == 0.5 or np.isnan(history.rounds[0].test["roc-auc"])
