"""Offline verification of a run's transcript (``python -m fl_runtime verify-transcript FILE [--pins FILE]``).

Checks, from the file alone (no key but the public ones it holds): every line in canonical form; every
announcement signed by the identity key it names (and, given the member's pins, that the members are exactly
the pinned ones with their pinned fingerprints); every step's contributions one per member, signed by that
member's announced run key, for that step and attempt, after that transcript hash; every total the sum of its
contributions modulo 2^64 and within range; every step the question the model family's state machine asks after
the totals before it; the hash chain; and the closing line over every byte before it, signed with the writer's
run key. One changed byte anywhere fails one of these.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fl_runtime.app.pins import ClientPins
from fl_runtime.app.signed import SignedAnnouncement, Step, b64
from fl_runtime.app.transcript import (
    Transcript,
    TranscriptError,
    announcement_from,
    contribution_from,
    parse_line,
    read_lines,
    verify_close,
)
from fl_runtime.errors import OptionsError
from fl_runtime.learning import fixed_point
from fl_runtime.learning.families import family
from fl_runtime.learning.task import TrainingPlan


@dataclass(frozen=True)
class Verified:
    """What a valid transcript shows."""

    writer: str
    run: str
    members: tuple[str, ...]
    steps: int
    last: str  # the last question verified
    signed: bool  # closed with the writer's run key (a member's transcript; the server's is not)


def plan_of(settings: dict) -> TrainingPlan:
    try:
        return TrainingPlan.from_config(settings)
    except (KeyError, TypeError, ValueError, OptionsError) as error:
        raise TranscriptError(f"line 1: the run's settings are not a run's ({error})") from None


def _check_pins(announcements: list[SignedAnnouncement], pins: ClientPins) -> None:
    names = sorted(a.member for a in announcements)
    if names != list(pins.member_names):
        raise TranscriptError(f"the announced members {names} are not the pinned members {list(pins.member_names)}")
    for signed in announcements:
        if signed.fingerprint != pins.fingerprint_of(signed.member):
            raise TranscriptError(f"member {signed.member}'s identity key {signed.fingerprint} is not its pinned one")


def verify_file(path: Path, pins: ClientPins | None = None) -> Verified:
    """A ``Verified`` summary, or TranscriptError naming the line and what is wrong."""
    lines = read_lines(path)
    entries = [parse_line(line, number) for number, line in enumerate(lines, 1)]
    head = entries[0]
    if head.get("entry") != "run" or not isinstance(head.get("settings"), dict):
        raise TranscriptError("line 1: not the run's opening line")
    run, settings, writer = str(head["run"]), head["settings"], str(head["writer"])
    plan = plan_of(settings)
    transcript = Transcript(run, settings, writer)
    number = 1
    announcements = []
    while number < len(entries) and entries[number].get("entry") == "announcement":
        signed = announcement_from(entries[number].get("wire"), number + 1)
        if not signed.verified():
            raise TranscriptError(f"line {number + 1}: member {signed.member}'s announcement is not signed by its key")
        if (signed.announcement.run, signed.announcement.settings) != (run, settings):
            raise TranscriptError(f"line {number + 1}: member {signed.member} announced another run or settings")
        announcements.append(signed)
        number += 1
    if not announcements:
        raise TranscriptError("line 2: no announcements")
    if pins is not None:
        _check_pins(announcements, pins)
    transcript.keys(announcements)
    keys = {a.member: a.announcement.signing_key for a in announcements}
    machine = family(plan.family)
    state = machine.start(plan, announcements[0].announcement.features)
    members = tuple(sorted(keys))
    steps = 0
    while number < len(entries) and entries[number].get("entry") == "step":
        state, members = _replay_step(entries[number], number + 1, machine, state, transcript, keys, members)
        steps += 1
        number += 1
    if number < len(entries) - 1 and entries[number].get("entry") == "contribution":
        _check_own(entries[number], number + 1, writer, state, transcript, keys)
        number += 1
    if number != len(entries) - 1:
        raise TranscriptError(f"line {number + 1}: an entry out of place ({entries[number].get('entry')!r})")
    body = b"".join(lines[:-1])
    verify_close(entries[-1], body, transcript.head, keys.get(writer), len(entries))
    last = state.question.label if state.question is not None else "the end of the run"
    return Verified(writer, run, tuple(sorted(keys)), steps, last, writer in keys)


def _replay_step(entry: dict, number: int, machine, state, transcript: Transcript, keys: dict, before: tuple):
    question = state.question
    try:
        step = Step(str(entry["kind"]), int(entry["round"]), int(entry["attempt"]), tuple(entry["members"]))
    except (KeyError, TypeError, ValueError):
        raise TranscriptError(f"line {number}: not a step entry") from None
    if question is None or (step.kind, step.round) != (question.kind, question.round):
        raise TranscriptError(f"line {number}: {step.kind} {step.round} is not what the state machine asks next")
    if not set(step.members) <= set(before):
        raise TranscriptError(f"line {number}: members {list(step.members)} include some that had dropped out")
    contributions = [contribution_from(wire, number) for wire in entry.get("contributions", [])]
    layout = machine.layout(state)
    total = transcript.verify_step(step, contributions, keys, layout.length)
    if entry.get("total") != b64(fixed_point.to_bytes(total)):
        raise TranscriptError(f"line {number}: the recorded total is not the sum of the contributions")
    transcript.record_step(step, contributions, total)
    if entry.get("transcript") != transcript.head.hex():
        raise TranscriptError(f"line {number}: the recorded transcript hash is not the chain's")
    try:
        totals = layout.decode(total, len(step.members))
    except fixed_point.OutOfRange as error:
        raise TranscriptError(f"line {number}: {error}") from None
    state, _ = machine.advance(state, totals, len(step.members))
    return state, step.members


def _check_own(entry: dict, number: int, writer: str, state, transcript: Transcript, keys: dict) -> None:
    contribution = contribution_from(str(entry.get("wire", "")), number)
    question = state.question
    if contribution.member != writer or question is None:
        raise TranscriptError(f"line {number}: the last answer is not the writer's answer to the open question")
    if (contribution.step.kind, contribution.step.round) != (question.kind, question.round):
        raise TranscriptError(f"line {number}: the last answer is not to {question.label}")
    if contribution.transcript != transcript.head or not contribution.verified(keys.get(writer, b"")):
        raise TranscriptError(f"line {number}: the last answer is not signed after this history")
