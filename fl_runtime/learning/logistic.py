"""Logistic regression as a state machine of pooled Newton steps (``machine``), driven by verified totals.

1. Moments (round 0): every member contributes its training rows' count, positives, and per-feature counts,
   sums and sums of squares of the present log1p(features). From the totals every party derives the mean a
   missing value is imputed with, the global standardisation and class balance (``stats.GlobalStats``) and
   starts from the all-zero model.
2. Round r: at the model of round r - 1, every member contributes its ``model.RowSums`` (examples, summed
   loss, gradient and curvature of its summed loss) and the score histograms and summed log loss of its
   validation part. From the totals every party takes one pooled Newton step on
   F(w) = (1/N) sum s_i loss_i(w) + penalty / (C N), with N the examples of the members who answered:
   L2: w - (H/N + ridge)^-1 (G/N + ridge w), the exact Newton step of the pooled objective; L1: a proximal
   Newton step, whose quadratic model with the L1 term is minimised by coordinate descent on the totals. Then
   the stopping rule (``convergence``) says whether another round follows.
3. Evaluation of the final model: every member's validation histograms and summed log loss of that model.

What a member declines (``machine.Declined``), whatever the server sends: an answer that describes fewer than
``min_rows`` of its own rows: moments of fewer training rows, histograms of fewer validation rows, and any
answer at a model where the effective number of its training rows weighing in (``model.RowSums.weighing_in``:
``effective_rows`` of the curvature weights s p (1 - p) and of the gradient weights s |p - y|, the fewer) is
below ``min_rows``. A model with a sharp logit at one row makes that number about 1: the curvature it would
return is a rank-one picture of that row. Honest models are smooth: on compare's 25 CMS splits the smallest
value seen was 14.0 (``docs/trust-model.md``), so the default ``min_rows`` is 10.

Fixed point (``layout``): counts are whole; every other quantity's range is a proven bound on an honest
member's value, so honest values always fit and their resolution is as fine as the bound allows. With N the
training rows of the moments total, every training row's standardised value is at most sqrt(N) in magnitude
(a population standard deviation over N rows cannot be exceeded by more than sqrt(N) times by one of them), so
with s the largest class weight and E the most examples a member may have: gradient <= s E (sqrt(N) + 1),
curvature <= s E (sqrt(N) + 1)^2 / 4, loss <= s E * 34.54 (rows' losses are capped there), each with a margin
of 2 for the fixed-point error of the statistics. Moments are bounded by the most rows a member may have
(``MAX_MEMBER_ROWS``) and log1p of the largest feature value accepted (``MAX_FEATURE``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from fl_runtime.learning.balance import CLASS_WEIGHTS, SMOTE, class_weights
from fl_runtime.learning.convergence import Stop
from fl_runtime.learning.data import MAX_VALUE
from fl_runtime.learning.fixed_point import Layout, Quantity, scale_bits_for
from fl_runtime.learning.machine import EVALUATE, MOMENTS, ROUND, Declined, Findings, Question, asked
from fl_runtime.learning.metrics import HISTOGRAM_BINS, validation_findings
from fl_runtime.learning.model import MAX_ROW_LOSS, Weights, build_pipeline
from fl_runtime.learning.stats import FeatureMoments, GlobalStats
from fl_runtime.learning.task import LOGISTIC, ClientRows, TrainingPlan

MAX_MEMBER_ROWS = 2**27  # the most training rows one member may contribute (134 million)
MAX_FEATURE = MAX_VALUE  # the largest feature value a member's moments may hold (the data contract's): log1p 44.4
MAX_LOG = math.log1p(MAX_FEATURE)
MARGIN = 2.0  # on derived bounds: the statistics themselves carry fixed-point error


@dataclass(frozen=True)
class LogisticState:
    """Where the machine is: the question asked now, the global statistics (from the moments total) and the model
    the next answers are computed at (the model of round ``question.round - 1``; the final one when evaluating)."""

    plan: TrainingPlan
    features: tuple[str, ...]
    question: Question | None
    stats: GlobalStats | None = None
    moment_rows: int = 0  # training rows of the moments total: bounds every standardised value
    weights: Weights | None = None
    stop: Stop | None = None


def _triangle(size: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(size)


def _symmetric(upper: np.ndarray, size: int) -> np.ndarray:
    rows, columns = _triangle(size)
    matrix = np.zeros((size, size))
    matrix[rows, columns] = upper
    matrix[columns, rows] = upper
    return matrix


def _histogram_quantities() -> tuple[Quantity, Quantity]:
    return Quantity("histogram-positive", HISTOGRAM_BINS, 0), Quantity("histogram-negative", HISTOGRAM_BINS, 0)


class LogisticRegressionFamily:
    """The logistic-regression state machine (see the module docstring)."""

    name = LOGISTIC
    version_name = "round"
    short_name = "lr"
    node_floors: tuple[str, ...] = ()

    def start(self, plan: TrainingPlan, features: tuple[str, ...]) -> LogisticState:
        return LogisticState(plan, tuple(features), Question(MOMENTS, 0))

    # --- fixed point -------------------------------------------------------------------------------------
    def layout(self, state: LogisticState) -> Layout:
        question = asked(state)
        d = len(state.features)
        if question.kind == MOMENTS:
            return Layout(
                (
                    Quantity("rows", 1, 0),
                    Quantity("positives", 1, 0),
                    Quantity("log1p-sum", d, scale_bits_for(MAX_MEMBER_ROWS * MAX_LOG), state.features, words=2),
                    Quantity("log1p-squares", d, scale_bits_for(MAX_MEMBER_ROWS * MAX_LOG**2), state.features, words=2),
                    Quantity("log1p-present", d, 0, state.features),
                )
            )
        validation = (
            *_histogram_quantities(),
            Quantity("validation-loss", 1, scale_bits_for(MARGIN * max(state.moment_rows, 1) * MAX_ROW_LOSS)),
            Quantity("validation-rows", 1, 0),
        )
        if question.kind == EVALUATE:
            return Layout(validation)
        examples, weight, z = self._bounds(state)
        terms = ("intercept",)
        size = d + 1
        rows, columns = _triangle(size)
        names = (*state.features, *terms)
        return Layout(
            (
                Quantity("examples", 1, 0),
                Quantity("loss", 1, scale_bits_for(MARGIN * weight * examples * MAX_ROW_LOSS)),
                Quantity("gradient", size, scale_bits_for(MARGIN * weight * examples * z), names),
                Quantity(
                    "curvature",
                    len(rows),
                    scale_bits_for(MARGIN * weight * examples * z * z / 4),
                    tuple(f"{names[i]}*{names[j]}" for i, j in zip(rows, columns)),
                ),
                *validation,
            )
        )

    @staticmethod
    def _bounds(state: LogisticState) -> tuple[float, float, float]:
        """(most examples of one member, largest class weight, largest standardised magnitude incl. the intercept)."""
        stats = _stats(state)
        rows = float(state.moment_rows)
        ratio = stats.negatives_per_positive
        examples = rows * (1.0 + max(ratio, 1.0)) if stats.class_balance == SMOTE else rows
        weight = max(class_weights(ratio)) if stats.class_balance == CLASS_WEIGHTS else 1.0
        return examples, weight, math.sqrt(rows) + 1.0

    # --- a member's answer -------------------------------------------------------------------------------
    def answer(self, state: LogisticState, rows: ClientRows, min_rows: int) -> dict[str, np.ndarray]:
        question = asked(state)
        if question.kind == MOMENTS:
            train = rows.data.train
            if train.n_rows < min_rows:
                raise Declined(f"{question.label}: its training part has fewer rows than its min_rows ({min_rows})")
            moments = rows.data.moments()
            return {
                "rows": np.array([moments.n_rows]),
                "positives": np.array([moments.n_positive]),
                "log1p-sum": moments.total,
                "log1p-squares": moments.total_squares,
                "log1p-present": moments.present,
            }
        stats, weights = _stats(state), _weights(state)
        prepared = rows.prepared(stats)
        if len(prepared.validation_y) < min_rows:
            raise Declined(f"{question.label}: its validation part has fewer rows than its min_rows ({min_rows})")
        if question.kind == EVALUATE and prepared.weighing_in(weights) < min_rows:
            raise Declined(
                f"{question.label}: fewer of its rows than its min_rows ({min_rows}) weigh in at the federation's model"
            )
        histogram = prepared.histogram(weights, stats.prior_logit)
        validation = {
            "histogram-positive": histogram.positive,
            "histogram-negative": histogram.negative,
            "validation-loss": np.array([prepared.validation_loss(weights, stats.prior_logit)]),
            "validation-rows": np.array([len(prepared.validation_y)]),
        }
        if question.kind == EVALUATE:
            return validation
        sums = prepared.sums(weights)
        if sums.weighing_in < min_rows:
            raise Declined(
                f"{question.label}: fewer of its rows than its min_rows ({min_rows}) weigh in at the federation's model"
            )
        rows_index, columns_index = _triangle(len(state.features) + 1)
        return {
            "examples": np.array([sums.examples]),
            "loss": np.array([sums.loss]),
            "gradient": sums.gradient,
            "curvature": sums.curvature[rows_index, columns_index],
            **validation,
        }

    # --- every party's step ------------------------------------------------------------------------------
    def advance(
        self, state: LogisticState, totals: dict[str, np.ndarray], members: int
    ) -> tuple[LogisticState, Findings]:
        question = asked(state)
        if question.kind == MOMENTS:
            moments = FeatureMoments(
                int(totals["rows"][0]),
                int(totals["positives"][0]),
                totals["log1p-sum"],
                totals["log1p-squares"],
                np.rint(totals["log1p-present"]).astype(np.int64),
            )
            stats = GlobalStats.from_moments([moments], state.plan.train.class_balance)
            weights = Weights.zeros(len(state.features))
            following = replace(
                state, question=Question(ROUND, 1), stats=stats, moment_rows=moments.n_rows, weights=weights
            )
            found: dict = {"rows": moments.n_rows, "positives": moments.n_positive}
            return following, Findings(question, members, found)
        validation = validation_findings(totals)
        if question.kind == EVALUATE:
            return replace(state, question=None), Findings(question, members, validation, validated=question.round)
        examples = int(totals["examples"][0])
        previous = _weights(state)
        current = pooled_newton_step(
            previous,
            examples,
            totals["gradient"],
            _symmetric(totals["curvature"], len(state.features) + 1),
            state.plan.train.C,
            state.plan.train.penalty,
        )
        stop = state.plan.stop_after(question.round, previous, current)
        following = replace(
            state,
            question=Question(EVALUATE, question.round) if stop else Question(ROUND, question.round + 1),
            weights=current,
            stop=stop,
        )
        found = {"examples": examples, "train-loss": float(totals["loss"][0]) / examples, **validation}
        # round r's answers are at the model of round r - 1 (round 1's at the all-zero start, which is no version)
        return following, Findings(
            question,
            members,
            found,
            made=question.round,
            validated=question.round - 1 if question.round > 1 else None,
            stop=stop.record() if stop else None,
        )

    def probabilities(self, state: LogisticState, X: np.ndarray) -> np.ndarray:
        stats = _stats(state)
        return _weights(state).probabilities(stats.standardise(X), stats.prior_logit)

    def model(self, state: LogisticState, features: tuple[str, ...], threshold: float | None):
        """The scikit-learn Pipeline ``model.build_pipeline`` makes of the state's model."""
        stats = _stats(state)
        return build_pipeline(features, stats.mean, stats.scale, _weights(state), stats.prior_logit, threshold)

    def most_steps(self, plan: TrainingPlan) -> int:
        return plan.rounds + 2  # the moments, every round, the evaluation

    def same_members(self, state: LogisticState) -> bool:
        return False  # every step is a whole sum: survivors re-run it

    def describe(self, plan: TrainingPlan) -> str:
        train = plan.train
        return (
            f"log1p, missing values imputed with the federation's mean, standardisation with federated global "
            f"statistics, logistic regression (C={train.C:g}, penalty "
            f"{train.penalty}); class balance: {BALANCE_TEXT[train.class_balance]}; one pooled Newton step per "
            f"round, computed by every member and the server from the round's verified totals, for at most "
            f"{plan.rounds} rounds, stopping once a round changes the parameters by less than {plan.tolerance:g} of "
            "their length. Each member sent its counts and feature moments (with counts of present values) once, "
            "its terms of the pooled objective (examples, loss, gradient, curvature) and validation score "
            "histograms each round, and the final model's validation histograms."
        )


