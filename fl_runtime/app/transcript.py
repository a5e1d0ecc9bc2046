"""The run's transcript: a hash chain over everything a member verified, and the file it leaves in its account.

    T0 = H("run" | run | settings)
    T1 = H("keys" | T0 | H(announcement) for every member, by name)
    T(s+1) = H("step" | T(s) | step | H(total) | H(contribution) for every member, by name)

Each contribution is signed together with the T it was computed after, so it verifies only in the history its
member saw: a server that showed two members different announcements, member sets or totals gets
contributions that the others refuse. A member refuses a step whose contributions are not exactly one per
member of the step, in order of name, each for this step and attempt, after this T, signed by that member's
announced key, of the layout's length (``verify_step``).

The file (JSON lines, each in canonical form) holds the run, the announcements, every verified step with every
member's signed masked vector and the total, the writer's own last answer, and a closing line signed with the
writer's per-run key over the SHA-256 of every byte before it. ``verify_file`` checks all of it offline, replaying
the model family's state machine on the totals (``python -m fl_runtime verify-transcript``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fl_runtime.app.signed import (
    PROTOCOL,
    Contribution,
    Malformed,
    RunKeys,
    SignedAnnouncement,
    Step,
    b64,
    canonical,
    digest,
    unb64,
)
from fl_runtime.errors import DataError
from fl_runtime.learning import fixed_point

TRANSCRIPT_FILE = "transcript.jsonl"


class TranscriptError(DataError):
    """Something a member or a verifier refuses; the text names the member, the step (or line) and what is wrong."""


def run_hash(run: str, settings: Mapping) -> bytes:
    return digest(f"{PROTOCOL} run\n".encode() + canonical({"run": run, "settings": dict(settings)}))


@dataclass
class Transcript:
    """The chain (``head``) and the file's lines, kept together as a member or the server verifies."""

    run: str
    settings: dict
    writer: str
    head: bytes = b""
    lines: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.head = run_hash(self.run, self.settings)
        self._line({"entry": "run", "run": self.run, "settings": self.settings, "writer": self.writer})

    def _line(self, entry: dict) -> None:
        self.lines.append(canonical(entry) + b"\n")

    def keys(self, announcements: Sequence[SignedAnnouncement]) -> None:
        """After the key exchange (announcements already checked by the caller), by member name."""
        ordered = sorted(announcements, key=lambda signed: signed.member)
        wires = [signed.to_bytes() for signed in ordered]
        self.head = digest(f"{PROTOCOL} keys\n".encode() + self.head + b"".join(digest(w) for w in wires))
        for wire in wires:
            self._line({"entry": "announcement", "wire": b64(wire)})

    def verify_step(
        self, step: Step, contributions: Sequence[Contribution], signing_keys: Mapping[str, bytes], words: int
    ) -> np.ndarray:
        """The total of a step's contributions, once every one of them is what it must be (TranscriptError)."""
        where = f"{step.kind} {step.round}, attempt {step.attempt}"
        names = [c.member for c in contributions]
        if sorted(set(names)) != list(step.members):
            missing = sorted(set(step.members) - set(names))
            extra = sorted(set(names) - set(step.members))
            raise TranscriptError(
                f"{where}: the contributions are not one per member of the step (missing {missing}, not members "
                f"{extra})"
            )
        if names != sorted(names) or len(names) != len(set(names)):
            raise TranscriptError(f"{where}: the contributions are re-ordered or repeated ({names})")
        for contribution in contributions:
            problem = check_contribution(contribution, step, self.head, signing_keys, words)
            if problem:
                raise TranscriptError(f"{where}: member {contribution.member}'s contribution {problem}")
        return fixed_point.add([fixed_point.from_bytes(c.vector, words) for c in contributions])

    def record_step(self, step: Step, contributions: Sequence[Contribution], total: np.ndarray) -> None:
        wires = [c.to_bytes() for c in contributions]
        total_bytes = fixed_point.to_bytes(total)
        self.head = digest(
            f"{PROTOCOL} step\n".encode()
            + self.head
            + canonical(step.content())
            + digest(total_bytes)
            + b"".join(digest(w) for w in wires)
        )
        self._line(
            {
                "entry": "step",
                **step.content(),
                "contributions": [b64(w) for w in wires],
                "total": b64(total_bytes),
                "transcript": self.head.hex(),
            }
        )

    def closed(self, keys: RunKeys | None, pending: Contribution | None = None) -> bytes:
        """The file's bytes, closed: with the writer's last answer, whose total it has not verified (``pending``),
        and signed with the writer's run key when it has one (a member; the server has none)."""
        lines = list(self.lines)
        if pending is not None:
            lines.append(canonical({"entry": "contribution", "wire": b64(pending.to_bytes())}) + b"\n")
        body = b"".join(lines)
        closing = {"entry": "close", "transcript": self.head.hex(), "digest": hashlib.sha256(body).hexdigest()}
        if keys is not None:
            closing["signature"] = b64(keys.signing.sign(f"{PROTOCOL} close\n".encode() + canonical(closing)))
        return body + canonical(closing) + b"\n"


