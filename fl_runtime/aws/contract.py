"""The settings contract between the stacks and the runtime: what each stack publishes, where, and how
the runtime reads it back.

Each stack writes one JSON document to SSM (and the same values as stack outputs): ServerStack its
``ServerAccountSettings`` at ``<prefix>/server/settings``, each client stack its
``ClientAccountSettings`` at ``<prefix>/client/<name>/settings``. ``federate`` and ``stage-data`` read
them with ``from_json``, which names the parameter and the field when one is missing or of the wrong
type (a stack of another version, say). The stacks build the same dataclasses with CDK tokens as
values and publish ``to_dict()``. Also here: the names both sides compute (parameters, training jobs).

Standard library only: the CDK app imports it to synthesize, with no Flower or AWS SDK.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fl_runtime.documents import JsonDocument
from fl_runtime.errors import ConfigError

SETTINGS = "settings"
JOB_NAME_MAX = 63  # SageMaker's limit on a training-job name
RUN_NAME_MAX = 20  # a run's tag: the default UTC timestamp has 15 characters
RUN_NAME = re.compile(rf"^[a-zA-Z0-9][a-zA-Z0-9-]{{0,{RUN_NAME_MAX - 1}}}$")
APP_HASH = re.compile(r"^[0-9a-f]{64}$")  # an app content hash, as fl_runtime.launch.fab computes it
APPROVED_ENV = "FL_APPROVED_APP_HASHES"  # the job's environment: the app hashes its account approved
PINS_ENV = "FL_MEMBER_PINS"  # the job's environment: where its account's pins are (ssm:<parameter>), not the pins
PINS = "pins"  # <prefix>/client/<name>/pins: a member's pinned federation settings (fl_runtime.app.pins)
IDENTITY_ALIAS_PREFIX = "alias/fl-identity-"  # + a client's name: its identity key (KMS), whatever its generation


PART_LIMIT = 4096  # bytes of one part of a pins document: SSM's Standard tier
# what a pins parameter holds when its document is in parts: how many, and the version every part starts with
PARTS = re.compile(r'^\{"parts":([1-9][0-9]{0,2}),"version":"([0-9a-f]{16})"\}$')
READ_ATTEMPTS = 3  # a document read while a stack update rewrites it is read again, whole


def document_parts(text: str, version: str, whole: str = "") -> tuple[str, list[str]]:
    """A document too long for one parameter: the value of its parameter (``{"parts":N,"version":...}``) and the
    values of ``<parameter>/part-<i>``, each ``<version>`` and a newline, then at most what fits in 4 KB of the
    text (the pins are ASCII JSON: a character is a byte). ``version`` (16 hex digits) tells one deploy's parts
    from another's. No cut falls inside an occurrence of ``whole`` (a placeholder the stack replaces in each part)."""
    limit = PART_LIMIT - len(version) - 1
    spans = [(found.start(), found.end()) for found in re.finditer(re.escape(whole), text)] if whole else []
    chunks, start = [], 0
    while start < len(text):
        end = min(start + limit, len(text))
        end = next((first for first, last in spans if first < end < last and first > start), end)
        chunks.append(text[start:end])
        start = end
    head = f'{{"parts":{len(chunks)},"version":"{version}"}}'
    return head, [f"{version}\n{chunk}" for chunk in chunks]


def part_parameter(parameter: str, index: int) -> str:
    """Part ``index`` (from 1) of the document at ``parameter``, e.g. ``/fl-fraud/client/a/pins/part-1``."""
    return f"{parameter}/part-{index}"


def read_document(parameter: str, value_of: Any) -> str:
    """The document at ``parameter``, joined from its parts when it holds ``{"parts":N,"version":V}`` (``value_of``:
    a parameter's value by name). Parts of another version (a stack update between two reads) are read again; a
    document that keeps changing is a ConfigError naming the parameter."""
    for _attempt in range(READ_ATTEMPTS):
        text = value_of(parameter)
        head = PARTS.fullmatch(text)
        if head is None:
            return text
        count, version = int(head.group(1)), head.group(2)
        parts = [value_of(part_parameter(parameter, index)) for index in range(1, count + 1)]
        if all(part.startswith(f"{version}\n") for part in parts):
            return "".join(part[len(version) + 1 :] for part in parts)
    raise ConfigError(f"{parameter}: its parts changed while being read, {READ_ATTEMPTS} times; read it again later")


def server_parameter(prefix: str, key: str = SETTINGS) -> str:
    """An SSM parameter of the server account, e.g. ``/fl-fraud/server/settings``."""
    return f"{prefix}/server/{key}"


