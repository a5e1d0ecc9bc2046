"""A member's identity in its client account: its identity key in KMS and its pins document in SSM.

- The identity key: KMS, ``ECC_NIST_P256`` for ``SIGN_VERIFY`` (``fl_runtime.app.identity``), aliased
  ``alias/fl-identity-<client>``. Its logical id carries ``clients[].identity_key_generation``: a new generation
  is a new key and the alias moves to it in the same update (rotation; KMS's automatic rotation is for symmetric
  keys only). It is kept or deleted (30-day window) with the data, as the data key is (``retain_data``). Its policy:
  the account administers it, as the project's other keys; no principal but this account's training-job role
  (``FL-training-job``) may sign with it; and in one organisation, unless its fingerprint is configured, the other
  members' training-job roles may read its public key.
- The pins document (``fl_runtime.app.pins.ClientPins``, at ``<prefix>/client/<name>/pins``): every client of the
  federation as a member with its configured fingerprint; in one organisation a member without one is named by
  its identity key's alias ARN instead, which the job resolves with ``kms:GetPublicKey`` when it starts (the keys
  are made at deploy time, so no fingerprint is known at synth). SSM's Standard tier holds 4 KB, Advanced 8 KB (the
  parameter is Intelligent-Tiering: SSM picks the tier); a longer document (about 40 members with fingerprints,
  65 without) is written in Standard parts of 4 KB, ``<pins>/part-<i>``, each starting with the version the
  parameter names, ``{"parts":N,"version":V}`` (``contract.read_document`` joins them).
- What the training jobs may do with them (``job_statements``): sign and read the public key with this identity
  key only, read this pins document only, and in one organisation read the public keys of the other members it
  names by their aliases, through those aliases.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Annotations, CfnOutput, Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from fl_runtime.app.pins import ClientPins, Member
from fl_runtime.aws.contract import document_parts, identity_alias_patterns, part_parameter
from stacks.bundle.builder import content_digest
from stacks.client_config import TRAINING_ROLE_NAME, ClientAccount

ADVANCED_LIMIT = 8192  # bytes of an SSM parameter's value in the Advanced tier: a longer document goes in parts
KEY_ID_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"  # as long as the key id KMS gives at deploy time
KEY_OUTPUT_DESCRIPTION = (
    "This client's identity key (KMS, ECC_NIST_P256): python -m fl_runtime doctor --client {} prints its "
    "fingerprint, which the other parties pin (separate organisations)"
)


@dataclass(frozen=True)
class IdentitySettings:
    """What a member's identity is made of: this client and every client of the federation, as configured."""

    client: ClientAccount
    members: tuple[ClientAccount, ...]  # every client of the federation, this one included
    region: str
    pins_parameter: str  # the SSM parameter's name
    retain: bool  # keep the key when the stack is deleted or the key rotated
    resolve_members: bool  # one organisation: a member without a configured fingerprint is named by its key's alias

    @property
    def peers(self) -> tuple[ClientAccount, ...]:
        return tuple(member for member in self.members if member.name != self.client.name)

    @property
    def peers_to_read(self) -> tuple[ClientAccount, ...]:
        """One organisation: the other members without a configured fingerprint, whose keys this member's jobs read."""
        return tuple(peer for peer in self.peers if not peer.identity_fingerprint) if self.resolve_members else ()

    @property
    def read_by_peers(self) -> bool:
        """One organisation, this member's fingerprint not configured: the other members' jobs read its key."""
        return self.resolve_members and not self.client.identity_fingerprint

    def peer_key_pattern(self, peer: ClientAccount) -> str:
        """Every KMS key of ``peer``'s account in the region: IAM names a key by its ARN, never by its alias, and
        another account's key ARN is known only once it is deployed (the grant is narrowed to the alias)."""
        return f"arn:{peer.arn_partition}:kms:{self.region}:{peer.account}:key/*"

    @property
    def peer_keys(self) -> str:
        """Every KMS key of the region, of any account: the grant names the accounts in a condition instead, so
        that it grows by an account id a member (15 characters), not by an ARN pattern (45)."""
        return f"arn:{self.client.arn_partition}:kms:{self.region}:*:key/*"


def pins_document(settings: IdentitySettings, identity_key_arn: str) -> ClientPins:
    """This client's pins: the federation's members as configured, its own k, m, reruns, seed and ranges."""
    client = settings.client
    members = tuple(
        Member(
            member.name,
            member.identity_fingerprint,
            identity_key=(
                member.identity_alias_arn(settings.region)
                if settings.resolve_members and not member.identity_fingerprint
                else ""
            ),
        )
        for member in sorted(settings.members, key=lambda m: m.name)
    )
    return ClientPins(
        client=client.name,
        members=members,
        identity=f"kms:{identity_key_arn}",
        min_members=client.min_members,
        min_rows=client.min_rows,
        allow_reruns=client.allow_reruns,
        seed=client.seed,
        ranges=client.ranges,
    )


