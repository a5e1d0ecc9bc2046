"""Global preprocessing statistics, computed federatedly from per-client sums.

Each member contributes the moments of log1p(features) over its training part (row count, positive
count, per-feature counts of present values, their sums and sums of squares), masked, and nothing else; raw
rows never leave a member. Every member and the server derive ``GlobalStats`` from the verified total: the
federation's mean of the present log1p values of each feature (what a missing value is imputed with, before
scaling), what a StandardScaler fitted on the pooled, imputed rows would compute, and the class balance every
member trains with (``balance``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fl_runtime import defaults
from fl_runtime.errors import DataError
from fl_runtime.learning.balance import SMOTE, calibration_logit
from fl_runtime.learning.data import LabelledData


@dataclass(frozen=True)
class FeatureMoments:
    """Sufficient statistics of log1p(features) on one party's rows, summable across parties."""

    n_rows: int
    n_positive: int
    total: np.ndarray  # over the present values
    total_squares: np.ndarray
    present: np.ndarray  # how many values of each feature are present (not missing)

    @classmethod
    def of(cls, data: LabelledData) -> FeatureMoments:
        logged = np.log1p(data.X)
        present = (~np.isnan(logged)).sum(axis=0)
        return cls(
            data.n_rows, data.n_positive, np.nansum(logged, axis=0), np.nansum(np.square(logged), axis=0), present
        )


def resampled_size(n_rows: int, n_positive: int, negatives_per_positive: float) -> int:
    """How many training examples a client has after oversampling to the federation's balance."""
    return n_rows - n_positive + max(n_positive, round(n_positive * negatives_per_positive))


@dataclass(frozen=True)
class GlobalStats:
    """What every client must know about the whole federation.

    - ``mean``/``scale``: standardisation of log1p(features), as a StandardScaler fitted on the pooled
      training rows would compute it (population standard deviation; 1 for constants), a missing value imputed
      with ``mean`` first (the mean of the present values, so imputing keeps it; 0 for a feature never present);
    - ``negatives_per_positive``: the federation's class ratio (N - P) / P, which SMOTE restores on every
      client and class weights are computed from;
    - ``prior_logit``: what is added to the intercept so the model's scores are calibrated probabilities:
      the log-odds of the real positive rate after training at balance (SMOTE, class weights), 0 for
      ``none`` (``balance.calibration_logit``);
    - ``class_balance``: the method every client trains with (``balance.METHODS``).
    """

    mean: np.ndarray
    scale: np.ndarray
    negatives_per_positive: float
    prior_logit: float
    class_balance: str = SMOTE

    @classmethod
    def from_moments(cls, parts: Sequence[FeatureMoments], class_balance: str = defaults.CLASS_BALANCE) -> GlobalStats:
        if not parts:
            raise ValueError("no feature moments to merge")
        n_rows = sum(p.n_rows for p in parts)
        n_positive = sum(p.n_positive for p in parts)
        if n_positive in (0, n_rows):
            raise DataError(f"the federation's training rows hold a single class ({n_positive} positive of {n_rows})")
        if not 0 < n_positive < n_rows:
            raise DataError(f"{n_positive} positives of {n_rows} training rows: not counts of rows")
        present = np.sum([p.present for p in parts], axis=0)
        mean = np.sum([p.total for p in parts], axis=0) / np.maximum(present, 1)
        # the imputed column: its present values and n_rows - present copies of the mean
        squares = np.sum([p.total_squares for p in parts], axis=0)
        variance = np.maximum((squares - present * np.square(mean)) / n_rows, 0.0)
        scale = np.sqrt(variance)
        scale = np.where(scale < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0), 1.0, scale)
        ratio = (n_rows - n_positive) / n_positive
        rate = n_positive / n_rows
        return cls(mean, scale, ratio, calibration_logit(class_balance, rate), class_balance)

    def impute(self, logged: np.ndarray) -> np.ndarray:
        """log1p values with every missing one replaced by its feature's federation mean."""
        return np.where(np.isnan(logged), self.mean, logged)

    def standardise(self, X: np.ndarray) -> np.ndarray:
        return (self.impute(np.log1p(X)) - self.mean) / self.scale
