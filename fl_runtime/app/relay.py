"""The server's side of a run: it relays what the members sign, adds their masked vectors, and sees only totals.

1. Keys: every member announces its per-run keys (``signed.Announcement``); a run starts with every member
   expected, or not at all (a member that never joined, or did not announce, is named).
2. Steps: the question the state machine asks now goes to the step's members with what they need to verify it
   (the announcements on the first step, every member's contribution to the previous step afterwards). Each
   reply is checked as the members will check it (signature, step, transcript); the total of the verified
   contributions advances the server's copy of the state machine, for its test-set evaluation and report.
3. Drop-outs: a member that does not answer, refuses, or sends a contribution that does not verify is out for the
   rest of the run; the step is asked again of the others (the next attempt, fresh masks) while at least
   ``min-clients`` remain. A member whose pins forbid re-runs refuses that, and leaves too.

The server never sees one member's values: each vector is masked, and the masks cancel only in the total.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flwr.app import Message, RecordDict

from fl_runtime.app import protocol
from fl_runtime.app.grid import Exchange, PollingGrid
from fl_runtime.app.run_settings import RunSettings, node_label
from fl_runtime.app.signed import Contribution, Malformed, SignedAnnouncement, Step
from fl_runtime.app.transcript import Transcript, check_contribution
from fl_runtime.errors import FederationError
from fl_runtime.learning.families import family
from fl_runtime.learning.fixed_point import OutOfRange
from fl_runtime.learning.machine import Findings, UnusableTotals, advance


@dataclass(frozen=True)
class Dropout:
    member: str
    question: str  # the question's label
    attempt: int
    reason: str


@dataclass
class RelayHooks:
    """What the ServerApp does with a run's progress: each step's findings (with the state they led to and the
    exchange's timing), each drop-out."""

    on_findings: Callable[[Findings, Any, Exchange, list[dict]], None]
    on_dropout: Callable[[Dropout], None]


class Relay:
    """One run's relay (see the module docstring)."""

    def __init__(self, grid: PollingGrid, settings: RunSettings, run: str, known: Callable[[], dict[int, str]]):
        self.grid = grid
        self.settings = settings
        self.run_id = run
        self.known = known  # node -> the name its launcher knows it by
        self.proposed = settings.plan.to_config()
        self.nodes: dict[str, int] = {}  # member -> node
        self.signing_keys: dict[str, bytes] = {}
        self.announcements: tuple[bytes, ...] = ()
        self.transcript = Transcript(run, self.proposed, "server")

    def _send(self, contents: dict[int, RecordDict], message_type: str) -> tuple[dict[int, Message], dict[int, str]]:
        """Send each node its content; (replies by node, failures by node: why)."""
        messages = [Message(content, dst_node_id=node, message_type=message_type) for node, content in contents.items()]
        replies = list(self.grid.send_and_receive(messages, timeout=self.settings.round_timeout))
        failures = dict.fromkeys(self.grid.unanswered, f"no answer within {self.settings.round_timeout:g} s")
        failures.update(self.grid.unreceived)
        received: dict[int, Message] = {}
        for reply in replies:
            node = self.grid.node_of(reply)
            if reply.has_error():
                failures[node] = (
                    f"refused: {reply.error.reason}"
                    if reply.error.code == protocol.REFUSED
                    else str(reply.error.reason)
                )
            else:
                received[node] = reply
        return received, failures

    def exchange_keys(self, nodes: list[int], features: tuple[str, ...]) -> list[str]:
        """Every node's announcement, verified; the members' names. A run starts with all of them or fails."""
        request = protocol.keys_request(self.proposed)
        replies, failures = self._send(dict.fromkeys(nodes, request), protocol.KEYS)
        announcements: dict[str, SignedAnnouncement] = {}
        known = self.known()
        for node, reply in sorted(replies.items()):
            try:
                signed = SignedAnnouncement.from_bytes(protocol.read_keys_reply(reply.content))
            except (Malformed, protocol.ProtocolError) as error:
                failures[node] = f"sent no valid announcement ({error})"
                continue
            expected = known.get(node)
            if not signed.verified():
                failures[node] = "its announcement is not signed by the identity key it names"
            elif expected is not None and signed.member != expected:
                failures[node] = f"was started as {expected} but announced itself as {signed.member}"
            elif signed.member in announcements:
                failures[node] = f"announced the name {signed.member}, which another node announced too"
            elif signed.announcement.features != tuple(features):
                raise FederationError(
                    f"client {signed.member}: columns differ from the server's test set: "
                    f"{_difference(features, signed.announcement.features)}"
                )
            else:
                announcements[signed.member] = signed
                self.nodes[signed.member] = node
        if failures:
            why = "; ".join(f"{node_label(node, known)}: {reason}" for node, reason in sorted(failures.items()))
            raise FederationError(f"a run starts with every member, and not every one announced its keys ({why})")
        ordered = [announcements[name] for name in sorted(announcements)]
        self.transcript.keys(ordered)
        self.announcements = tuple(signed.to_bytes() for signed in ordered)
        self.signing_keys = {signed.member: signed.announcement.signing_key for signed in ordered}
        return sorted(announcements)

    def run(self, features: tuple[str, ...], hooks: RelayHooks):
        """Every step until the state machine asks nothing more; returns its final state."""
        machine = family(self.settings.plan.family)
        state = machine.start(self.settings.plan, features)
        first = state.question  # the step that carries every member's announcement
        members = tuple(sorted(self.nodes))
        previous: tuple[bytes, ...] = ()
        dropped: list[Dropout] = []
        while state.question is not None:
            question, attempt = state.question, 1
            while True:
                step = Step(question.kind, question.round, attempt, members)
                contributions, failures, exchange = self._ask(
                    step, previous, machine.layout(state).length, announced=question == first
                )
                if not failures:
                    break
                for member, reason in sorted(failures.items()):
                    dropped.append(Dropout(member, question.label, attempt, reason))
                    hooks.on_dropout(dropped[-1])
                members = tuple(m for m in members if m not in failures)
                if machine.same_members(state):
                    raise FederationError(
                        f"{question.label}: {', '.join(sorted(failures))} dropped out, and this step must be answered "
                        f"by the members of the step before it (a {machine.name} run does not go on without them): "
                        + "; ".join(f"{d.member}: {d.reason}" for d in dropped)
                    )
                if len(members) < self.settings.min_clients:
                    raise FederationError(
                        f"{question.label}: only {len(members)} members left, fewer than min-clients "
                        f"{self.settings.min_clients} ("
                        + "; ".join(f"{d.member}, {d.question} attempt {d.attempt}: {d.reason}" for d in dropped)
                        + ")"
                    )
                attempt += 1
            layout = machine.layout(state)
            total = self.transcript.verify_step(step, contributions, self.signing_keys, layout.length)
            self.transcript.record_step(step, contributions, total)
            try:
                state, findings = advance(machine, state, layout.decode(total, len(members)), len(members))
            except (OutOfRange, UnusableTotals) as error:
                raise FederationError(f"{question.label}: a member's value made the total unusable: {error}") from None
            hooks.on_findings(findings, state, exchange, layout.describe())
            previous = tuple(c.to_bytes() for c in contributions)
        return state

    def _ask(
        self, step: Step, previous: tuple[bytes, ...], words: int, announced: bool
    ) -> tuple[list[Contribution], dict[str, str], Exchange]:
        """One attempt of a step: the verified contributions, by member name, and who failed and why."""
        request = protocol.StepRequest(
            step.kind,
            step.round,
            step.attempt,
            step.members,
            self.announcements if announced else (),
            previous,
        ).to_content()
        by_node = {self.nodes[member]: member for member in step.members}
        replies, node_failures = self._send(dict.fromkeys(by_node, request), protocol.STEP)
        failures = {by_node[node]: reason for node, reason in node_failures.items()}
        contributions: dict[str, Contribution] = {}
        timed = []
        for node, reply in replies.items():
            member = by_node[node]
            try:
                wire, timing = protocol.read_step_reply(reply.content)
                contribution = Contribution.from_bytes(wire)
            except (Malformed, protocol.ProtocolError) as error:
                failures[member] = f"sent no valid contribution ({error})"
                continue
            problem = None
            if contribution.member != member:
                problem = f"its reply is a contribution of {contribution.member}"
            else:
                problem = check_contribution(contribution, step, self.transcript.head, self.signing_keys, words)
            if problem:
                failures[member] = problem
            else:
                contributions[member] = contribution
                timed.append((member, timing, self.grid.arrivals.get(reply.metadata.reply_to_message_id, time.time())))
        exchange = Exchange(step.kind, step.round, self.grid.pushed_at, timed, sorted(failures.items()))
        return [contributions[m] for m in sorted(contributions)], failures, exchange


def _difference(expected: tuple[str, ...], actual: tuple[str, ...]) -> str:
    from fl_runtime.learning.data import column_difference

    return column_difference(expected, actual) or "the same columns in another order"