class MemberIdentity(Construct):
    """The identity key, its alias and the pins document; see the module docstring."""

    def __init__(self, scope: Construct, construct_id: str, settings: IdentitySettings) -> None:
        super().__init__(scope, construct_id)
        self.settings = settings
        client = settings.client
        generation = client.identity_key_generation
        self.key = kms.Key(
            self,
            f"KeyGeneration{generation}",
            key_spec=kms.KeySpec.ECC_NIST_P256,
            key_usage=kms.KeyUsage.SIGN_VERIFY,
            description=f"Federation identity of member {client.name} (generation {generation}): signs its run keys",
            removal_policy=RemovalPolicy.RETAIN if settings.retain else RemovalPolicy.DESTROY,
            pending_window=Duration.days(30),  # the longest: a deletion can be cancelled for a month
        )
        self.alias = kms.Alias(self, "Alias", alias_name=client.identity_alias, target_key=self.key)
        self._key_policy()
        placeholder = f"arn:{client.arn_partition}:kms:{settings.region}:{client.account}:key/{KEY_ID_PLACEHOLDER}"
        self.pins = pins_document(settings, placeholder)
        text = json.dumps(self.pins.to_dict(), separators=(",", ":"))  # compact: 8 KB holds more members
        self.parameter, self.parts = self._pins_parameters(text, placeholder)
        CfnOutput(self, "KeyArn", value=self.key.key_arn, description=KEY_OUTPUT_DESCRIPTION.format(client.name))
        missing = [m.name for m in settings.members if not m.identity_fingerprint]
        if missing and not settings.resolve_members:
            Annotations.of(self).add_warning_v2(
                "fl:MissingFingerprints",
                f"no identity_fingerprint for {', '.join(missing)}: every member refuses a run until each client's "
                "fingerprint is in the federation config (python -m fl_runtime doctor --client prints a client's)",
            )

    def _pins_parameters(self, text: str, placeholder: str) -> tuple[ssm.StringParameter, list[ssm.StringParameter]]:
        """The pins in one parameter up to 8 KB, else ``{"parts":N,"version":V}`` and N Standard parts; the key's
        ARN (as long as the placeholder) in place of the placeholder, whichever part holds it. Intelligent-Tiering:
        SSM makes the parameter Advanced when its value needs it and never moves it back, which an update to a
        smaller value in the Standard tier would ask of it, and fail."""
        client, name = self.settings.client, self.settings.pins_parameter
        description = f"Pinned federation settings of member {client.name} (fl_runtime.app.pins)"
        key_arn = {placeholder: self.key.key_arn}
        value, values = _with(text, key_arn), list[str]()
        if len(text.encode()) > ADVANCED_LIMIT:  # the version changes with the pins and with the key's generation
            version = content_digest(text.encode(), str(client.identity_key_generation).encode())[:16]
            value, values = document_parts(text, version, whole=placeholder)
        parts = [
            ssm.StringParameter(self, f"PinsPart{index}", parameter_name=part_parameter(name, index),
                                string_value=_with(part, key_arn), description=f"{description}, part {index}")
            for index, part in enumerate(values, start=1)
        ]  # fmt: skip
        parameter = ssm.StringParameter(
            self,
            "Pins",
            parameter_name=name,
            string_value=value,
            tier=ssm.ParameterTier.INTELLIGENT_TIERING,
            description=description,
        )
        return parameter, parts

    def _key_policy(self) -> None:
        """Beside the account's administration (CDK's default statement): only this account's training jobs sign;
        in one organisation the other members' training jobs read the public key."""
        settings = self.settings
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyThisAccountsTrainingJobsSign",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["kms:Sign"],
                resources=["*"],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": settings.client.training_role_arn}},
            )
        )
        if not settings.read_by_peers or not settings.peers:
            return
        # one statement for every other member (a key policy holds 32 KB: one per member stopped at about 140), each
        # through its training-job role: the role's name in each of those accounts, and only those accounts
        peers = sorted({peer.account for peer in settings.peers})
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="TheOtherMembersReadThePublicKey",
                principals=[iam.AccountPrincipal(account) for account in peers],
                actions=["kms:GetPublicKey"],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "aws:PrincipalArn": f"arn:{settings.client.arn_partition}:iam::*:role/{TRAINING_ROLE_NAME}"
                    },
                    "StringEquals": {"aws:PrincipalAccount": peers},
                },
            )
        )

    def job_statements(self) -> list[iam.PolicyStatement]:
        """The training-execution role's grants: this key and this document."""
        return [
            iam.PolicyStatement(
                sid="SignWithThisMembersIdentityKey",
                actions=["kms:Sign", "kms:GetPublicKey"],
                resources=[self.key.key_arn],
            ),
            iam.PolicyStatement(sid="ReadThisMembersPins", actions=["ssm:GetParameter"], resources=self.pins_arns()),
        ]

    def peer_statements(self) -> list[iam.PolicyStatement]:
        """One organisation: the other members' public keys the job reads (none when every fingerprint is pinned).

        One statement for every member to read, its accounts in a condition, so that it grows by an account id a
        member (15 characters; in a policy of its own, 300 members fit): through an identity alias only, as the job
        names it (its ARN) or as KMS may report it (its name); a public key is no secret, the pins name whose is
        whose."""
        settings = self.settings
        if not settings.peers_to_read:
            return []
        accounts = sorted({peer.account for peer in settings.peers_to_read})
        aliases = identity_alias_patterns(settings.client.arn_partition, settings.region)
        return [
            iam.PolicyStatement(
                sid="ReadTheOtherMembersPublicKeys",
                actions=["kms:GetPublicKey"],
                resources=[settings.peer_keys],
                conditions={
                    "StringLike": {"kms:RequestAlias": aliases},
                    "StringEquals": {"aws:ResourceAccount": accounts},
                },
            )
        ]

    def pins_arns(self) -> list[str]:
        """The pins parameter and its parts, if any: what a reader of the pins may get."""
        return [self.parameter.parameter_arn, *(part.parameter_arn for part in self.parts)]


def _with(text: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        text = text.replace(old, new)
    return text
