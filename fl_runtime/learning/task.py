"""The federated task as one member sees it: the run's settings, its rows split once, and its rows prepared.

The ClientApp and the in-process replay (``baselines``) answer every question of a model family
(``families``) from these objects, so both train exactly the same model.

Per member: a stratified train/validation split made once, with the member's own seed; moments of the training
part for the global statistics; the standardised training part balanced by the run's class-balance method
(SMOTE to the federation's class balance, or class weights from its global counts, or nothing: ``balance``);
its sums over those rows at the model every member derived from the previous round's verified totals; score
histograms of its validation part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from fl_runtime import defaults
from fl_runtime.errors import OptionsError
from fl_runtime.learning.balance import CLASS_WEIGHTS, METHODS, SMOTE, example_weights
from fl_runtime.learning.convergence import Stop, stop_after
from fl_runtime.learning.data import LabelledData
from fl_runtime.learning.metrics import ScoreHistogram, ranking_metrics, summed_log_loss
from fl_runtime.learning.model import RowSums, Weights, oversample, row_sums, weighing_in
from fl_runtime.learning.stats import FeatureMoments, GlobalStats
from fl_runtime.learning.trees import TreeSettings

VALIDATION_FRACTION = 0.2
PENALTIES = ("l2", "l1")
LOGISTIC, GBDT = defaults.FAMILIES
FAMILIES = defaults.FAMILIES  # each a state machine, registered in ``families``


def pick_family(validation_pr_auc: Mapping[str, float]) -> str:
    """The family whose model has the highest PR-AUC on the members' pooled validation parts (ties: the first
    listed; a NaN never wins, unless every score is NaN: then the first). ``compare --model auto`` picks per split
    by it, and ``local``/``federate --model auto`` per run: validation totals, never the server's test set."""
    if not validation_pr_auc:
        raise ValueError("no family to pick from")
    usable = {name: score for name, score in validation_pr_auc.items() if not math.isnan(score)}
    return max(usable, key=lambda name: usable[name]) if usable else next(iter(validation_pr_auc))


@dataclass(frozen=True)
class TrainConfig:
    """What every member's objective is.

    ``C`` is the inverse regularisation strength of the POOLED problem: the value you would give
    LogisticRegression on all members' data together. ``class_balance`` is one of ``balance.METHODS``.
    """

    C: float = defaults.C
    penalty: str = defaults.PENALTY
    class_balance: str = defaults.CLASS_BALANCE

    def __post_init__(self) -> None:
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
        """As run-config keys: one spelling for the launchers, the ServerApp and the members' checks."""
        return {"C": float(self.C), "penalty": self.penalty, "class-balance": self.class_balance}

    @classmethod
    def from_config(cls, config) -> TrainConfig:
        return cls(float(config["C"]), str(config["penalty"]), str(config["class-balance"]))


@dataclass(frozen=True)
class TrainingPlan:
    """How the federation trains: the model family, at most ``rounds`` rounds, stopping earlier at convergence
    (``tolerance``, see ``convergence``), and the objective. ``seed`` is a member's own: its train/validation
    split and its SMOTE draw (each member's comes from its own settings, never from the server; the in-process
    replay gives every member the same one)."""

    rounds: int = defaults.ROUNDS
    train: TrainConfig = TrainConfig()
    seed: int = defaults.SEED
    tolerance: float = defaults.CONVERGENCE_TOLERANCE
    family: str = defaults.FAMILY
    trees: TreeSettings = field(default_factory=TreeSettings)  # the gbdt family's

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise OptionsError(f"--rounds must be at least 1, got {self.rounds}")
        tolerance = self.tolerance
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 <= tolerance < math.inf:
            raise OptionsError(f"--tolerance must be a number of at least 0 (0: every round), got {tolerance!r}")
        if self.family not in FAMILIES:
            raise OptionsError(f"model family must be one of {', '.join(FAMILIES)}, got {self.family!r}")

    def stop_after(self, server_round: int, previous: Weights, current: Weights) -> Stop | None:
        """Whether training ends with this round (``convergence.stop_after``): the one rule of every party."""
        return stop_after(server_round, previous, current, self.tolerance, self.rounds)

    def to_config(self) -> dict:
        """The settings every member checks against its own ranges (the seed is not one: each member has its own)."""
        return {
            "family": self.family,
            "num-server-rounds": self.rounds,
            "convergence-tolerance": float(self.tolerance),
            **self.train.to_config(),
            **self.trees.to_config(),
        }

    @classmethod
    def from_config(cls, config, seed: int = defaults.SEED) -> TrainingPlan:
        """The inverse of ``to_config`` (KeyError or OptionsError naming what is missing or wrong)."""
        return cls(
            rounds=config["num-server-rounds"],
            train=TrainConfig.from_config(config),
            seed=seed,
            tolerance=config["convergence-tolerance"],
            family=config["family"],
            trees=TreeSettings.from_config(config),
        )


@dataclass(frozen=True)
class PreparedClient:
    """A member's rows ready for rounds: the standardised training part (oversampled, for SMOTE; with its
    class weights, for class-weights) and the standardised validation part. Computed once per run (SMOTE
    is the expensive step)."""

    train_Z: np.ndarray
    train_y: np.ndarray
    validation_Z: np.ndarray
    validation_y: np.ndarray
    train_weights: np.ndarray | None = None

    @property
    def n_examples(self) -> int:
        return len(self.train_y)

    @property
    def max_class_weight(self) -> float:
        return 1.0 if self.train_weights is None else float(self.train_weights.max(initial=1.0))

    def sums(self, weights: Weights) -> RowSums:
        """This member's terms of the pooled objective at ``weights``."""
        return row_sums(self.train_Z, self.train_y, weights, self.train_weights)

    def weighing_in(self, weights: Weights) -> float:
        """How many training examples effectively shape an answer at ``weights`` (``model.RowSums.weighing_in``)."""
        return weighing_in(self.train_Z, self.train_y, weights, self.train_weights)

    def histogram(self, weights: Weights, prior_logit: float) -> ScoreHistogram:
        return ScoreHistogram.of(self.validation_y, weights.probabilities(self.validation_Z, prior_logit))

    def validation_loss(self, weights: Weights, prior_logit: float) -> float:
        """Summed log loss of the calibrated probabilities on the validation rows (clipped as scikit-learn's)."""
        return summed_log_loss(self.validation_y, weights.probabilities(self.validation_Z, prior_logit))

    def validation_metrics(self, weights: Weights, prior_logit: float) -> dict[str, float]:
        return ranking_metrics(self.validation_y, weights.probabilities(self.validation_Z, prior_logit))


@dataclass(frozen=True)
class ClientData:
    """One member's rows, split once into the part it trains on and the part it validates on."""

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
        return PreparedClient(Z, y.astype(np.float64), stats.standardise(self.validation.X), self.validation.y, weights)


@dataclass
class ClientRows:
    """A member's rows for one run: split when first asked, prepared once the global statistics exist, then
    kept (a warm ClientApp keeps this object from the first question of a run to the last)."""

    data: ClientData
    seed: int
    _prepared: tuple[GlobalStats, PreparedClient] | None = field(default=None, repr=False)
    cache: dict = field(default_factory=dict, repr=False)  # what a family derives once from the rows (bin codes)

    def prepared(self, stats: GlobalStats) -> PreparedClient:
        if self._prepared is None or self._prepared[0] is not stats:
            self._prepared = (stats, self.data.prepare(stats, self.seed))
        return self._prepared[1]
