"""The federated task as one client sees it: its data, its round of training, its evaluation.

The ClientApp translates Flower messages into calls to ``ClientData``; the in-process baselines
(``baselines.py``) call the same methods, so both train exactly the same model.

Per client: a stratified train/validation split made once; moments of the training part for the
global statistics; the standardised training part balanced by the run's class-balance method (SMOTE to
the federation's class balance, or class weights from its global counts, or nothing: ``balance``); each
round a local update from the global weights; validation score histograms for the threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fl_runtime import defaults
from fl_runtime.errors import OptionsError
from fl_runtime.learning.balance import CLASS_WEIGHTS, METHODS, SMOTE, example_weights
from fl_runtime.learning.convergence import Stop, stop_after
from fl_runtime.learning.data import LabelledData
from fl_runtime.learning.metrics import ScoreHistogram, ranking_metrics
from fl_runtime.learning.model import (
    PENALTIES,
    LocalObjective,
    Weights,
    l1_update,
    newton_step,
    oversample,
    uses_shared_curvature,
)
from fl_runtime.learning.stats import FeatureMoments, GlobalStats

VALIDATION_FRACTION = 0.2


@dataclass(frozen=True)
class TrainConfig:
    """What the server asks of every client in a round.

    ``C`` is the inverse regularisation strength of the POOLED problem: the value you would give
    LogisticRegression on all clients' data together. ``local_iterations`` counts Newton steps (L2)
    or SAGA epochs (L1) per round. ``class_balance`` is one of ``balance.METHODS``.
    """

    local_iterations: int = defaults.LOCAL_ITERATIONS
    C: float = defaults.C
    penalty: str = defaults.PENALTY
    class_balance: str = defaults.CLASS_BALANCE

    def __post_init__(self) -> None:
        if (
            isinstance(self.local_iterations, bool)
            or not isinstance(self.local_iterations, int)
            or self.local_iterations < 1
        ):
            raise OptionsError(f"local-iterations must be a whole number of at least 1, got {self.local_iterations!r}")
        if (
            isinstance(self.C, bool)
            or not isinstance(self.C, (int, float))
            or not (math.isfinite(self.C) and self.C > 0)
        ):
            raise OptionsError(f"C must be a positive number, got {self.C!r}")
        if self.penalty not in PENALTIES:
            raise OptionsError(f"penalty must be one of {', '.join(PENALTIES)}, got {self.penalty!r}")
        if self.class_balance not in METHODS:
            raise OptionsError(f"class-balance must be one of {', '.join(METHODS)}, got {self.class_balance!r}")

    def to_config(self) -> dict:
        """As run config and message config keys: one spelling for the launchers, the ServerApp and the ClientApp."""
        return {
            "local-iterations": self.local_iterations,
            "C": float(self.C),
            "penalty": self.penalty,
            "class-balance": self.class_balance,
        }

    @classmethod
    def from_config(cls, config) -> TrainConfig:
        return cls(
            int(config["local-iterations"]), float(config["C"]), str(config["penalty"]), str(config["class-balance"])
        )


@dataclass(frozen=True)
class TrainingPlan:
    """How the federation trains: at most ``rounds`` rounds, stopping earlier at convergence (``tolerance``,
    see ``convergence``), what each client does per round, whether clients share curvature, and the seed of
    their splits and SMOTE. What ``compare`` replays in process and what a launcher asks of the ServerApp."""

    rounds: int = defaults.ROUNDS
    train: TrainConfig = TrainConfig()
    share_curvature: bool = defaults.SHARE_CURVATURE
    seed: int = defaults.SEED
    tolerance: float = defaults.CONVERGENCE_TOLERANCE

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise OptionsError(f"--rounds must be at least 1, got {self.rounds}")
        tolerance = self.tolerance
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < math.inf:
            raise OptionsError(f"--tolerance must be a number of at least 0 (0: every round), got {tolerance!r}")

    def stop_after(self, server_round: int, previous: Weights, current: Weights) -> Stop | None:
        """Whether training ends with this round (``convergence.stop_after``): the one rule of every loop."""
        return stop_after(server_round, previous, current, self.tolerance, self.rounds)

    @property
    def uses_shared_curvature(self) -> bool:
        return uses_shared_curvature(self.share_curvature, self.train.penalty)


@dataclass(frozen=True)
class ClientUpdate:
    weights: Weights
    n_examples: int
    curvature: np.ndarray | None  # per-example curvature at the incoming weights (L2 only)
    train_loss: float  # mean log loss of the incoming weights on the training part


@dataclass(frozen=True)
class PreparedClient:
    """A client's rows ready for rounds: the standardised training part (oversampled, for SMOTE; with its
    class weights, for class-weights) and the standardised validation part. Computed once per run (SMOTE
    is the expensive step)."""

    train_Z: np.ndarray
    train_y: np.ndarray
    validation_Z: np.ndarray
    validation_y: np.ndarray
    pooled_examples: int
    train_weights: np.ndarray | None = None

    @property
    def n_examples(self) -> int:
        return len(self.train_y)

    def objective(self, C: float) -> LocalObjective:
        return LocalObjective(self.train_Z, self.train_y, 1.0 / (C * self.pooled_examples), self.train_weights)

    def update(self, start: Weights, config: TrainConfig, shared_curvature: np.ndarray | None = None) -> ClientUpdate:
        """One round of local training from the global ``start`` weights.

        L2: ``local_iterations`` Newton steps, with the federation's curvature when the server sent
        one and the client's own otherwise. Reports its own curvature at ``start`` for the average.
        """
        objective = self.objective(config.C)
        loss = objective.log_loss(start)
        if config.penalty == "l1":
            return ClientUpdate(l1_update(objective, start, config.local_iterations), self.n_examples, None, loss)
        own_curvature = objective.curvature(start)
        weights = start
        for step in range(config.local_iterations):
            if shared_curvature is not None:
                curvature = shared_curvature
            else:
                curvature = own_curvature if step == 0 else objective.curvature(weights)
            weights = newton_step(objective, weights, curvature)
        return ClientUpdate(weights, self.n_examples, own_curvature, loss)

    def histogram(self, weights: Weights, prior_logit: float) -> ScoreHistogram:
        return ScoreHistogram.of(self.validation_y, weights.probabilities(self.validation_Z, prior_logit))

    def validation_metrics(self, weights: Weights, prior_logit: float) -> dict[str, float]:
        return ranking_metrics(self.validation_y, weights.probabilities(self.validation_Z, prior_logit))


@dataclass(frozen=True)
class ClientData:
    """One client's rows, split once into the part it trains on and the part it validates on."""

    train: LabelledData
    validation: LabelledData

    @classmethod
    def split(cls, data: LabelledData, seed: int, validation_fraction: float = VALIDATION_FRACTION) -> ClientData:
        from sklearn.model_selection import train_test_split

        train_rows, validation_rows = train_test_split(
            np.arange(data.n_rows), test_size=validation_fraction, stratify=data.y, random_state=seed
        )
        return cls(data.subset(np.sort(train_rows)), data.subset(np.sort(validation_rows)))

    def moments(self) -> FeatureMoments:
        """Only the training part counts towards the global statistics."""
        return FeatureMoments.of(self.train)

    def prepare(self, stats: GlobalStats, seed: int) -> PreparedClient:
        """Standardise with the global statistics and balance the training part by ``stats.class_balance``."""
        Z, y = stats.standardise(self.train.X), self.train.y
        weights = None
        if stats.class_balance == SMOTE:
            Z, y = oversample(Z, y, stats.negatives_per_positive, seed)
        elif stats.class_balance == CLASS_WEIGHTS:
            weights = example_weights(y, stats.negatives_per_positive)
        return PreparedClient(
            Z,
            y.astype(np.float64),
            stats.standardise(self.validation.X),
            self.validation.y,
            stats.pooled_examples,
            weights,
        )
