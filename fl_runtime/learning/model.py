"""Logistic regression: parameters, the local objective, local updates and the saved Pipeline.

Local training minimises, on one client's training rows (oversampled, for SMOTE),

    f_k(w) = (1 / n_k) sum_i s_i loss_i(w) + ||coef||^2 / (2 C N)

with N the number of training examples of the whole federation and s_i the example's class weight
(1 unless the class balance is ``class-weights``, whose weights come from the federation's global
counts: ``balance``). The example-weighted average sum_k (n_k / N) f_k is then exactly the pooled
objective that ``LogisticRegression(C=C)`` minimises on all clients' data together (with
``sample_weight=s``; up to the constant factor C N), which is what FedAvg, weighted by examples, averages.

L2 updates are Newton steps. A Newton step uses the curvature (Hessian) of the objective; each client
reports its per-example curvature next to its weights, FedAvg averages it with the same weights,
and in the next round every client steps with the FEDERATION's curvature instead of its own. The
average of the clients' steps is then a Newton step on the pooled objective, so FedAvg converges to
the centralised optimum even when clients' label rates differ wildly; with local curvature it would
settle on a compromise between local optima (measurably worse under label skew). L1 is not smooth
and uses scikit-learn's SAGA solver, without shared curvature.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fl_runtime.learning.data import SMOTE_NEIGHBOURS
from fl_runtime.learning.explain import THRESHOLD_ATTRIBUTE

PENALTIES = ("l2", "l1")


def uses_shared_curvature(share_curvature: bool, penalty: str) -> bool:
    """Whether clients step with the federation's curvature: asked for, and the penalty is L2. L1 trains
    with SAGA, which uses no curvature, so there is nothing to share."""
    return share_curvature and penalty == "l2"


@dataclass(frozen=True)
class Weights:
    """Logistic-regression parameters in scikit-learn's binary shapes: coef (1, n), intercept (1,)."""

    coef: np.ndarray
    intercept: np.ndarray

    def __post_init__(self) -> None:
        if self.coef.ndim != 2 or self.coef.shape[0] != 1 or self.intercept.shape != (1,):
            raise ValueError(
                f"weights must be coef (1, n) and intercept (1,), got {self.coef.shape} and {self.intercept.shape}"
            )
        if not (np.all(np.isfinite(self.coef)) and np.all(np.isfinite(self.intercept))):
            raise ValueError("weights contain NaN or infinite values")

    @classmethod
    def zeros(cls, n_features: int) -> Weights:
        return cls(np.zeros((1, n_features)), np.zeros(1))

    @classmethod
    def from_vector(cls, theta: np.ndarray) -> Weights:
        return cls(theta[:-1].reshape(1, -1).copy(), theta[-1:].copy())

    @property
    def vector(self) -> np.ndarray:
        """[coef..., intercept]: the layout of gradients and curvature matrices."""
        return np.concatenate([self.coef[0], self.intercept])

    def logits(self, Z: np.ndarray, offset: float = 0.0) -> np.ndarray:
        return Z @ self.coef[0] + self.intercept[0] + offset

    def probabilities(self, Z: np.ndarray, prior_logit: float) -> np.ndarray:
        """Calibrated fraud probabilities: scores of a model trained at balance, shifted to the real prior."""
        return _sigmoid(self.logits(Z, prior_logit))


def average(parts: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
    """The example-weighted mean FedAvg computes, for in-process replays of a round."""
    counts = np.array([count for _, count in parts], dtype=np.float64)
    return np.tensordot(counts / counts.sum(), np.stack([array for array, _ in parts]), axes=1)


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -500, 500)))