def server_clients_path(prefix: str) -> str:
    """Where ServerStack publishes one ``ClientEntry`` per client, e.g. ``/fl-fraud/server/client``: the server's
    settings do not grow with the members (a Standard parameter holds 4 KB, about ten entries)."""
    return f"{prefix}/server/client"


def server_client_parameter(prefix: str, client: str) -> str:
    """One client's entry in the server account, e.g. ``/fl-fraud/server/client/insurer-a``."""
    return f"{server_clients_path(prefix)}/{client}"


def client_parameter(prefix: str, client: str, key: str = SETTINGS) -> str:
    """An SSM parameter of a client account, e.g. ``/fl-fraud/client/insurer-a/settings``."""
    return f"{prefix}/client/{client}/{key}"


def endpoint_service_name(region: str, service_id: str) -> str:
    """The name a member's endpoint names the server's Fleet service by, e.g.
    ``com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0`` (ServerStack's output FleetEndpointServiceName)."""
    return f"com.amazonaws.vpce.{region}.{service_id}"


def identity_alias_patterns(partition: str, region: str = "*") -> list[str]:
    """Any member's identity alias, by name and by ARN (in ``region``; any by default): what ``kms:RequestAlias``
    holds when a job reads another member's public key."""
    return [f"{IDENTITY_ALIAS_PREFIX}*", f"arn:{partition}:kms:{region}:*:{IDENTITY_ALIAS_PREFIX}*"]


def identity_alias(client: str) -> str:
    """The alias of a client's identity key, e.g. ``alias/fl-identity-insurer-a``: it follows the key's rotation."""
    return f"{IDENTITY_ALIAS_PREFIX}{client}"


# What a client's failed job may tell the server: the job's own statements that carry no data. The job's
# stderr, where SageMaker takes FailureReason from, may quote the data (a bad cell, a traceback), so
# the launcher answers with one of these or with where the reason is kept in the client's account.
SHAREABLE_FAILURES = (
    re.compile(r"app [0-9a-f]{64} is not approved by this account \(approved: [0-9a-f]{64}(, [0-9a-f]{64})*\)"),
    re.compile(r"could not join the federation within [0-9.]+ s"),
    re.compile(r"no final model within --run-timeout [0-9.]+ s"),
    re.compile(r"stopped \(SIGTERM or Ctrl-C\)"),
    re.compile(r"this member refused the run: [^\n]{1,400}"),  # a refusal names a rule, a field or a member
)


def shareable_failure(reason: str) -> str | None:
    """The first data-free statement in a failed job's reason, if it has one."""
    for pattern in SHAREABLE_FAILURES:
        found = pattern.search(reason)
        if found:
            return found.group(0)
    return None


def job_name(prefix: str, run_tag: str, client: str) -> str:
    """``<prefix>-<run>-<client>``: the prefix first (the IAM policies grant ``<prefix>*``), the client
    last and whole (so the console and CloudTrail say whose job it is). The stack config and ``--run-name``
    are validated so this always fits; a name that does not is a bug, not something to truncate."""
    name = f"{prefix}-{run_tag}-{client}"
    if len(name) > JOB_NAME_MAX or not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", name):
        raise ValueError(f"training-job name {name!r} is not 1-{JOB_NAME_MAX} letters, digits and hyphens")
    return name


class PublishedSettings(JsonDocument):
    """A document a stack publishes and the runtime reads back (``documents.JsonDocument``)."""


@dataclass(frozen=True)
class ClientEntry(PublishedSettings):
    """What the server account knows of one client account (from the federation config)."""

    name: str
    account: str
    kickoff_role_arn: str
    external_id: str  # agreed with the client; it guards the kickoff role's trust
    settings_parameter: str  # the client's ClientAccountSettings, read through the kickoff role
    vpc_cidr: str
    peering_connection_id: str  # the server's peering with this client's VPC ("" through PrivateLink)
    # the client's jobs: the only group the server's Flower port admits (peering; "" through PrivateLink)
    training_security_group_id: str


