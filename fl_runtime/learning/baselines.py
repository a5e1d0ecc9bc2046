"""The three ways to train on one split, in process: centralised, local-only and federated.

``compare`` uses them to test the project's core claim (federated close to centralised, well above
local-only) quickly and over many seeds. ``federated`` replays what the ServerApp and the ClientApps
do over Flower (the same state machine, the same fixed-point totals, the same stopping and threshold rules)
without the transport; the end-to-end tests check
that the real federation lands on the same model. Centralised and local-only models are fitted by
scikit-learn's own solver on the pooled (or one client's) rows, balanced by the plan's class-balance
method (pooled SMOTE, class weights from the pooled counts, or none).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fl_runtime.learning import fixed_point
from fl_runtime.learning.data import LabelledData
from fl_runtime.learning.families import family
from fl_runtime.learning.machine import Family
from fl_runtime.learning.metrics import ScoreHistogram, decision_metrics, ranking_metrics
from fl_runtime.learning.model import Weights, fit_to_convergence
from fl_runtime.learning.stats import GlobalStats
from fl_runtime.learning.task import ClientData, ClientRows, PreparedClient, TrainingPlan
from fl_runtime.learning.trees import TreeSettings


@dataclass(frozen=True)
class Outcome:
    """A trained model and how it did on the server's test set at its validation-chosen threshold, and the
    PR-AUC of its scores on the clients' pooled validation parts (from their histograms: what ``auto``
    chooses by). A scikit-learn reference carries its ``weights`` and ``stats``; a federation its machine's final
    ``state`` and why it stopped (``stop``, ``machine.Findings.stop``)."""

    name: str
    threshold: float
    test: dict[str, float]
    stop: dict | None = None
    validation_pr_auc: float = math.nan
    weights: Weights | None = None
    stats: GlobalStats | None = None
    state: Any = None


def evaluate(
    name: str,
    prepared: Sequence[PreparedClient],
    weights: Weights,
    stats: GlobalStats,
    test: LabelledData,
) -> Outcome:
    histogram = sum((p.histogram(weights, stats.prior_logit) for p in prepared), ScoreHistogram.empty())
    p_test = weights.probabilities(stats.standardise(test.X), stats.prior_logit)
    return _measured(name, histogram, test, p_test, weights=weights, stats=stats)


def _measured(name: str, histogram: ScoreHistogram, test: LabelledData, p_test: np.ndarray, **model) -> Outcome:
    """The test metrics at the threshold the validation histogram fixes (F1-best)."""
    threshold = histogram.f1_threshold()
    metrics = {**ranking_metrics(test.y, p_test), **decision_metrics(test.y, p_test, threshold)}
    return Outcome(name, threshold, metrics, validation_pr_auc=histogram.pr_auc(), **model)


def _pooled(clients: Sequence[ClientData]) -> ClientData:
    def stack(parts: list[LabelledData]) -> LabelledData:
        return LabelledData(
            parts[0].features, np.vstack([p.X for p in parts]), np.concatenate([p.y for p in parts]), "pooled"
        )

    return ClientData(stack([c.train for c in clients]), stack([c.validation for c in clients]))


def alone(name: str, client: ClientData, test: LabelledData, plan: TrainingPlan) -> Outcome:
    """Train on one dataset with its own statistics, class balance and threshold, to convergence."""
    stats = GlobalStats.from_moments([client.moments()], plan.train.class_balance)
    prepared = client.prepare(stats, plan.seed)
    weights = fit_to_convergence(
        prepared.train_Z, prepared.train_y, plan.train.C, plan.train.penalty, prepared.train_weights
    )
    return evaluate(name, [prepared], weights, stats, test)


def centralised(
    clients: Sequence[ClientData], test: LabelledData, plan: TrainingPlan, name: str = "centralised"
) -> Outcome:
    """Everything pooled: the clients' training parts together, balanced as one (one SMOTE, or class weights
    from the pooled counts, or nothing), one fit."""
    return alone(name, _pooled(clients), test, plan)


def federated(
    clients: Sequence[ClientData], test: LabelledData, plan: TrainingPlan, name: str = "federated"
) -> Outcome:
    """The federation as the members and the server run it, in process: the same state machine, every answer
    encoded in fixed point and the integers added (masks, which cancel in the sum, and signatures left out), until
    the plan's stopping rule ends it. The real federation's totals are these integers exactly."""
    machine = family(plan.family)
    rows = [ClientRows(client, plan.seed) for client in clients]
    state = machine.start(plan, tuple(test.features))
    stop = None
    while state.question is not None:
        state, findings = machine.advance(state, exact_totals(machine, state, rows), len(rows))
        stop = findings.stop or stop
    outcome = _measured(name, findings.values["histogram"], test, machine.probabilities(state, test.X), state=state)
    return dataclasses.replace(outcome, stop=stop)


def exact_totals(machine: Family, state, rows: Sequence[ClientRows], min_rows: int = 1) -> dict[str, np.ndarray]:
    """The decoded total of every member's fixed-point answer to the state's question."""
    layout = machine.layout(state)
    encoded = [layout.encode(machine.answer(state, member, min_rows)) for member in rows]
    return layout.decode(fixed_point.add(encoded), len(rows))


def pooled_reference(name: str, clients: Sequence[ClientData], test: LabelledData, model) -> Outcome:
    """A scikit-learn-style classifier fitted on the pooled training parts, its threshold from the pooled
    validation parts (as the federation's comes from the members' validation histograms)."""
    pooled = _pooled(clients)
    model.fit(pooled.train.X, pooled.train.y)
    validation = ScoreHistogram.of(pooled.validation.y, model.predict_proba(pooled.validation.X)[:, 1])
    return _measured(name, validation, test, model.predict_proba(test.X)[:, 1])


def xgboost_reference(settings: TreeSettings):
    """XGBoost as the issue pins it: hist, the same depth, trees and learning rate, lambda = l2, 255 bins."""
    from xgboost import XGBClassifier

    return XGBClassifier(
        tree_method="hist",
        max_depth=settings.depth,
        n_estimators=settings.trees,
        learning_rate=settings.learning_rate,
        reg_lambda=settings.l2,
        max_bin=255,
        n_jobs=2,
        random_state=0,
    )


def hist_gradient_boosting_reference(settings: TreeSettings):
    """scikit-learn's histogram boosting with the tree machine's settings and no early stopping (255 bins, its
    default, and one for missing values: on the federation's bin codes it grows the federation's trees)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=settings.trees,
        max_depth=settings.depth,
        learning_rate=settings.learning_rate,
        l2_regularization=settings.l2,
        min_samples_leaf=settings.min_rows_leaf,
        max_leaf_nodes=None,
        early_stopping=False,
        random_state=0,
    )


def split_clients(datasets: Sequence[LabelledData], seed: int) -> list[ClientData]:
    return [ClientData.split(data, seed) for data in datasets]