@dataclass(frozen=True)
class LocalObjective:
    """f_k on one client's standardised, oversampled training rows (see the module docstring).

    Works on the rows as they are, the intercept handled apart: no copy of the rows with a column of
    ones (a million rows are 400 MB a copy), and the curvature summed over blocks of rows.
    """

    Z: np.ndarray
    y: np.ndarray
    ridge: float  # 1 / (C N)
    sample_weight: np.ndarray | None = None  # class weights s_i; None: all 1

    BLOCK_ROWS = 32_768  # rows per block of the curvature sum: 13 MB of temporaries with 49 features

    @property
    def n_examples(self) -> int:
        return len(self.y)

    def _penalty_mask(self) -> np.ndarray:
        return np.r_[np.ones(self.Z.shape[1]), 0.0]  # the intercept is not penalised, as in sklearn

    def _logits(self, weights: Weights) -> np.ndarray:
        return weights.logits(self.Z)

    def _weighted(self, values: np.ndarray) -> np.ndarray:
        return values if self.sample_weight is None else values * self.sample_weight

    def gradient(self, weights: Weights) -> np.ndarray:
        residual = self._weighted(_sigmoid(self._logits(weights)) - self.y)
        gradient = np.append(self.Z.T @ residual, residual.sum()) / self.n_examples
        return gradient + self.ridge * self._penalty_mask() * weights.vector

    def curvature(self, weights: Weights) -> np.ndarray:
        p = _sigmoid(self._logits(weights))
        example_weights = self._weighted(p * (1 - p))
        features = self.Z.shape[1]
        hessian = np.zeros((features + 1, features + 1))
        for start in range(0, self.n_examples, self.BLOCK_ROWS):
            rows = self.Z[start : start + self.BLOCK_ROWS]
            hessian[:features, :features] += (rows.T * example_weights[start : start + self.BLOCK_ROWS]) @ rows
        hessian[:features, features] = hessian[features, :features] = self.Z.T @ example_weights
        hessian[features, features] = example_weights.sum()
        return hessian / self.n_examples + np.diag(self.ridge * self._penalty_mask())

    def log_loss(self, weights: Weights) -> float:
        """(1 / n_k) sum_i s_i loss_i: the client's loss term of f_k (the plain mean log loss if unweighted)."""
        logits = self._logits(weights)
        return float(np.mean(self._weighted(np.logaddexp(0.0, logits) - self.y * logits)))

    def value(self, weights: Weights) -> float:
        """f_k itself: the weighted loss plus the client's share of the penalty."""
        coef = weights.coef[0]
        return self.log_loss(weights) + 0.5 * self.ridge * float(coef @ coef)


def newton_step(objective: LocalObjective, weights: Weights, curvature: np.ndarray) -> Weights:
    """One Newton step on ``objective`` with the given curvature (the federation's or its own)."""
    step = np.linalg.solve(curvature, objective.gradient(weights))
    return Weights.from_vector(weights.vector - step)


def _penalty_kwargs(penalty: str) -> dict:
    """scikit-learn >= 1.8 deprecated ``penalty`` for ``l1_ratio`` (0 = L2, 1 = L1); 1.4 only knows ``penalty``."""
    from sklearn.linear_model import LogisticRegression

    if inspect.signature(LogisticRegression).parameters["penalty"].default == "deprecated":
        return {"l1_ratio": 1.0 if penalty == "l1" else 0.0}
    return {"penalty": penalty}


