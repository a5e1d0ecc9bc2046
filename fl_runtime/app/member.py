"""One member's side of a run: it checks what it is sent, computes what its own state machine asks, and signs it.

A session starts with the keys query: the proposed settings must lie in the member's pinned ranges
(``accept_settings``), or it declines naming the setting; it then announces fresh per-run keys, signed with its
identity key. Each step request is one of:

- the first step (moments, attempt 1): every pinned member's announcement must be there, each with its pinned
  fingerprint and a valid identity signature, the same run, settings and features; the member set must be
  exactly the pinned members (a run starts with all of them);
- the next step: the previous step's contributions, one per member of that step, each verified against the
  transcript (``transcript.verify_step``); their total, decoded (``fixed_point``), advances the member's own
  state machine; the question it then asks must be the one requested. The step's members are among the
  previous step's (a member that dropped out stays out);
- a re-run of the step just answered: fewer members than before, a later attempt, the same previous
  contributions; only if the member's pins allow re-runs (a server that lies about a drop-out learns that
  member's answer by difference).

Every answer is over at least ``min_members`` members, encoded in fixed point, masked with the step's other
members and signed with the transcript hash. A member that refuses anything leaves the run; it answers nothing
more in it. What it computed and verified goes into its own view and transcript, in its own account.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fl_runtime.app import masking
from fl_runtime.app.identity import Identity
from fl_runtime.app.pins import ClientPins
from fl_runtime.app.protocol import StepRequest
from fl_runtime.app.signed import Contribution, Malformed, RunKeys, SignedAnnouncement, Step
from fl_runtime.app.transcript import Transcript, TranscriptError
from fl_runtime.errors import OptionsError
from fl_runtime.learning import fixed_point
from fl_runtime.learning.families import family
from fl_runtime.learning.machine import EVALUATE, Declined, Findings, Question, UnusableTotals, advance
from fl_runtime.learning.metrics import ranking_metrics
from fl_runtime.learning.task import ClientRows, TrainConfig, TrainingPlan
from fl_runtime.learning.trees import TreeSettings

SETTINGS = (
    "family",
    "num-server-rounds",
    "convergence-tolerance",
    "C",
    "penalty",
    "class-balance",
    *TreeSettings().to_config(),
)


def _number(settings: dict, key: str) -> float:
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Declined(f"setting '{key}': {value!r} is not a number")
    return float(value)


def _within(settings: dict, key: str, bounds: tuple[float, ...]) -> float:
    value = _number(settings, key)
    if not bounds[0] <= value <= bounds[1]:
        raise Declined(f"setting '{key}': {value:g} is outside this member's range [{bounds[0]:g}, {bounds[1]:g}]")
    return value


def _whole_within(settings: dict, key: str, lowest: float, highest: float) -> int:
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise Declined(f"setting '{key}': {value!r} is outside this member's range [{lowest:g}, {highest:g}]")
    return value


def _one_of(settings: dict, key: str, allowed: tuple[str, ...]) -> str:
    value = settings[key]
    if value not in allowed:
        raise Declined(f"setting '{key}': {value!r} is not one this member accepts ({', '.join(allowed)})")
    return str(value)


def _tree_settings(pins: ClientPins, settings: dict, floors: tuple[str, ...]) -> TreeSettings:
    """The gbdt settings, each within its range; where the family grows trees (``floors``), no node may describe
    fewer rows than this member's min_rows, nor may the cells below a root be asked for fewer (a cell holds about
    cell-rows of its node's rows, not at least: docs/trust-model.md)."""
    ranges = pins.ranges

    def floored(key: str, bounds: tuple[float, ...]) -> int:
        return _whole_within(settings, key, max(bounds[0], pins.min_rows) if key in floors else bounds[0], bounds[1])

    try:
        return TreeSettings(
            trees=_whole_within(settings, "trees", 1, ranges.max_trees),
            depth=_whole_within(settings, "depth", *ranges.depth),
            learning_rate=_within(settings, "learning-rate", ranges.learning_rate),
            l2=_within(settings, "l2", ranges.l2),
            min_rows_leaf=floored("min-rows-leaf", ranges.min_rows_leaf),
            min_hessian=_within(settings, "min-hessian", ranges.min_hessian),
            cell_rows=floored("cell-rows", ranges.cell_rows),
        )
    except OptionsError as error:  # within a pinned range, but not a value the trees take
        raise Declined(f"setting {error}") from None


