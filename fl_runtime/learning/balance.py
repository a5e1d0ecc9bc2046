"""Class balance: how training makes up for 9 % fraud, by one of three methods a federation does exactly.

- ``smote``: each client oversamples its own positives (SMOTE) to the FEDERATION's class balance
  (``model.oversample``); the model trains at a balanced prior.
- ``class-weights``: no new rows; every training example is weighted by its class, from the federation's
  GLOBAL counts (the moments round gives them): with N rows of which P positive, a positive weighs
  N / (2 P) and a negative N / (2 (N - P)), scikit-learn's ``class_weight="balanced"`` on the pooled rows.
  The weights are the same on every client, so the example-weighted average of the clients' weighted
  objectives is exactly the pooled class-weighted objective (``model.LocalObjective``).
- ``none``: the rows as they are (plain logistic regression).

Calibration. A model trained with positives up-weighted by w1 and negatives by w0 estimates the odds of
a population in which positives are w1 / w0 times as frequent: its logits are the true log-odds plus
log(w1 / w0) (the weighted likelihood equals the likelihood under that reweighted prior). Adding
log(w0 / w1) = log(P / (N - P)), the log-odds of the real fraud rate, calibrates it again: the same shift
as after SMOTE to balance, and none for ``none`` (its intercept already makes the mean probability equal
the fraud rate on the training rows).

``auto`` is not a method but a choice among them, made on the clients' pooled validation data
(``compare.choose_class_balance``), never on the server's test set.
"""

from __future__ import annotations

import math

import numpy as np

SMOTE = "smote"
CLASS_WEIGHTS = "class-weights"
NONE = "none"
METHODS = (SMOTE, CLASS_WEIGHTS, NONE)
AUTO = "auto"
CHOICES = (*METHODS, AUTO)


def class_weights(negatives_per_positive: float) -> tuple[float, float]:
    """(negative weight, positive weight) from the federation's class ratio (N - P) / P: N / (2 (N - P))
    and N / (2 P). They average to 1 over the pooled rows, so the pooled objective keeps its scale."""
    ratio = float(negatives_per_positive)
    return (1.0 + ratio) / (2.0 * ratio), (1.0 + ratio) / 2.0


def example_weights(y: np.ndarray, negatives_per_positive: float) -> np.ndarray:
    negative, positive = class_weights(negatives_per_positive)
    return np.where(np.asarray(y) == 1, positive, negative).astype(np.float64)


def calibration_logit(method: str, positive_rate: float) -> float:
    """What the intercept needs for calibrated probabilities after training with ``method`` (see above)."""
    if method not in METHODS:
        raise ValueError(f"class balance must be one of {', '.join(METHODS)}, got {method!r}")
    return 0.0 if method == NONE else math.log(positive_rate / (1.0 - positive_rate))