def l1_update(objective: LocalObjective, weights: Weights, epochs: int) -> Weights:
    """L1 is not smooth: ``epochs`` passes of scikit-learn's SAGA, warm-started from ``weights``.

    sklearn minimises C * sum(loss) + ||coef||_1; C = 1 / (ridge * n) gives it the same balance of
    loss and penalty per example as ``objective``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(
        C=1.0 / (objective.ridge * objective.n_examples),
        solver="saga",
        max_iter=epochs,
        warm_start=True,
        tol=1e-8,
        **_penalty_kwargs("l1"),
    )
    model.coef_ = weights.coef.copy()
    model.intercept_ = weights.intercept.copy()
    with warnings.catch_warnings():
        # A few epochs per round is the point of federated training, not a failure to converge.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(objective.Z, objective.y, sample_weight=objective.sample_weight)
    return Weights(model.coef_.copy(), model.intercept_.copy())


def fit_to_convergence(
    Z: np.ndarray, y: np.ndarray, C: float, penalty: str, sample_weight: np.ndarray | None = None
) -> Weights:
    """scikit-learn's own solver on one dataset: the reference the baselines train with.

    ``LogisticRegression(C=C)`` minimises C * sum(s_i loss_i) + penalty, the pooled objective itself; an
    independent solver, so comparing it with the federated Newton steps also checks them.
    """
    from sklearn.linear_model import LogisticRegression

    solver = "saga" if penalty == "l1" else "lbfgs"
    model = LogisticRegression(C=C, solver=solver, max_iter=10_000, tol=1e-10, **_penalty_kwargs(penalty)).fit(
        Z, y, sample_weight=sample_weight
    )
    return Weights(model.coef_.copy(), model.intercept_.copy())


def oversample(Z: np.ndarray, y: np.ndarray, negatives_per_positive: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE on standardised training rows only, to the FEDERATION's class balance.

    Each client synthesises positives around its own real positives until it has
    ``negatives_per_positive`` of them per real one, the ratio being the federation's (from the
    moments round), not its own. The union of the clients' oversampled parts is then balanced as
    SMOTE on pooled data would balance it, with synthetic positives spread over the clients in
    proportion to their real positives. Oversampling each client to its own 50/50 instead would turn
    a handful of positives into thousands of near-copies and over-weight them in the average.
    """
    from imblearn.over_sampling import SMOTE

    from fl_runtime.learning.stats import resampled_size

    n_positive = int(y.sum())
    target = resampled_size(len(y), n_positive, negatives_per_positive) - (len(y) - n_positive)
    if target == n_positive:
        return Z, y
    return SMOTE(sampling_strategy={1: target}, random_state=seed, k_neighbors=SMOTE_NEIGHBOURS).fit_resample(Z, y)


def build_pipeline(
    features: Sequence[str],
    mean: np.ndarray,
    scale: np.ndarray,
    weights: Weights,
    prior_logit: float,
    threshold: float | None = None,
):
    """The deliverable: a fitted scikit-learn Pipeline that predicts on raw CSV rows.

    log1p -> StandardScaler(global mean/scale) -> LogisticRegression, its intercept shifted by the
    prior log-odds so predict_proba gives calibrated probabilities. Built only from library classes,
    so ``joblib.load`` needs scikit-learn but not this package. ``threshold``, the decision threshold the
    run chose, travels with the model (``explain.THRESHOLD_ATTRIBUTE``) so that whoever scores with it
    flags what the run's metrics were measured at; only the server knows it, after the final round.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    names = np.asarray(list(features), dtype=object)
    log = FunctionTransformer(np.log1p, feature_names_out="one-to-one")
    log.fit(np.zeros((1, len(names))))
    log.feature_names_in_ = names  # the pipeline then checks the column names of DataFrame input
    scaler = StandardScaler()
    scaler.mean_ = mean.copy()
    scaler.scale_ = scale.copy()
    scaler.var_ = np.square(scale)
    scaler.n_features_in_ = len(names)
    scaler.n_samples_seen_ = 0
    classifier = LogisticRegression()
    classifier.coef_ = weights.coef.copy()
    classifier.intercept_ = weights.intercept + prior_logit
    classifier.classes_ = np.array([0, 1])
    classifier.n_features_in_ = len(names)
    classifier.n_iter_ = np.array([0], dtype=np.int32)
    pipeline = Pipeline([("log1p", log), ("standardise", scaler), ("logistic_regression", classifier)])
    if threshold is not None:
        setattr(pipeline, THRESHOLD_ATTRIBUTE, float(threshold))
    return pipeline