@dataclass(frozen=True)
class ServerAccountSettings(PublishedSettings):
    """What ServerStack publishes for ``federate`` and ``stage-data --server``."""

    region: str
    notebook: str
    flower_port: int
    server_vpc_cidr: str
    results_bucket: str
    test_prefix: str  # the server-only test set: <test_prefix>test.csv
    model_prefix: str  # each run's outputs: <model_prefix><run>/
    source_uri: str  # the code bundle
    vpc_id: str
    route_table_ids: tuple[str, ...]  # each must route every client's CIDR to its peering
    notebook_security_group_id: str  # the SuperLink's group: the Flower port from each client's jobs
    data_key_arn: str  # the server's KMS key: its buckets, and each registered model version (SecurityConfig)
    model_package_group: str  # the model registry group each finished run becomes a version of
    inference_image: str  # the SageMaker scikit-learn image that serves a run's model.tar.gz
    # each client's entry: published one parameter each (server_client_parameter) and joined by the reader
    # (aws.server_account.read_server_settings); inline in a rehearsal's description
    clients: tuple[ClientEntry, ...] = ()
    client_count: int = 0  # how many entries the stack published beside this document (0: they are inline)
    network: str = "peering"  # or "privatelink": the members dial superlink_dns_name through their endpoints
    superlink_dns_name: str = ""  # privatelink: the name the SuperLink's certificate must carry
    endpoint_service_id: str = ""  # privatelink: the Fleet endpoint service (vpce-svc-...)
    target_group_arn: str = ""  # privatelink: the load balancer's targets, where federate registers the notebook
    zone_ids: tuple[str, ...] = ()  # privatelink: the zones (by id) of every VPC's subnets and the load balancer

    def published(self) -> dict[str, Any]:
        """The document ServerStack publishes at ``server_parameter``: everything but the client entries, and
        how many there are, so that a reader tells a missing entry from a smaller federation."""
        document = self.to_dict()
        del document["clients"]
        return {**document, "client_count": len(self.clients)}


@dataclass(frozen=True)
class LaunchSettings(PublishedSettings):
    """Everything a client's training job is made of, chosen by the client stack: its launcher builds the
    job from these and from nothing the server sends but a run name, an address and a CA certificate (through
    PrivateLink not even the address: the job dials ``superlink_dns_name``, answered in this account's VPC)."""

    client: str
    region: str
    training_job_prefix: str
    training_image: str
    source_uri: str  # s3:// URI of the code bundle the jobs run
    entry_point: str
    execution_role_arn: str
    subnet_ids: tuple[str, ...]
    training_security_group_id: str
    training_instance_type: str
    volume_size_gb: int
    data_key_arn: str  # encrypts the job's volume and its output
    data_uri: str  # s3://<data bucket>/data_prep/: the staged train/validation split
    output_uri: str  # s3://<artifact bucket>/client_artifact/
    max_training_seconds: int
    max_jobs_per_day: int  # the most jobs its launcher starts in 24 hours; one per run in any case
    connect_seconds: int  # how long a job keeps trying to join before it gives up
    public_key_parameter_prefix: str  # where a job publishes its SuperNode's public key
    server_vpc_cidr: str  # the only network a job may be pointed at ...
    flower_port: int  # ... on the only port
    approved_app_hashes: tuple[str, ...]  # the Flower apps this account runs (launch.fab content hashes)
    pins_parameter: str  # this account's pinned federation settings (SSM): members, fingerprints, k, m, ranges
    superlink_dns_name: str = ""  # privatelink: the only host a job dials; the launcher refuses a server's address


@dataclass(frozen=True)
class ClientAccountSettings(PublishedSettings):
    """What a client stack publishes: who the server may ask, through which launcher, and where the data is."""

    client: str
    account: str
    kickoff_role_arn: str
    external_id: str
    launcher_arn: str  # the function FL-kickoff-client-job may invoke, and nothing else
    code_bucket: str
    data_bucket: str
    data_prefix: str  # the staged train/validation split
    artifact_bucket: str
    artifact_prefix: str
    notebook: str
    vpc_id: str
    route_table_ids: tuple[str, ...]  # each must route the server's CIDR to the peering (peering only)
    launch: LaunchSettings
    fleet_endpoint_id: str = ""  # privatelink: this VPC's endpoint to the server's Fleet service


@dataclass(frozen=True)
class ClientHandover(PublishedSettings):
    """What a client party hands the server party after deploying its own stack (separate organisations).

    Public identifiers only: the external id is agreed out of band, and nothing here lets the server change
    the client account. ``peering_connection_id`` is empty until the client has accepted the server's
    peering request; the server admits the client's jobs to its Flower port only from then on.
    ``identity_key_arn`` names the member's identity key, so that the parties can tell whose fingerprint is whose
    when they agree them out of band (the fingerprint itself is ``doctor --client``'s to print, after the deploy).
    """

    client: str
    account: str
    region: str
    vpc_id: str
    vpc_cidr: str
    route_table_ids: tuple[str, ...]
    training_security_group_id: str
    kickoff_role_arn: str
    launcher_arn: str
    approved_app_hashes: tuple[str, ...]
    peering_connection_id: str
    identity_key_arn: str  # the member's identity key (KMS): its fingerprint is agreed out of band