# how each class-balance method (``balance``) reads in the report
BALANCE_TEXT = {
    "smote": "SMOTE on each member's training part, to the federation's class balance",
    "class-weights": "class weights from the federation's total class counts",
    "none": "none (plain logistic regression, calibrated as it is)",
}


def _stats(state: LogisticState) -> GlobalStats:
    if state.stats is None:
        raise ValueError("no global statistics before the moments total")
    return state.stats


def _weights(state: LogisticState) -> Weights:
    if state.weights is None:
        raise ValueError("no model before the moments total")
    return state.weights


def pooled_newton_step(
    weights: Weights, examples: int, gradient: np.ndarray, curvature: np.ndarray, C: float, penalty: str
) -> Weights:
    """One Newton step on the pooled objective from the totals of the members' ``RowSums``.

    L2 adds the ridge 1 / (C N) to the mean gradient and curvature (the intercept is not penalised, as in
    scikit-learn) and solves. L1 minimises the quadratic model plus (1 / (C N)) ||coef||_1 by cyclic coordinate
    descent (a proximal Newton step): deterministic, on the totals alone.
    """
    theta = weights.vector
    size = theta.size
    mean_gradient, mean_curvature = gradient / examples, curvature / examples
    penalty_weights = np.r_[np.full(size - 1, 1.0 / (C * examples)), 0.0]
    if penalty == "l2":
        step = np.linalg.solve(mean_curvature + np.diag(penalty_weights), mean_gradient + penalty_weights * theta)
        return Weights.from_vector(theta - step)
    return Weights.from_vector(_proximal_newton(theta, mean_gradient, mean_curvature, penalty_weights))


def _proximal_newton(
    theta: np.ndarray, gradient: np.ndarray, curvature: np.ndarray, l1: np.ndarray, sweeps: int = 2000
) -> np.ndarray:
    """argmin_u g'(u - theta) + (u - theta)' H (u - theta) / 2 + sum l1_j |u_j|, by cyclic coordinate descent."""
    new = theta.copy()
    moved = np.zeros_like(theta)  # H (u - theta), kept up to date
    diagonal = np.diag(curvature)
    for _ in range(sweeps):
        largest = 0.0
        for j in range(theta.size):
            if diagonal[j] <= 0:
                continue
            linear = gradient[j] + moved[j] - diagonal[j] * (new[j] - theta[j])
            target = theta[j] - linear / diagonal[j]
            value = math.copysign(max(abs(target) - l1[j] / diagonal[j], 0.0), target)
            change = value - new[j]
            if change:
                moved += curvature[:, j] * change
                new[j] = value
                largest = max(largest, abs(change))
        if largest <= 1e-13 * max(1.0, float(np.abs(new).max())):
            break
    return new


LOGISTIC_REGRESSION = LogisticRegressionFamily()
