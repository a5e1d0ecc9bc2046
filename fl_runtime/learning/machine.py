"""What every model family is: a deterministic state machine driven by verified totals.

    (state, verified totals) -> (next state, next question)

A family (``logistic``; gradient-boosted trees next) starts from the run's settings alone, asks one question at
a time (``Question``), and moves on only by the totals of the members' answers. Every party runs the same
machine: each member, to know what it is asked next and at which model, and the server, to evaluate on its
test set and report. Nothing the server chooses enters a state: a member answers the question ITS machine
asks, with ITS rows, and declines (``Declined``) what its own rules forbid.

A family provides, for a state:
- ``layout(state)``: the fixed-point layout of an answer (``fixed_point.Layout``);
- ``answer(state, rows, min_rows)``: one member's values (client side; may raise ``Declined``);
- ``advance(state, totals)``: the next state, and what the totals say for the reports (``Findings``);
- ``probabilities(state, X)``: fraud probabilities of raw rows under the state's model (the server's test set,
  a member's own validation part);
- ``model(state, features, threshold)``: the state's model as the deliverable ``model.joblib`` holds;
- ``most_steps(plan)``: the most exchanges a run of the plan takes (the launchers' deadline);
- ``same_members(state)``: whether the state's question must be answered by exactly the members of the step
  before (the tree family: two of its totals over members with one left out would give that member's counts):
  no drop-out, no re-run with fewer;
- ``node_floors``: the settings that bound how few rows a node or cell describes (each at least ``min_rows``);
- ``version_name`` and ``describe(plan)``: how the reports speak of a model version and of the model;
  ``short_name``, how a run of ``--model auto`` is named.

A model *version* is what the reports score: logistic regression's round r makes version r; a finished tree
makes the version of that many trees. ``Findings`` say which version a step made and which version's
validation totals it carried, so the reports need to know nothing else of a family.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fl_runtime.errors import DataError
from fl_runtime.learning.fixed_point import Layout
from fl_runtime.learning.task import ClientRows, TrainingPlan

MOMENTS, ROUND, EVALUATE = "moments", "round", "evaluate"  # logistic regression's
BINS, LEVEL = "bins", "level"  # gradient-boosted trees': bin counts, then one tree level per exchange
KINDS = (MOMENTS, ROUND, EVALUATE, BINS, LEVEL)


@dataclass(frozen=True)
class Question:
    """What the members are asked: the moments of their rows (round 0), their terms of the pooled objective at
    the model of round ``round - 1`` (a training round), or the scores of the final model of round ``round``."""

    kind: str
    round: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS or self.round < 0:
            raise ValueError(f"no such question: {self.kind} {self.round}")

    @property
    def label(self) -> str:
        if self.kind == MOMENTS:
            return "the moments query"
        if self.kind == ROUND:
            return f"round {self.round}"
        if self.kind == BINS:
            return f"the bin counts ({'coarse' if self.round == 0 else 'fine'})"
        if self.kind == LEVEL:
            return f"tree exchange {self.round}"
        return f"the evaluation of the round-{self.round} model"


class Declined(Exception):
    """A member's refusal to answer by its own rules. Its text names the rule, never a value of the data:
    it is what the server and the other members are told."""


@dataclass(frozen=True)
class Findings:
    """What one step's totals say, for the reports (aggregates over the members who answered): ``values``, the
    model version the step made (``made``, scored on the test set from the state after the step), the version
    whose validation totals it carried (``validated``), and why training stopped (``stop``, a record with a
    ``reason``) when it did."""

    question: Question
    members: int
    values: dict[str, Any] = field(default_factory=dict)
    made: int | None = None
    validated: int | None = None
    stop: dict | None = None


class State(Protocol):
    @property
    def question(self) -> Question | None: ...  # None: the run is over


class Family(Protocol):
    name: str
    version_name: str  # what a model version is called in the reports ("round", "trees")
    short_name: str  # at most 4 characters: names its run of --model auto, <run>-<short_name> (run names hold 20)
    node_floors: tuple[str, ...]  # run-config settings a member holds at or above its own min_rows

    def start(self, plan: TrainingPlan, features: tuple[str, ...]) -> Any: ...
    def layout(self, state: Any) -> Layout: ...
    def answer(self, state: Any, rows: ClientRows, min_rows: int) -> dict[str, np.ndarray]: ...
    def advance(self, state: Any, totals: dict[str, np.ndarray], members: int) -> tuple[Any, Findings]: ...
    def probabilities(self, state: Any, X: np.ndarray) -> np.ndarray: ...
    def model(self, state: Any, features: tuple[str, ...], threshold: float | None) -> Any: ...
    def same_members(self, state: Any) -> bool: ...  # whether its question needs the last step's members exactly
    def most_steps(self, plan: TrainingPlan) -> int: ...
    def describe(self, plan: TrainingPlan) -> str: ...


def asked(state: Any) -> Question:
    """The question a state asks; asking a finished run anything is a bug."""
    if state.question is None:
        raise ValueError("the run is over: no question is asked")
    return state.question


class UnusableTotals(ValueError):
    """Totals from which no next state follows (a singular curvature, no positives...): honest members' totals always
    give one, so such totals carry a value crafted within its range, and every party stops rather than step on."""


def advance(family: Family, state: Any, totals: dict[str, np.ndarray], members: int) -> tuple[Any, Findings]:
    """``family.advance``, with whatever the totals make it fail on reported as ``UnusableTotals``."""
    question = state.question
    try:
        return family.advance(state, totals, members)
    except (ArithmeticError, ValueError, DataError) as error:  # numpy's LinAlgError is a ValueError
        why = f"{type(error).__name__}: {error}"
        raise UnusableTotals(f"{question.label}: its totals give no next model ({why})") from None
