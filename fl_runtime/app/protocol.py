"""The relay protocol's messages, as Flower records: the one place both apps read and write them.

Server -> every member, once per run, ``query.keys``: the run's proposed settings (each member checks them
against its own pinned ranges). Reply: the member's signed announcement of its per-run keys.

Server -> every member of a step, ``query.step``: which question (kind and round), the attempt, the step's
members, and what the member needs to verify and step its own state machine: on the first step every member's
announcement, on every later one every member's signed contribution to the previous step. Reply: the member's
signed masked contribution, and when its handler ran (operational timing, unmasked).

Nothing else travels. A message is read strictly: a record or field that is not part of the protocol (a
model, statistics, bins, thresholds, a seed, a ridge, class weights...) is refused by name, before anything is
computed. Standard Flower records only.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from flwr.app import ConfigRecord, Error, Message, RecordDict

from fl_runtime.app.signed import PROTOCOL, canonical

KEYS = "query.keys"
STEP = "query.step"
RELAY, TIMING = "relay", "timing"
REFUSED = 2  # the error code of a member's refusal (Flower's "ClientApp raised an exception")
# the member's timing: when the runner took the task, when the handler started and ended (operational data)
TASK_START, HANDLER_START, HANDLER_END = "task-start", "handler-start", "handler-end"


class ProtocolError(ValueError):
    """A message that is not one of the protocol's; the text names the record or field."""


def _relay(content: RecordDict, required: set[str], optional: set[str] = frozenset()) -> ConfigRecord:  # type: ignore[assignment]
    if content.array_records:
        raise ProtocolError(
            f"the message carries array records {sorted(content.array_records)}: the relay protocol carries none "
            "(a member takes no model or statistic from the server)"
        )
    if content.metric_records:
        raise ProtocolError(
            f"the message carries metric records {sorted(content.metric_records)}: not part of the protocol"
        )
    others = sorted(set(content.config_records) - {RELAY})
    if others:
        raise ProtocolError(f"config record '{others[0]}' is not part of the relay protocol")
    if RELAY not in content.config_records:
        raise ProtocolError(f"the message has no '{RELAY}' record")
    relay = content.config_records[RELAY]
    unknown = sorted(set(relay) - required - optional)
    if unknown:
        raise ProtocolError(f"field '{unknown[0]}' is not part of the relay protocol")
    missing = sorted(required - set(relay))
    if missing:
        raise ProtocolError(f"field '{missing[0]}' is missing")
    if relay["protocol"] != PROTOCOL:
        raise ProtocolError(f"field 'protocol': {relay['protocol']!r} is not {PROTOCOL}")
    return relay


def _whole(relay: ConfigRecord, key: str) -> int:
    value = relay[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"field '{key}' must be a whole number, got {value!r}")
    return value


def _byte_list(relay: ConfigRecord, key: str) -> list[bytes]:
    value = relay.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, bytes) for item in value):
        raise ProtocolError(f"field '{key}' must be a list of byte strings")
    return [bytes(item) for item in value if isinstance(item, bytes)]


def _bytes(record: ConfigRecord | None, key: str, what: str) -> bytes:
    value = None if record is None else record.get(key)
    if not isinstance(value, bytes):
        raise ProtocolError(what)
    return value


def keys_request(settings: dict) -> RecordDict:
    return RecordDict({RELAY: ConfigRecord({"protocol": PROTOCOL, "settings": canonical(settings).decode()})})


def read_keys_request(content: RecordDict) -> dict:
    relay = _relay(content, {"protocol", "settings"})
    text = relay["settings"]
    try:
        settings = json.loads(text) if isinstance(text, str) else None
    except json.JSONDecodeError:
        settings = None
    if not isinstance(settings, dict):
        raise ProtocolError("field 'settings' must be a JSON object")
    return settings


def keys_reply(announcement: bytes) -> RecordDict:
    return RecordDict({RELAY: ConfigRecord({"announcement": announcement})})


def read_keys_reply(content: RecordDict) -> bytes:
    missing = "a reply to the keys query without an announcement"
    return _bytes(content.config_records.get(RELAY), "announcement", missing)


@dataclass(frozen=True)
class StepRequest:
    kind: str
    round: int
    attempt: int
    members: tuple[str, ...]
    announcements: tuple[bytes, ...]  # the first step's
    contributions: tuple[bytes, ...]  # the previous step's

    def to_content(self) -> RecordDict:
        relay: dict = {
            "protocol": PROTOCOL,
            "kind": self.kind,
            "round": self.round,
            "attempt": self.attempt,
            "members": list(self.members),
        }
        if self.announcements:
            relay["announcements"] = list(self.announcements)
        if self.contributions:
            relay["contributions"] = list(self.contributions)
        return RecordDict({RELAY: ConfigRecord(relay)})


def read_step_request(content: RecordDict) -> StepRequest:
    relay = _relay(content, {"protocol", "kind", "round", "attempt", "members"}, {"announcements", "contributions"})
    value = relay["members"]
    members = [m for m in value if isinstance(m, str)] if isinstance(value, list) else []
    if not members or len(members) != len(value):  # type: ignore[arg-type]
        raise ProtocolError("field 'members' must be a non-empty list of member names")
    if not isinstance(relay["kind"], str):
        raise ProtocolError("field 'kind' must be text")
    return StepRequest(
        relay["kind"],
        _whole(relay, "round"),
        _whole(relay, "attempt"),
        tuple(members),
        tuple(_byte_list(relay, "announcements")),
        tuple(_byte_list(relay, "contributions")),
    )


def step_reply(contribution: bytes, task_start: float, handler_start: float) -> RecordDict:
    timing: dict = {TASK_START: task_start, HANDLER_START: handler_start, HANDLER_END: time.time()}
    return RecordDict({RELAY: ConfigRecord({"contribution": contribution}), TIMING: ConfigRecord(timing)})


def read_step_reply(content: RecordDict) -> tuple[bytes, dict[str, float]]:
    relay, timing = content.config_records.get(RELAY), content.config_records.get(TIMING)
    contribution = _bytes(relay, "contribution", "a reply to a step without a contribution")
    times = {key: float(value) for key, value in (timing or {}).items() if isinstance(value, (int, float))}
    return contribution, times


def refusal(message: Message, reason: str) -> Message:
    """A member's refusal, as the error reply the server receives (the reason names a rule, never a data value)."""
    return Message(Error(code=REFUSED, reason=reason), reply_to=message)
