"""The three ways to train on one split, in process: centralised, local-only and federated.

``compare`` uses them to test the project's core claim (federated close to centralised, well above
local-only) quickly and over many seeds. ``federated`` replays what the ServerApp and the ClientApps
do over Flower (moments round, the same client updates, example-weighted averaging of weights and
curvature, the same stopping and threshold rules) without the transport; the end-to-end tests check
that the real federation lands on the same model. Centralised and local-only models are fitted by
scikit-learn's own solver on the pooled (or one client's) rows, balanced by the plan's class-balance
method (pooled SMOTE, class weights from the pooled counts, or none).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fl_runtime.learning.convergence import Stop
from fl_runtime.learning.data import LabelledData
from fl_runtime.learning.metrics import ScoreHistogram, decision_metrics, ranking_metrics
from fl_runtime.learning.model import Weights, average, fit_to_convergence
from fl_runtime.learning.stats import GlobalStats
from fl_runtime.learning.task import ClientData, PreparedClient, TrainingPlan


@dataclass(frozen=True)
class Outcome:
    """A trained model and how it did on the server's test set at its validation-chosen threshold, and the
    PR-AUC of its scores on the clients' pooled validation parts (from their histograms: what ``auto``
    chooses by)."""

    name: str
    weights: Weights
    stats: GlobalStats
    threshold: float
    test: dict[str, float]
    stop: Stop | None = None  # federated: after which round and why training stopped
    validation_pr_auc: float = math.nan


def evaluate(
    name: str,
    prepared: Sequence[PreparedClient],
    weights: Weights,
    stats: GlobalStats,
    test: LabelledData,
    stop: Stop | None = None,
) -> Outcome:
    histogram = sum((p.histogram(weights, stats.prior_logit) for p in prepared), ScoreHistogram.empty())
    threshold = histogram.f1_threshold()
    p_test = weights.probabilities(stats.standardise(test.X), stats.prior_logit)
    metrics = {**ranking_metrics(test.y, p_test), **decision_metrics(test.y, p_test, threshold)}
    return Outcome(name, weights, stats, threshold, metrics, stop, histogram.pr_auc())


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
    """FedAvg as the ServerApp runs it, in process, until the plan's stopping rule ends it."""
    stats = GlobalStats.from_moments([client.moments() for client in clients], plan.train.class_balance)
    prepared = [client.prepare(stats, plan.seed) for client in clients]
    weights, curvature = Weights.zeros(len(test.features)), None
    stop = None
    server_round = 0
    while stop is None:
        server_round += 1
        updates = [p.update(weights, plan.train, curvature) for p in prepared]
        previous, weights = weights, Weights.from_vector(average([(u.weights.vector, u.n_examples) for u in updates]))
        if plan.uses_shared_curvature:
            curvature = average([(u.curvature, u.n_examples) for u in updates if u.curvature is not None])
        stop = plan.stop_after(server_round, previous, weights)
    return evaluate(name, prepared, weights, stats, test, stop)


def split_clients(datasets: Sequence[LabelledData], seed: int) -> list[ClientData]:
    return [ClientData.split(data, seed) for data in datasets]
