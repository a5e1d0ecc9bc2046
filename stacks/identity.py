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
  are made at deploy time, so no fingerprint is known at synth). SSM's Standard tier holds 4 KB, Advanced 8 KB: a
  longer document is refused at synth.
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
from fl_runtime.aws.contract import identity_alias_patterns
from fl_runtime.errors import ConfigError
from stacks.client_config import ClientAccount

STANDARD_LIMIT, ADVANCED_LIMIT = 4096, 8192  # bytes of an SSM parameter's value, per tier
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


def parameter_tier(text: str, client: str) -> ssm.ParameterTier:
    """Standard up to 4 KB, Advanced up to 8 KB; ConfigError beyond."""
    size = len(text.encode())
    if size > ADVANCED_LIMIT:
        raise ConfigError(
            f"clients: client {client}'s pins document is {size} bytes, more than the {ADVANCED_LIMIT} bytes (8 KB) "
            "an SSM Advanced parameter holds: the federation has too many members, or too long names, for one document"
        )
    return ssm.ParameterTier.STANDARD if size <= STANDARD_LIMIT else ssm.ParameterTier.ADVANCED


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
        self.parameter = ssm.StringParameter(
            self,
            "Pins",
            parameter_name=settings.pins_parameter,
            string_value=text.replace(placeholder, self.key.key_arn),
            tier=parameter_tier(text, client.name),
            description=f"Pinned federation settings of member {client.name} (fl_runtime.app.pins)",
        )
        CfnOutput(self, "KeyArn", value=self.key.key_arn, description=KEY_OUTPUT_DESCRIPTION.format(client.name))
        missing = [m.name for m in settings.members if not m.identity_fingerprint]
        if missing and not settings.resolve_members:
            Annotations.of(self).add_warning_v2(
                "fl:MissingFingerprints",
                f"no identity_fingerprint for {', '.join(missing)}: every member refuses a run until each client's "
                "fingerprint is in the federation config (python -m fl_runtime doctor --client prints a client's)",
            )

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
        if not settings.read_by_peers:
            return
        for index, peer in enumerate(settings.peers):
            self.key.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"AnotherMemberReadsThePublicKey{index}",
                    principals=[iam.AccountPrincipal(peer.account)],
                    actions=["kms:GetPublicKey"],
                    resources=["*"],
                    conditions={"ArnEquals": {"aws:PrincipalArn": peer.training_role_arn}},
                )
            )

    def job_statements(self) -> list[iam.PolicyStatement]:
        """The training-execution role's grants: this key, this document, and (one organisation) the other
        members' public keys, each by its alias."""
        settings = self.settings
        statements = [
            iam.PolicyStatement(
                sid="SignWithThisMembersIdentityKey",
                actions=["kms:Sign", "kms:GetPublicKey"],
                resources=[self.key.key_arn],
            ),
            iam.PolicyStatement(
                sid="ReadThisMembersPins", actions=["ssm:GetParameter"], resources=[self.parameter.parameter_arn]
            ),
        ]
        if settings.peers_to_read:
            # one statement for every member to read, so that the policy grows by one ARN pattern per member (about
            # 45 characters), not by a statement (about 290): through an identity alias only, as the job names it
            # (its ARN) or as KMS may report it (its name); a public key is no secret, the pins name whose is whose
            statements.append(
                iam.PolicyStatement(
                    sid="ReadTheOtherMembersPublicKeys",
                    actions=["kms:GetPublicKey"],
                    resources=[settings.peer_key_pattern(peer) for peer in settings.peers_to_read],
                    conditions={
                        "StringLike": {
                            "kms:RequestAlias": identity_alias_patterns(settings.client.arn_partition, settings.region)
                        }
                    },
                )
            )
        return statements

    def peer_key_patterns(self) -> list[str]:
        """The wildcard resources of ``job_statements`` (one organisation): one per account of a key to read."""
        return [self.settings.peer_key_pattern(peer) for peer in self.settings.peers_to_read]
