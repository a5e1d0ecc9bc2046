"""``doctor --client NAME``: the member's own pins and identity key, seen from its notebook.

- pins: the document its client stack wrote (``launch.pins_parameter``) is in SSM, parses as ``ClientPins`` and is
  this client's;
- identity key: the key the pins name exists and is a P-256 signing key; its fingerprint (from ``kms:GetPublicKey``)
  is the one pinned for this member, when one is pinned, and (one organisation) the alias the other members read
  leads to that same key. The fingerprint is printed below the table, for the operator to send to the other parties;
- members: every member has a pinned fingerprint, or (one organisation) names its identity key by the alias its
  stack gives it, which the member's job reads when it starts. The notebook may read this member's key only (the
  other members' keys admit their training-job roles, not notebooks): a peer's key is checked by its job.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fl_runtime.app.pins import ClientPins, Member
from fl_runtime.aws.calls import aws_call, boto_config
from fl_runtime.aws.contract import ClientAccountSettings, identity_alias, read_document
from fl_runtime.aws.doctor_checks import IDENTITY_KEY, MEMBERS, PINS, Check, passed, problem
from fl_runtime.aws.member_keys import key_fingerprint, kms_clients
from fl_runtime.errors import ConfigError, FederationError


def member_checks(session: Any, settings: ClientAccountSettings) -> list[Check]:
    """The pins, the identity key and the members of client ``settings.client``; the last two need the pins."""
    name, parameter = settings.client, settings.launch.pins_parameter
    fix = f"redeploy client {name}'s stack of this version (it writes this member's pins to {parameter})"
    try:
        ssm = session.client("ssm", config=boto_config())
        with aws_call(name, f"reading {parameter}"):
            raw = read_document(parameter, lambda part: ssm.get_parameter(Name=part)["Parameter"]["Value"])
        pins = ClientPins.from_json(raw, f"client {name}'s pins {parameter}")
    except (FederationError, ConfigError) as error:
        return [problem(PINS, name, str(error), fix)]
    if pins.client != name:
        return [problem(PINS, name, f"{parameter} holds member {pins.client}'s pins, not {name}'s", fix)]
    summary = f"{parameter}: {len(pins.members)} members, min_members {pins.min_members}, min_rows {pins.min_rows}"
    return [passed(PINS, name, summary), identity_check(pins, kms_clients(session)), members_check(pins)]


def identity_check(pins: ClientPins, kms_for: Callable[[str], Any]) -> Check:
    """This member's identity key: readable, pinned as it is, and the key its alias leads the other members to."""
    name = pins.client
    redeploy = (
        f"redeploy client {name}'s stack (it creates the identity key and lets this notebook read its public key)"
    )
    if not pins.identity.startswith("kms:"):
        return problem(IDENTITY_KEY, name, f"identity {pins.identity!r} is not a KMS key", redeploy)
    key = pins.identity.removeprefix("kms:")
    own = next(member for member in pins.members if member.name == name)
    try:
        found = key_fingerprint(kms_for, key)
        aliased = key_fingerprint(kms_for, own.identity_key) if own.identity_key and not own.fingerprint else found
    except FederationError as error:
        return problem(IDENTITY_KEY, name, str(error), redeploy)
    if own.fingerprint and own.fingerprint != found:
        return problem(
            IDENTITY_KEY,
            name,
            f"{key} has the fingerprint {found}, but this member's pins say {own.fingerprint}",
            f"rotated? send {found} to every party: each sets client {name}'s identity_fingerprint to it and redeploys",
        )
    if aliased != found:
        detail = f"{own.identity_key} leads to another key ({aliased}) than the one this member signs with ({found})"
        return problem(IDENTITY_KEY, name, detail, redeploy)
    share = f"client {name}'s identity fingerprint (its identity_fingerprint in the federation config): {found}"
    return Check(IDENTITY_KEY, name, True, f"{key}: {found}", share=share)


def _names_its_alias(member: Member) -> bool:
    """Named as its member's stack names it: ``arn:<partition>:kms:<region>:<account>:alias/fl-identity-<name>``."""
    parts = member.identity_key.split(":")
    return len(parts) == 6 and parts[5] == identity_alias(member.name)


def members_check(pins: ClientPins) -> Check:
    """Every member has a fingerprint, or an identity key its job can read (one organisation)."""
    name = pins.client
    missing = [m.name for m in pins.members if not m.fingerprint and not m.identity_key]
    if missing:
        return problem(
            MEMBERS,
            name,
            f"no identity fingerprint pinned for {', '.join(missing)}: every member refuses a run until each is",
            "have each of them run python -m fl_runtime doctor --client <name> and send the fingerprint it prints; "
            "every party sets it as that client's identity_fingerprint in the federation config and redeploys",
        )
    misnamed = [m for m in pins.members if not m.fingerprint and m.identity_key and not _names_its_alias(m)]
    if misnamed:
        return problem(
            MEMBERS,
            name,
            "; ".join(
                f"{m.name}'s identity key {m.identity_key} is not its alias {identity_alias(m.name)}" for m in misnamed
            ),
            f"redeploy client {name}'s stack: it names each member's key by that member's alias",
        )
    pinned = [m.name for m in pins.members if m.fingerprint]
    read = [m.name for m in pins.members if not m.fingerprint]
    detail = "; ".join(
        part
        for part in (
            f"pinned: {', '.join(pinned)}" if pinned else "",
            f"read from KMS by the job when it starts: {', '.join(read)}" if read else "",
        )
        if part
    )
    return passed(MEMBERS, name, detail)
