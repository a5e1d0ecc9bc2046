"""What members sign, and how it travels: per-run key announcements and contributions.

- A member's ``Announcement`` of its fresh per-run keys (an Ed25519 signing key and an X25519 exchange key),
  with the run, the settings it accepted and its feature names, is signed once per run with its identity key
  (``identity``: KMS in AWS). It is the run's only use of the identity key: rounds never call KMS.
- A ``Contribution`` is one member's masked vector for one step and attempt, signed with its per-run signing
  key together with the step, the member set, and the transcript hash of everything verified before it
  (``transcript``): it cannot be replayed into another round, attempt, run or history.

Wire formats are canonical JSON (sorted keys, no spaces, ASCII) so that the same content is the same bytes on
every machine, followed for a contribution by the vector's raw little-endian words.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fl_runtime.app import identity
from fl_runtime.app.identity import Identity

PROTOCOL = "fl-relay/1"
RAW = (serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class Malformed(ValueError):
    """Bytes that are not the document they claim to be."""


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise Malformed(f"{what} is not base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        raise Malformed(f"{what} is not base64") from None


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _load(data: bytes, what: str) -> dict:
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Malformed(f"{what} is not JSON") from None
    if not isinstance(document, dict) or canonical(document) != data:
        raise Malformed(f"{what} is not in canonical form")
    return document


@dataclass(frozen=True)
class Announcement:
    """A member's per-run keys and what it agreed to, as it signs them."""

    member: str
    run: str
    settings: dict
    features: tuple[str, ...]
    identity_key: bytes  # DER SubjectPublicKeyInfo (P-256)
    signing_key: bytes  # Ed25519, raw
    exchange_key: bytes  # X25519, raw

    def content(self) -> dict:
        return {
            "protocol": PROTOCOL,
            "member": self.member,
            "run": self.run,
            "settings": self.settings,
            "features": list(self.features),
            "identity-key": b64(self.identity_key),
            "signing-key": b64(self.signing_key),
            "exchange-key": b64(self.exchange_key),
        }

    def signed_bytes(self) -> bytes:
        return f"{PROTOCOL} announcement\n".encode() + canonical(self.content())


@dataclass(frozen=True)
class SignedAnnouncement:
    announcement: Announcement
    signature: bytes  # identity key's ECDSA signature of ``announcement.signed_bytes()``

    def to_bytes(self) -> bytes:
        return canonical({"announcement": self.announcement.content(), "signature": b64(self.signature)})

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedAnnouncement:
        document = _load(data, "an announcement")
        content = document.get("announcement")
        keys = {"protocol", "member", "run", "settings", "features", "identity-key", "signing-key", "exchange-key"}
        if set(document) != {"announcement", "signature"} or not isinstance(content, dict) or set(content) != keys:
            raise Malformed("an announcement does not have the fields of one")
        if content["protocol"] != PROTOCOL:
            raise Malformed(f"an announcement of protocol {content['protocol']!r}, not {PROTOCOL}")
        features = content["features"]
        if not isinstance(features, list) or not all(isinstance(name, str) for name in features):
            raise Malformed("an announcement's features are not a list of names")
        if not isinstance(content["member"], str) or not isinstance(content["run"], str):
            raise Malformed("an announcement's member and run must be text")
        if not isinstance(content["settings"], dict):
            raise Malformed("an announcement's settings must be an object")
        announcement = Announcement(
            member=content["member"],
            run=content["run"],
            settings=content["settings"],
            features=tuple(features),
            identity_key=unb64(content["identity-key"], "identity-key"),
            signing_key=unb64(content["signing-key"], "signing-key"),
            exchange_key=unb64(content["exchange-key"], "exchange-key"),
        )
        if len(announcement.signing_key) != 32 or len(announcement.exchange_key) != 32:
            raise Malformed(f"member {announcement.member}'s per-run keys are not 32-byte keys")
        return cls(announcement, unb64(document["signature"], "signature"))

    @property
    def member(self) -> str:
        return self.announcement.member

    @property
    def fingerprint(self) -> str:
        return identity.fingerprint(self.announcement.identity_key)

    def verified(self) -> bool:
        """Whether the identity key it names signed it (which key that is, the pins decide)."""
        return identity.verify(self.announcement.identity_key, self.signature, self.announcement.signed_bytes())