def check_contribution(
    contribution: Contribution, step: Step, head: bytes, signing_keys: Mapping[str, bytes], words: int
) -> str | None:
    """What is wrong with one member's contribution to ``step`` after transcript ``head`` (None: nothing)."""
    if contribution.step != step:
        other = contribution.step
        return (
            f"is for {other.kind} {other.round}, attempt {other.attempt}, members {list(other.members)}, not for "
            f"{step.kind} {step.round}, attempt {step.attempt}, members {list(step.members)} (replayed?)"
        )
    if contribution.transcript != head:
        return (
            f"was computed after another history (transcript {contribution.transcript.hex()[:16]}..., here "
            f"{head.hex()[:16]}...)"
        )
    if len(contribution.vector) != 8 * words:
        return f"has {len(contribution.vector) // 8} words, the step's layout {words}"
    key = signing_keys.get(contribution.member)
    if key is None or not contribution.verified(key):
        return "is not signed by its member's run key (forged?)"
    return None


def parse_line(line: bytes, number: int) -> dict:
    try:
        entry = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise TranscriptError(f"line {number}: not JSON") from None
    if not isinstance(entry, dict) or canonical(entry) != line.rstrip(b"\n"):
        raise TranscriptError(f"line {number}: not in canonical form (changed?)")
    return entry


def contribution_from(wire: str, number: int) -> Contribution:
    try:
        return Contribution.from_bytes(unb64(wire, "a contribution"))
    except Malformed as error:
        raise TranscriptError(f"line {number}: {error}") from None


def announcement_from(wire: object, number: int) -> SignedAnnouncement:
    try:
        return SignedAnnouncement.from_bytes(unb64(wire, "an announcement"))
    except Malformed as error:
        raise TranscriptError(f"line {number}: {error}") from None


def read_lines(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if not data.endswith(b"\n"):
        raise TranscriptError(f"{path}: does not end with a closing line")
    return [line + b"\n" for line in data[:-1].split(b"\n")]


def _decode_b64(value: object, what: str, number: int) -> bytes:
    try:
        return unb64(value, what)
    except Malformed as error:
        raise TranscriptError(f"line {number}: {error}") from None


def verify_close(entry: dict, body: bytes, head: bytes, writer_key: bytes | None, number: int) -> None:
    if entry.get("entry") != "close":
        raise TranscriptError(f"line {number}: the last line is not the closing line")
    if entry.get("digest") != hashlib.sha256(body).hexdigest():
        raise TranscriptError(f"line {number}: the lines before the closing line are not the ones it closed (changed?)")
    if entry.get("transcript") != head.hex():
        raise TranscriptError(f"line {number}: the closing transcript hash is not the chain's")
    if writer_key is None:
        return
    unsigned = {key: value for key, value in entry.items() if key != "signature"}
    signature = _decode_b64(entry.get("signature"), "signature", number)
    try:
        Ed25519PublicKey.from_public_bytes(writer_key).verify(
            signature, f"{PROTOCOL} close\n".encode() + canonical(unsigned)
        )
    except (InvalidSignature, ValueError):
        raise TranscriptError(f"line {number}: the closing line is not signed by the writer's run key") from None