def accept_settings(pins: ClientPins, settings: dict) -> TrainingPlan:
    """The run's plan, if every proposed setting lies in this member's pinned ranges; Declined names the first
    that does not (or a setting that is not one: the server chooses nothing else)."""
    unknown = sorted(set(settings) - set(SETTINGS))
    if unknown:
        raise Declined(f"setting '{unknown[0]}' is not one a member takes from a run (only {', '.join(SETTINGS)})")
    missing = [key for key in SETTINGS if key not in settings]
    if missing:
        raise Declined(f"setting '{missing[0]}' is missing")
    ranges = pins.ranges
    name = _one_of(settings, "family", ranges.families)
    return TrainingPlan(
        rounds=_whole_within(settings, "num-server-rounds", 1, ranges.max_rounds),
        train=TrainConfig(
            C=_within(settings, "C", ranges.C),
            penalty=_one_of(settings, "penalty", ranges.penalties),
            class_balance=_one_of(settings, "class-balance", ranges.class_balances),
        ),
        seed=pins.seed,
        tolerance=_within(settings, "convergence-tolerance", ranges.tolerance),
        family=name,
        trees=_tree_settings(pins, settings, family(name).node_floors),
    )


@dataclass
class Answered:
    step: Step
    contribution: Contribution


@dataclass
class MemberSession:
    """See the module docstring. ``rows`` reads this member's data once, when first needed."""

    pins: ClientPins
    run: str
    settings: dict
    plan: TrainingPlan
    features: tuple[str, ...]
    rows: Callable[[], ClientRows]
    keys: RunKeys
    announcement: SignedAnnouncement
    transcript: Transcript
    state: Any = None
    signing_keys: dict[str, bytes] = field(default_factory=dict)
    pair_keys: dict[str, bytes] = field(default_factory=dict)
    answered: Answered | None = None
    forwarded: tuple[bytes, ...] = ()  # the contributions of the last verified step, as received
    announcements: tuple[bytes, ...] = ()  # the first step's, as received
    left: str | None = None
    view: list[dict] = field(default_factory=list)  # what this member contributed and learned, for its own record
    _rows: ClientRows | None = None

    @classmethod
    def open(
        cls,
        pins: ClientPins,
        own: Identity,
        run: str,
        settings: dict,
        features: tuple[str, ...],
        rows: Callable[[], ClientRows],
    ) -> MemberSession:
        plan = accept_settings(pins, settings)
        keys = RunKeys()
        announcement = keys.announce(pins.client, run, settings, features, own)
        transcript = Transcript(run, settings, pins.client)
        session = cls(pins, run, settings, plan, tuple(features), rows, keys, announcement, transcript)
        session.state = family(plan.family).start(plan, tuple(features))
        return session

    @property
    def name(self) -> str:
        return self.pins.client

    @property
    def machine(self):
        return family(self.plan.family)

    @property
    def first_question(self) -> Question:
        """What the family's machine asks first (the step that carries every member's announcement)."""
        question = self.machine.start(self.plan, self.features).question
        assert question is not None
        return question

    @property
    def done(self) -> bool:
        """Whether it answered the run's last question (the evaluation of the final model)."""
        return self.answered is not None and self.answered.step.kind == EVALUATE

    def _member_rows(self) -> ClientRows:
        if self._rows is None:
            self._rows = self.rows()
        return self._rows

    # --- the step request -------------------------------------------------------------------------------
    def step(self, request: StepRequest) -> Contribution:
        """This member's signed, masked answer to ``request``; Declined or TranscriptError if it refuses."""
        if self.left is not None:
            raise Declined(f"this member left run {self.run}: {self.left}")
        try:
            return self._step(request)
        except (Declined, TranscriptError, Malformed) as refusal:
            self.left = str(refusal)
            raise

    def _step(self, request: StepRequest) -> Contribution:
        members = tuple(request.members)
        if list(members) != sorted(set(members)):
            raise TranscriptError(f"the step's members {list(members)} are not listed once each, in order of name")
        if self.name not in members:
            raise Declined(f"this member ({self.name}) is not among the step's members {list(members)}")
        answered = self.answered
        if answered is None:
            self._first_step(request)
        elif (request.kind, request.round) == (answered.step.kind, answered.step.round):
            self._rerun(request, answered)
        else:
            self._next_step(request, answered)
        if len(members) < self.pins.min_members:
            raise Declined(
                f"a total over {len(members)} members is below this member's min_members ({self.pins.min_members})"
            )
        step = Step(request.kind, request.round, request.attempt, members)
        contribution = self._answer(step)
        self.answered = Answered(step, contribution)
        return contribution

    def _first_step(self, request: StepRequest) -> None:
        pinned = self.pins.member_names
        first = self.first_question
        if (request.kind, request.round, request.attempt) != (first.kind, first.round, 1):
            raise TranscriptError(
                f"the first step must be {first.label}, attempt 1; the server asks {request.kind} "
                f"{request.round}, attempt {request.attempt}"
            )
        if request.members != pinned:
            raise Declined(
                f"a run must start with exactly the pinned members {list(pinned)}; the server lists "
                f"{list(request.members)}"
            )
        if request.contributions:
            raise TranscriptError("the first step carries contributions: there is no previous step")
        self._verify_announcements(request.announcements)

    def _verify_announcements(self, wires: tuple[bytes, ...]) -> None:
        announcements = [SignedAnnouncement.from_bytes(wire) for wire in wires]
        names = sorted(a.member for a in announcements)
        if names != list(self.pins.member_names) or len(set(names)) != len(names):
            raise Declined(
                f"the announced members {names} are not exactly the pinned members {list(self.pins.member_names)}"
            )
        for signed in announcements:
            pinned = self.pins.fingerprint_of(signed.member)
            if not pinned:
                raise Declined(f"member {signed.member} has no pinned identity fingerprint in this member's settings")
            if signed.fingerprint != pinned:
                raise Declined(
                    f"member {signed.member}'s identity key {signed.fingerprint} is not its pinned one (revoked or "
                    "swapped?)"
                )
            if not signed.verified():
                raise TranscriptError(f"member {signed.member}'s announcement is not signed by its identity key")
            ours = self.announcement.announcement
            theirs = signed.announcement
            if (theirs.run, theirs.settings, theirs.features) != (ours.run, ours.settings, ours.features):
                raise TranscriptError(
                    f"member {signed.member} announced another run, settings or features than this member's"
                )
            if signed.member == self.name and signed.to_bytes() != self.announcement.to_bytes():
                raise TranscriptError("this member's own announcement was changed")
        self.transcript.keys(announcements)
        for signed in announcements:
            self.signing_keys[signed.member] = signed.announcement.signing_key
            if signed.member != self.name:
                self.pair_keys[signed.member] = masking.pair_key(
                    self.keys.exchange, signed.announcement.exchange_key, self.transcript.head, self.name,
                    signed.member,
                )  # fmt: skip
        self.announcements = tuple(wires)

    def _rerun(self, request: StepRequest, answered: Answered) -> None:
        before = answered.step
        if not self.pins.allow_reruns:
            raise Declined("this member's settings forbid answering a step again after a drop-out")
        if request.attempt <= before.attempt:
            raise TranscriptError(
                f"{before.kind} {before.round}: attempt {request.attempt} was already made (answered attempt "
                f"{before.attempt})"
            )
        if not set(request.members) < set(before.members):
            raise Declined(
                f"a re-run must have fewer members than attempt {before.attempt} {list(before.members)}; the server "
                f"lists {list(request.members)}"
            )
        if self.machine.same_members(self.state):
            raise Declined(f"{self.state.question.label} must be answered by the members of the step before it")
        if (before.kind, before.round) == (self.first_question.kind, self.first_question.round) and (
            request.announcements != self.announcements
        ):
            raise TranscriptError("the re-run carries other announcements than the first attempt")
        if request.contributions != self.forwarded:
            raise TranscriptError("the re-run carries other contributions of the previous step than before")

    def _next_step(self, request: StepRequest, answered: Answered) -> None:
        if request.announcements:
            raise TranscriptError("announcements are part of the first step only")
        if request.attempt != 1:
            raise TranscriptError(f"a new step starts with attempt 1, not {request.attempt}")
        try:
            contributions = [Contribution.from_bytes(wire) for wire in request.contributions]
        except Malformed as error:
            raise TranscriptError(str(error)) from None
        if not set(request.members) <= set(answered.step.members):
            raise Declined(
                f"members {sorted(set(request.members) - set(answered.step.members))} dropped out earlier and stay "
                "out for the rest of the run"
            )
        layout = self.machine.layout(self.state)
        total = self.transcript.verify_step(answered.step, contributions, self.signing_keys, layout.length)
        own = next(c for c in contributions if c.member == self.name)
        if own.to_bytes() != answered.contribution.to_bytes():
            raise TranscriptError("this member's own contribution was changed in relay")
        self.transcript.record_step(answered.step, contributions, total)
        try:
            totals = layout.decode(total, len(answered.step.members))
        except fixed_point.OutOfRange as error:
            raise TranscriptError(f"{self.state.question.label}: {error}") from None
        try:
            self.state, findings = advance(self.machine, self.state, totals, len(answered.step.members))
        except UnusableTotals as error:
            raise TranscriptError(str(error)) from None
        if self.machine.same_members(self.state) and request.members != answered.step.members:
            raise Declined(
                f"{self.state.question.label} must be answered by the members of the step before it "
                f"{list(answered.step.members)}; the server lists {list(request.members)}"
            )
        self.forwarded = tuple(request.contributions)
        self._note_findings(findings)
        question = self.state.question
        if question is None or (request.kind, request.round) != (question.kind, question.round):
            asked = "nothing more" if question is None else f"{question.kind} {question.round}"
            raise TranscriptError(
                f"the server asks {request.kind} {request.round}; this member's own state machine asks {asked}"
            )

    def _answer(self, step: Step) -> Contribution:
        layout = self.machine.layout(self.state)
        values = self.machine.answer(self.state, self._member_rows(), self.pins.min_rows)
        try:
            vector = layout.encode(values)
        except fixed_point.OutOfRange as error:
            raise Declined(f"{self.state.question.label}: {error}") from None
        others = {peer: self.pair_keys[peer] for peer in step.members if peer != self.name}
        masked = masking.mask(vector, self.name, others, step.label)
        contribution = Contribution.sign(self.keys, self.name, step, self.transcript.head, fixed_point.to_bytes(masked))
        self.view.append({"step": step.content(), "values": {k: np.asarray(v).tolist() for k, v in values.items()}})
        return contribution

    def _note_findings(self, findings: Findings) -> None:
        seen = {key: value for key, value in findings.values.items() if isinstance(value, (int, float))}
        self.view.append({"verified": findings.question.label, "members": findings.members, "totals": seen})

    def final_validation(self) -> dict[str, float] | None:
        """This member's own validation metrics of the final model, once it is known (they stay in its account)."""
        if not self.done:
            return None
        validation = self._member_rows().data.validation
        return ranking_metrics(validation.y, self.machine.probabilities(self.state, validation.X))

    def transcript_bytes(self) -> bytes:
        """The transcript so far, closed and signed with this member's run key (its last answer included)."""
        pending = self.answered.contribution if self.answered else None
        return self.transcript.closed(self.keys, pending)
