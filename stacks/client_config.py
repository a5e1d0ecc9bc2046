"""One client's entry of the federation config (``clients[i]``), read into a ``ClientAccount``.

Besides its account, network and external id, and what its launcher may start, an entry holds what the client
pins as a member of the federation (``fl_runtime.app.pins``; its client stack writes the pins document):

- ``identity_fingerprint``: ``sha256:<64 hex>`` of the client's identity key, agreed out of band like the
  external id. Separate organisations need every client's before a run can start (a member refuses a run while
  another has none, naming it); synth works without, since a client's first deploy creates its key and
  ``python -m fl_runtime doctor --client NAME`` then prints the fingerprint to share. One organisation may leave
  it out: each job reads the other members' keys from KMS when it starts (``fl_runtime.aws.member_keys``).
- ``min_members`` (k, default ``defaults.MIN_MEMBERS``): 1 to the number of clients; a federation of fewer
  clients than the default must set it (with two members each learns the other's sums: docs/trust-model.md);
- ``min_rows`` (m), ``allow_reruns``, ``seed`` and ``ranges`` (any of ``SettingRanges``' fields), defaulting
  to the runtime's;
- ``identity_key_generation`` (default 1): bumping it rotates the identity key with a stack update (a new KMS
  key, the alias moved to it; the new fingerprint must be shared again in separate organisations).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from fl_runtime import defaults
from fl_runtime.app.pins import FINGERPRINT, SettingRanges
from fl_runtime.aws.contract import APP_HASH, identity_alias
from fl_runtime.errors import ConfigError
from stacks.config_fields import ACCOUNT, arn_partition, cidr, string, whole_number

CLIENT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
EXTERNAL_ID = re.compile(r"^[\w+=,.@:/-]{2,1224}$")
SAMPLE_EXTERNAL_ID = "change-me"  # the marker in cdk.json's sample external ids
# cdk.json's and the tests' sample accounts: for synth only, never deployed
PLACEHOLDER_ACCOUNTS = {"111111111111", "222222222222", "333333333333", "444444444444"}
PEERING_CONNECTION = re.compile(r"^pcx-[0-9a-f]{8,17}$")
MAX_JOBS_PER_DAY_LIMIT = 1000  # clients[].max_jobs_per_day: a bound on cost, not a way around it
KICKOFF_ROLE_NAME = "FL-kickoff-client-job"
LAUNCHER_FUNCTION_NAME = "FL-job-launcher"  # fixed, so the server's endpoint policy can name it
# fixed, so that in one organisation the other members' identity keys can name the role that reads them
TRAINING_ROLE_NAME = "FL-training-job"
# what a member's ranges may name (fl_runtime.learning.task and balance: the CDK app does not load the learning code)
FAMILIES = defaults.FAMILIES
PENALTIES = ("l2", "l1")
CLASS_BALANCES = ("none", "class-weights", "smote")
MAX_ROUNDS_LIMIT = 1000
MAX_TREES_LIMIT = 10000
MEMBERS_LIMIT = 1000
MIN_ROWS_LIMIT = 10**9
SEED_LIMIT = 2**32 - 1  # numpy's seeds
KEY_GENERATION_LIMIT = 9999


@dataclass(frozen=True)
class ClientAccount:
    name: str
    account: str
    vpc_cidr: str
    external_id: str
    arn_partition: str  # of the federation's region: "aws", "aws-cn" or "aws-us-gov"
    # apps this client approves besides the one its own code bundle ships (while the federation upgrades)
    also_approved_app_hashes: tuple[str, ...] = ()
    # separate organisations: the server's peering request this client accepts ("" before the server has made it)
    peering_connection_id: str = ""
    # the most federation jobs this client's launcher starts in 24 hours (and one per run in any case)
    max_jobs_per_day: int = defaults.MAX_JOBS_PER_DAY
    # what it pins as a member (module docstring): "" until the fingerprint of its identity key is agreed
    identity_fingerprint: str = ""
    min_members: int = defaults.MIN_MEMBERS
    min_rows: int = defaults.MIN_ROWS
    allow_reruns: bool = True
    seed: int = defaults.SEED
    ranges: SettingRanges = field(default_factory=SettingRanges)
    identity_key_generation: int = 1
    # its own account's names of the federation's zones (privatelink: the zones availability_zone_ids names, which
    # have other names in each account); empty: the federation's availability_zones
    availability_zones: tuple[str, ...] = ()

    @property
    def kickoff_role_arn(self) -> str:
        return f"arn:{self.arn_partition}:iam::{self.account}:role/{KICKOFF_ROLE_NAME}"

    @property
    def training_role_arn(self) -> str:
        """The role this client's training jobs run with (``client_roles.training_execution_role``)."""
        return f"arn:{self.arn_partition}:iam::{self.account}:role/{TRAINING_ROLE_NAME}"

    def launcher_arn(self, region: str) -> str:
        return f"arn:{self.arn_partition}:lambda:{region}:{self.account}:function:{LAUNCHER_FUNCTION_NAME}"

    @property
    def identity_alias(self) -> str:
        return identity_alias(self.name)

    def identity_alias_arn(self, region: str) -> str:
        """Its identity key by the alias that follows rotation: how one organisation's members name it."""
        return f"arn:{self.arn_partition}:kms:{region}:{self.account}:{self.identity_alias}"


