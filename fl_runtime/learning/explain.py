"""Why the model scores a provider as it does: each feature's exact contribution to the logit.

(Boosted trees explain themselves with the same ``Explained``: ``tree_model.BoostedTreesModel.explain``.)

The published model is log1p -> StandardScaler -> NaN to 0 -> LogisticRegression (``model.build_pipeline``).
For a linear model the logit of a row is exactly the intercept plus, per feature, coefficient x standardised
value (a missing value is imputed with the mean the scaler centres on: it standardises to 0 and contributes 0); those
terms are the reasons an investigator reads ("total_claims pushed the score up by 1.7"). Nothing is
approximated, and the terms with the intercept sum to the logit whose sigmoid ``predict_proba`` returns.

NumPy only, and nothing of this package: the model's ``model.tar.gz`` ships this file next to its SageMaker
inference script, where ``fl_runtime`` is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEPS = ("log1p", "standardise", "impute", "logistic_regression")  # model.build_pipeline's step names
THRESHOLD_ATTRIBUTE = "fraud_threshold"  # the decision threshold the run chose, kept on the saved Pipeline


@dataclass(frozen=True)
class Explained:
    """Scores of a batch of rows: probability, logit and every feature's contribution to it."""

    logits: np.ndarray  # (rows,)
    contributions: np.ndarray  # (rows, features): coefficient x standardised value
    intercept: float

    @property
    def probabilities(self) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logits))

    def top(self, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Per row, the indices and contributions of the ``k`` features that pushed the score up most, largest
        first (a row with fewer than ``k`` positive terms still lists ``k``: the next ones pull it down least)."""
        k = min(k, self.contributions.shape[1])
        order = np.argsort(-self.contributions, axis=1, kind="stable")[:, :k]
        return order, np.take_along_axis(self.contributions, order, axis=1)


def explain(pipeline, rows: np.ndarray) -> Explained:
    """``rows``: raw feature values (rows x features, the model's column order), as the CSV holds them. A model
    that explains itself (the boosted trees: ``tree_model``, exact TreeSHAP contributions to the margin) does."""
    explains_itself = getattr(pipeline, "explain", None)
    if callable(explains_itself):
        return explains_itself(rows)
    steps = getattr(pipeline, "named_steps", {})
    if tuple(steps) != STEPS:
        raise ValueError(f"not a model of this project: expected the pipeline steps {STEPS}, got {tuple(steps)}")
    log, scaler, impute, classifier = (steps[name] for name in STEPS)
    standardised = impute.func((log.func(np.asarray(rows, dtype=np.float64)) - scaler.mean_) / scaler.scale_)
    contributions = standardised * classifier.coef_[0]
    intercept = float(classifier.intercept_[0])
    return Explained(intercept + contributions.sum(axis=1), contributions, intercept)


def threshold(pipeline) -> float:
    """The decision threshold the run chose on the clients' validation data, saved with the model. It may be 0
    (flag everything): the F1-best threshold when every validation score falls in the lowest histogram bin."""
    value = getattr(pipeline, THRESHOLD_ATTRIBUTE, None)
    if not isinstance(value, float) or not 0.0 <= value < 1.0:
        raise ValueError(
            f"the model carries no decision threshold ({THRESHOLD_ATTRIBUTE}); re-publish it with this version"
        )
    return value
