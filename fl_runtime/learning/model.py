"""Logistic regression: parameters, one party's sums over its rows, reference fits and the saved Pipeline.

The federation minimises the pooled objective of ``LogisticRegression(C=C)`` on all members' training rows,

    F(w) = (1 / N) sum_i s_i loss_i(w) + penalty(coef) / (C N)

with N the number of training examples of the whole federation and s_i the example's class weight (1 unless
the class balance is ``class-weights``: ``balance``). Every term of F, of its gradient and of its Hessian is a
sum over rows, so each member contributes its ``RowSums`` and the pooled step is computed from their totals
alone (``logistic``): no member ever takes a model, a statistic or a question from the server.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fl_runtime.learning.data import SMOTE_NEIGHBOURS
from fl_runtime.learning.explain import THRESHOLD_ATTRIBUTE

PENALTIES = ("l2", "l1")


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


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -500, 500)))


def _spread(logits: np.ndarray) -> np.ndarray:
    """p (1 - p) of each logit, computed as exp(-|l|) / (1 + exp(-|l|))^2: no cancellation to 0 when p rounds to 1."""
    tail = np.exp(-np.abs(logits))
    return tail / np.square(1.0 + tail)


MAX_ROW_LOSS = 34.54  # -log(1e-15): a row's log loss counts at most this much (scikit-learn's log_loss clips so)


@dataclass(frozen=True)
class RowSums:
    """One party's sums over its (standardised, balanced) training examples at one model: what it contributes
    to a round of pooled Newton. With s_i the example's class weight, p_i its probability, x_i = [z_i, 1]:

    - ``examples``: the number of examples n (after oversampling, for SMOTE);
    - ``loss``: sum s_i loss_i (each row's log loss capped at ``MAX_ROW_LOSS``);
    - ``gradient``: sum s_i (p_i - y_i) x_i, the gradient of the summed loss;
    - ``curvature``: sum s_i p_i (1 - p_i) x_i x_i', its Hessian;
    - ``weighing_in``: how many examples effectively shape these sums: ``effective_rows`` of the curvature
      weights s_i p_i (1 - p_i) or of the gradient weights s_i |p_i - y_i|, whichever is fewer (about 1 when a
      single row does: ``weighing_in``; see ``logistic``).

    Summed over members they are the pooled objective's terms: no ridge here, it is added to the totals.
    """

    examples: int
    loss: float
    gradient: np.ndarray
    curvature: np.ndarray
    weighing_in: float


def effective_rows(weights: np.ndarray) -> float:
    """(sum w)^2 / sum w^2: the number of equally weighted rows with the same spread (0 without weight)."""
    squares = float(np.dot(weights, weights))
    return float(weights.sum()) ** 2 / squares if squares > 0 else 0.0


ROW_BLOCK = 32_768  # rows per block of the curvature sum: 13 MB of temporaries with 49 features


def row_sums(Z: np.ndarray, y: np.ndarray, weights: Weights, sample_weight: np.ndarray | None = None) -> RowSums:
    """``RowSums`` of rows ``Z`` (standardised), labels ``y`` and class weights at ``weights``.

    Works on the rows as they are, the intercept handled apart: no copy of the rows with a column of ones (a
    million rows are 400 MB a copy), and the curvature summed over blocks of rows.
    """
    logits = weights.logits(Z)
    p = _sigmoid(logits)
    s = np.ones(len(y)) if sample_weight is None else sample_weight
    residual = s * (p - y)
    curvature_weights = s * _spread(logits)
    features = Z.shape[1]
    hessian = np.zeros((features + 1, features + 1))
    for start in range(0, len(y), ROW_BLOCK):
        rows = Z[start : start + ROW_BLOCK]
        hessian[:features, :features] += (rows.T * curvature_weights[start : start + ROW_BLOCK]) @ rows
    hessian[:features, features] = hessian[features, :features] = Z.T @ curvature_weights
    hessian[features, features] = curvature_weights.sum()
    losses = np.minimum(np.logaddexp(0.0, logits) - y * logits, MAX_ROW_LOSS)
    return RowSums(
        examples=len(y),
        loss=float(np.dot(s, losses)),
        gradient=np.append(Z.T @ residual, residual.sum()),
        curvature=hessian,
        weighing_in=min(effective_rows(curvature_weights), effective_rows(np.abs(residual))),
    )


def weighing_in(Z: np.ndarray, y: np.ndarray, weights: Weights, sample_weight: np.ndarray | None = None) -> float:
    """``RowSums.weighing_in`` alone, without the sums."""
    logits = weights.logits(Z)
    s = np.ones(len(y)) if sample_weight is None else sample_weight
    return min(effective_rows(s * _spread(logits)), effective_rows(np.abs(s * (_sigmoid(logits) - y))))


def _penalty_kwargs(penalty: str) -> dict:
    """scikit-learn >= 1.8 deprecated ``penalty`` for ``l1_ratio`` (0 = L2, 1 = L1); 1.4 only knows ``penalty``."""
    from sklearn.linear_model import LogisticRegression

    if inspect.signature(LogisticRegression).parameters["penalty"].default == "deprecated":
        return {"l1_ratio": 1.0 if penalty == "l1" else 0.0}
    return {"penalty": penalty}


def fit_to_convergence(
    Z: np.ndarray, y: np.ndarray, C: float, penalty: str, sample_weight: np.ndarray | None = None
) -> Weights:
    """scikit-learn's own solver on one dataset: the reference the baselines train with.

    ``LogisticRegression(C=C)`` minimises C * sum(s_i loss_i) + penalty, the pooled objective itself; an
    independent solver, so comparing it with the federated Newton steps also checks them. L2 uses scikit-learn's
    Newton-Cholesky solver (to a gradient of about 1e-14 on CMS; L-BFGS stops near 1e-8), L1 SAGA.
    """
    from sklearn.linear_model import LogisticRegression

    solver, tol = ("saga", 1e-10) if penalty == "l1" else ("newton-cholesky", 1e-12)
    model = LogisticRegression(C=C, solver=solver, max_iter=10_000, tol=tol, **_penalty_kwargs(penalty)).fit(
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

    log1p -> StandardScaler(global mean/scale) -> a missing value (NaN) set to 0 -> LogisticRegression, its
    intercept shifted by the prior log-odds so predict_proba gives calibrated probabilities. A missing log1p value
    imputed with the federation's mean of the present ones standardises to exactly 0, so setting it to 0 after
    scaling is that imputation, with library functions only (``np.nan_to_num``; a fitted SimpleImputer's pickle
    does not load across scikit-learn versions, and the clients' image has an older one). Built only from
    library classes, so ``joblib.load`` needs scikit-learn but not this package. ``threshold``, the decision
    threshold the run chose, travels with the model (``explain.THRESHOLD_ATTRIBUTE``) so that whoever scores with
    it flags what the run's metrics were measured at; only the server knows it, after the final round.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    names = np.asarray(list(features), dtype=object)
    log = FunctionTransformer(np.log1p, feature_names_out="one-to-one")
    log.fit(np.zeros((1, len(names))))
    log.feature_names_in_ = names  # the pipeline then checks the column names of DataFrame input
    impute = FunctionTransformer(np.nan_to_num, feature_names_out="one-to-one")
    impute.fit(np.zeros((1, len(names))))
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
    pipeline = Pipeline(
        [("log1p", log), ("standardise", scaler), ("impute", impute), ("logistic_regression", classifier)]
    )
    if threshold is not None:
        setattr(pipeline, THRESHOLD_ATTRIBUTE, float(threshold))
    return pipeline