def parse_client(raw: Mapping, index: int, region: str) -> tuple[ClientAccount, ipaddress.IPv4Network]:
    """``clients[index]`` valid on its own (the federation's checks follow in ``check_members``)."""
    prefix = f"clients[{index}]."
    if not isinstance(raw, Mapping):
        raise ConfigError(f"clients[{index}]: expected an object with name, account, vpc_cidr, external_id")
    name = string(raw, "name", CLIENT_NAME, "a short name (lower-case letters, digits, hyphens; max 20)", prefix)
    account = string(raw, "account", ACCOUNT, "a 12-digit AWS account id", prefix)
    network = cidr(raw, "vpc_cidr", prefix)
    external_id = string(
        raw, "external_id", EXTERNAL_ID, "a valid sts:ExternalId (2-1224 of letters, digits, +=,.@:/-)", prefix
    )
    if SAMPLE_EXTERNAL_ID in external_id and account not in PLACEHOLDER_ACCOUNTS:
        raise ConfigError(
            f"{prefix}external_id: {external_id!r} is the sample value; agree a unique one with client {name!r} "
            f"(account {account}) before deploying to real accounts"
        )
    options = {**_launch_options(raw, prefix), **_member_options(raw, prefix)}
    client = ClientAccount(name, account, str(network), external_id, arn_partition(region), **options)
    return client, network


def _launch_options(raw: Mapping, prefix: str) -> dict[str, Any]:
    """The apps it approves besides its own, the peering it accepts, its job limit."""
    also = raw.get("also_approved_app_hashes", [])
    if not isinstance(also, list) or any(not isinstance(h, str) or not APP_HASH.match(h) for h in also):
        raise ConfigError(
            f"{prefix}also_approved_app_hashes: {also!r} is not a list of app content hashes (64 hexadecimal "
            "digits each, as fl_runtime.launch.fab.app_content_hash() prints them)"
        )
    peering = raw.get("peering_connection_id", "")
    if peering and (not isinstance(peering, str) or not PEERING_CONNECTION.match(peering)):
        raise ConfigError(f"{prefix}peering_connection_id: {peering!r} is not a VPC peering connection id (pcx-...)")
    jobs = raw.get("max_jobs_per_day", defaults.MAX_JOBS_PER_DAY)
    return {
        "also_approved_app_hashes": tuple(also),
        "peering_connection_id": peering,
        "max_jobs_per_day": whole_number(jobs, f"{prefix}max_jobs_per_day", 1, MAX_JOBS_PER_DAY_LIMIT),
    }


def _member_options(raw: Mapping, prefix: str) -> dict[str, Any]:
    """What it pins as a member; ``min_members`` is checked against the federation's size in ``check_members``."""
    fingerprint = raw.get("identity_fingerprint", "")
    if fingerprint and (not isinstance(fingerprint, str) or not FINGERPRINT.match(fingerprint)):
        raise ConfigError(
            f"{prefix}identity_fingerprint: {fingerprint!r} is not sha256:<64 lower-case hexadecimal digits> (the "
            "SHA-256 of the client's identity public key, as python -m fl_runtime doctor --client prints it)"
        )
    reruns = raw.get("allow_reruns", True)
    if not isinstance(reruns, bool):
        raise ConfigError(f"{prefix}allow_reruns: {reruns!r} is not true or false")
    generation = raw.get("identity_key_generation", 1)
    return {
        "identity_fingerprint": fingerprint,
        "min_members": whole_number(
            raw.get("min_members", defaults.MIN_MEMBERS), f"{prefix}min_members", 1, MEMBERS_LIMIT
        ),
        "min_rows": whole_number(raw.get("min_rows", defaults.MIN_ROWS), f"{prefix}min_rows", 1, MIN_ROWS_LIMIT),
        "allow_reruns": reruns,
        "seed": whole_number(raw.get("seed", defaults.SEED), f"{prefix}seed", 0, SEED_LIMIT),
        "ranges": _ranges(raw.get("ranges", {}), f"{prefix}ranges"),
        "identity_key_generation": whole_number(
            generation, f"{prefix}identity_key_generation", 1, KEY_GENERATION_LIMIT
        ),
    }


