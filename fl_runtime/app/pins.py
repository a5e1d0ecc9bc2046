"""A member's own settings about the federation, pinned in its own account and never taken from the server.

- who the members are: each one's name and the fingerprint of its identity key (agreed out of band, as the
  external id is); a run must start with exactly these members, each proving its identity with that key;
  in one organisation a member may instead be named by its KMS identity key (``identity_key``), whose fingerprint
  the member's job reads from KMS and fills in before the ClientApp starts;
- ``min_members`` (k): the fewest members a total may be over; this member contributes to no smaller sum;
- ``min_rows`` (m): the fewest of its own rows an answer may describe (``logistic``: moments of fewer rows, or
  sums at a model where fewer rows effectively weigh in, are declined);
- ``allow_reruns``: whether it answers a step again, on fresh masks, after another member dropped out of it
  (a server that lies about a drop-out learns that member's answer to that step: ``docs/trust-model.md``);
- ``seed``: its own train/validation split and SMOTE draw;
- ``identity``: where its identity key is (``file:/path`` on one machine, ``kms:<key ARN>`` in AWS);
- ``ranges``: every setting of a run it accepts; a run whose settings fall outside is declined, naming the
  setting.

A client stack writes this document (SSM, ``<prefix>/client/<name>/pins``); its job hands it to the ClientApp as
a file; ``local`` writes one per member. Standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fl_runtime import defaults
from fl_runtime.documents import JsonDocument
from fl_runtime.errors import ConfigError

FINGERPRINT = re.compile(r"^sha256:[0-9a-f]{64}$")
MEMBER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
IDENTITY = re.compile(r"^(file:/.+|kms:arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_-]+)$")
KMS_KEY = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(key|alias)/[A-Za-z0-9/_-]+$")


@dataclass(frozen=True)
class SettingRanges(JsonDocument):
    """The run settings a member accepts: a setting outside them is declined, naming it."""

    STRICT = True

    # gbdt only where the member pins it: its node histograms disclose more of single rows (docs/trust-model.md)
    families: tuple[str, ...] = ("logistic",)
    max_rounds: int = defaults.MAX_ROUNDS_PINNED
    C: tuple[float, ...] = (1e-4, 1e4)  # lowest and highest
    penalties: tuple[str, ...] = ("l2", "l1")
    class_balances: tuple[str, ...] = ("none", "class-weights", "smote")
    tolerance: tuple[float, ...] = (0.0, 0.1)  # lowest and highest
    # gbdt: at most max_trees x the highest depth tree exchanges a run; min_rows_leaf is also at least min_rows
    max_trees: int = defaults.MAX_TREES_PINNED
    depth: tuple[float, ...] = (1, 6)
    learning_rate: tuple[float, ...] = (0.01, 1.0)
    l2: tuple[float, ...] = (0.01, 100.0)
    min_rows_leaf: tuple[float, ...] = (1, 10**9)
    min_hessian: tuple[float, ...] = (0.0, 1000.0)
    cell_rows: tuple[float, ...] = (1, 10**9)  # and at least min_rows in a tree run (cells of about that many rows)

    BOUNDS = ("C", "tolerance", "depth", "learning_rate", "l2", "min_rows_leaf", "min_hessian", "cell_rows")

    def __post_init__(self) -> None:
        for name in self.BOUNDS:
            bounds = getattr(self, name)
            if len(bounds) != 2 or bounds[0] > bounds[1]:
                raise ConfigError(f"ranges.{name}: {list(bounds)} is not [lowest, highest]")
        if not self.families or any(name not in defaults.FAMILIES for name in self.families):
            raise ConfigError(
                f"ranges.families: {list(self.families)} is not a list of ones of {list(defaults.FAMILIES)}"
            )
        for name in ("max_rounds", "max_trees"):
            if getattr(self, name) < 1:
                raise ConfigError(f"ranges.{name}: {getattr(self, name)} is not at least 1")


@dataclass(frozen=True)
class Member(JsonDocument):
    STRICT = True

    name: str
    fingerprint: str  # sha256:<hex> of its identity public key (DER SubjectPublicKeyInfo)
    identity_key: str = ""  # its KMS key or alias ARN, if the fingerprint is to be read from KMS (module docstring)

    def __post_init__(self) -> None:
        if not MEMBER_NAME.match(self.name):
            raise ConfigError(f"member name {self.name!r} is not 1-63 letters, digits, '.', '_' or '-'")
        if self.fingerprint and not FINGERPRINT.match(self.fingerprint):
            raise ConfigError(f"member {self.name}: fingerprint {self.fingerprint!r} is not sha256:<64 hex digits>")
        if self.identity_key and not KMS_KEY.match(self.identity_key):
            raise ConfigError(f"member {self.name}: identity_key {self.identity_key!r} is not a KMS key or alias ARN")


@dataclass(frozen=True)
class ClientPins(JsonDocument):
    """See the module docstring."""

    STRICT = True

    client: str
    members: tuple[Member, ...]
    identity: str
    min_members: int = defaults.MIN_MEMBERS
    min_rows: int = defaults.MIN_ROWS
    allow_reruns: bool = True
    seed: int = defaults.SEED
    ranges: SettingRanges = field(default_factory=SettingRanges)

    def __post_init__(self) -> None:
        names = [member.name for member in self.members]
        if len(set(names)) != len(names):
            raise ConfigError(f"members: a name is listed twice in {names}")
        if self.client not in names:
            raise ConfigError(f"client: {self.client!r} is not one of the members {names}")
        if not 1 <= self.min_members <= len(self.members):
            raise ConfigError(
                f"min_members: {self.min_members} must be from 1 to the {len(self.members)} members listed"
            )
        if self.min_rows < 1:
            raise ConfigError(f"min_rows: {self.min_rows} is not at least 1")
        if not IDENTITY.match(self.identity):
            raise ConfigError(f"identity: {self.identity!r} is neither file:/<path> nor kms:<key or alias ARN>")

    def fingerprint_of(self, name: str) -> str | None:
        """The pinned fingerprint of member ``name`` (None: not a member)."""
        return next((member.fingerprint for member in self.members if member.name == name), None)

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(sorted(member.name for member in self.members))

    @classmethod
    def read(cls, path: Path) -> ClientPins:
        try:
            text = path.read_text()
        except OSError as error:
            raise ConfigError(f"{path}: cannot read this member's pinned settings ({error.strerror})") from None
        return cls.from_json(text, str(path))