class RunKeys:
    """A member's fresh keys for one run: never stored, never reused."""

    def __init__(self) -> None:
        self.signing = Ed25519PrivateKey.generate()
        self.exchange = X25519PrivateKey.generate()

    def announce(
        self, member: str, run: str, settings: dict, features: tuple[str, ...], own: Identity
    ) -> SignedAnnouncement:
        announcement = Announcement(
            member=member,
            run=run,
            settings=settings,
            features=tuple(features),
            identity_key=own.public_key(),
            signing_key=self.signing.public_key().public_bytes(*RAW),
            exchange_key=self.exchange.public_key().public_bytes(*RAW),
        )
        return SignedAnnouncement(announcement, own.sign(announcement.signed_bytes()))


@dataclass(frozen=True)
class Step:
    """One step and attempt: which question (``kind``, ``round``), the how-many-th try, and over which members."""

    kind: str
    round: int
    attempt: int
    members: tuple[str, ...]  # sorted

    def content(self) -> dict:
        return {"kind": self.kind, "round": self.round, "attempt": self.attempt, "members": list(self.members)}

    @property
    def label(self) -> str:
        """Names the step and attempt in mask nonces."""
        return f"{self.kind}/{self.round}/{self.attempt}"


@dataclass(frozen=True)
class Contribution:
    """One member's masked vector for one step, bound to the transcript hash before that step."""

    member: str
    step: Step
    transcript: bytes  # 32 bytes
    vector: bytes  # little-endian 64-bit words
    signature: bytes  # Ed25519, of ``signed_bytes()``

    def header(self) -> dict:
        return {
            "member": self.member,
            **self.step.content(),
            "transcript": self.transcript.hex(),
            "vector": hashlib.sha256(self.vector).hexdigest(),
            "words": len(self.vector) // 8,
        }

    def signed_bytes(self) -> bytes:
        return f"{PROTOCOL} contribution\n".encode() + canonical(self.header())

    @classmethod
    def sign(cls, keys: RunKeys, member: str, step: Step, transcript: bytes, vector: bytes) -> Contribution:
        unsigned = cls(member, step, transcript, vector, b"")
        return cls(member, step, transcript, vector, keys.signing.sign(unsigned.signed_bytes()))

    def verified(self, signing_key: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(signing_key).verify(self.signature, self.signed_bytes())
        except (InvalidSignature, ValueError):
            return False
        return True

    def to_bytes(self) -> bytes:
        head = canonical({"header": self.header(), "signature": b64(self.signature)})
        return struct.pack(">I", len(head)) + head + self.vector

    @classmethod
    def from_bytes(cls, data: bytes) -> Contribution:
        if len(data) < 4:
            raise Malformed("a contribution shorter than its length prefix")
        (size,) = struct.unpack(">I", data[:4])
        document = _load(data[4 : 4 + size], "a contribution's header")
        header, vector = document.get("header"), data[4 + size :]
        fields = {"member", "kind", "round", "attempt", "members", "transcript", "vector", "words"}
        if set(document) != {"header", "signature"} or not isinstance(header, dict) or set(header) != fields:
            raise Malformed("a contribution does not have the fields of one")
        members = header["members"]
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise Malformed("a contribution's members are not a list of names")
        for key in ("round", "attempt", "words"):
            if isinstance(header[key], bool) or not isinstance(header[key], int):
                raise Malformed(f"a contribution's {key} is not a whole number")
        if header["words"] * 8 != len(vector) or hashlib.sha256(vector).hexdigest() != header["vector"]:
            raise Malformed(f"member {header['member']}'s vector is not the one its header names")
        try:
            transcript = bytes.fromhex(str(header["transcript"]))
        except ValueError:
            raise Malformed("a contribution's transcript hash is not hexadecimal") from None
        step = Step(str(header["kind"]), header["round"], header["attempt"], tuple(members))
        return cls(str(header["member"]), step, transcript, vector, unb64(document["signature"], "signature"))