def _ranges(raw: object, where: str) -> SettingRanges:
    """Any of SettingRanges' fields; the others keep the runtime's defaults."""
    names = [item.name for item in fields(SettingRanges)]
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: {raw!r} is not an object with any of {', '.join(names)}")
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: not a setting range; the ranges are {', '.join(names)}")
    default = SettingRanges()
    return SettingRanges(
        families=_subset(raw, "families", FAMILIES, default.families, where),
        max_rounds=whole_number(raw.get("max_rounds", default.max_rounds), f"{where}.max_rounds", 1, MAX_ROUNDS_LIMIT),
        C=_bounds(raw, "C", default.C, where, positive=True),
        penalties=_subset(raw, "penalties", PENALTIES, default.penalties, where),
        class_balances=_subset(raw, "class_balances", CLASS_BALANCES, default.class_balances, where),
        tolerance=_bounds(raw, "tolerance", default.tolerance, where, positive=False),
        max_trees=whole_number(raw.get("max_trees", default.max_trees), f"{where}.max_trees", 1, MAX_TREES_LIMIT),
        depth=_bounds(raw, "depth", default.depth, where, positive=True),
        learning_rate=_bounds(raw, "learning_rate", default.learning_rate, where, positive=True),
        l2=_bounds(raw, "l2", default.l2, where, positive=True),
        min_rows_leaf=_bounds(raw, "min_rows_leaf", default.min_rows_leaf, where, positive=True),
        min_hessian=_bounds(raw, "min_hessian", default.min_hessian, where, positive=False),
        cell_rows=_bounds(raw, "cell_rows", default.cell_rows, where, positive=True),
    )


def _subset(raw: Mapping, name: str, allowed: tuple[str, ...], default: tuple[str, ...], where: str) -> tuple[str, ...]:
    value = raw.get(name, list(default))
    if (
        not isinstance(value, list)
        or not value
        or len(set(map(str, value))) != len(value)
        or any(item not in allowed for item in value)
    ):
        raise ConfigError(f"{where}.{name}: {value!r} is not a non-empty list of different ones of {list(allowed)}")
    return tuple(value)


def _bounds(raw: Mapping, name: str, default: tuple[float, ...], where: str, *, positive: bool) -> tuple[float, float]:
    value = raw.get(name, list(default))
    numbers = isinstance(value, list) and len(value) == 2
    numbers = numbers and all(_finite(v) for v in value)
    if not numbers or value[0] > value[1] or (value[0] <= 0 if positive else value[0] < 0):
        lowest = "0 < lowest" if positive else "0 <= lowest"
        raise ConfigError(f"{where}.{name}: {value!r} is not [lowest, highest] with {lowest} <= highest")
    return float(value[0]), float(value[1])


def _finite(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_members(clients: Sequence[ClientAccount], raw_clients: Sequence[Mapping]) -> None:
    """Each client's k within the federation's size (and given when the default cannot hold); no two clients
    pinned to the same identity key."""
    count = len(clients)
    for index, (client, raw) in enumerate(zip(clients, raw_clients)):
        where = f"clients[{index}].min_members"
        if "min_members" not in raw and count < defaults.MIN_MEMBERS:
            raise ConfigError(
                f"{where}: missing: the federation has {count} client{'s' if count > 1 else ''}, fewer than the "
                f"default of {defaults.MIN_MEMBERS}; set it explicitly, from 1 to {count}. A member contributes to no "
                "total over fewer members than this; with two members each learns the other's sums (the total minus "
                "its own), which both parties must accept (docs/trust-model.md)"
            )
        if client.min_members > count:
            raise ConfigError(
                f"{where}: {client.min_members} is more than the {count} clients of the federation: no run could "
                f"start (set it from 1 to {count})"
            )
    pinned: dict[str, int] = {}
    for index, client in enumerate(clients):
        if client.identity_fingerprint in pinned:
            raise ConfigError(
                f"clients[{index}].identity_fingerprint: {client.identity_fingerprint} is already "
                f"clients[{pinned[client.identity_fingerprint]}]'s; each client has an identity key of its own"
            )
        if client.identity_fingerprint:
            pinned[client.identity_fingerprint] = index
