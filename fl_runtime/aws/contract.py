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

import dataclasses
import json
import re
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from fl_runtime.errors import ConfigError

SETTINGS = "settings"
JOB_NAME_MAX = 63  # SageMaker's limit on a training-job name
RUN_NAME_MAX = 20  # a run's tag: the default UTC timestamp has 15 characters
RUN_NAME = re.compile(rf"^[a-zA-Z0-9][a-zA-Z0-9-]{{0,{RUN_NAME_MAX - 1}}}$")
APP_HASH = re.compile(r"^[0-9a-f]{64}$")  # an app content hash, as fl_runtime.launch.fab computes it
APPROVED_ENV = "FL_APPROVED_APP_HASHES"  # the job's environment: the app hashes its account approved


def server_parameter(prefix: str, key: str = SETTINGS) -> str:
    """An SSM parameter of the server account, e.g. ``/fl-fraud/server/settings``."""
    return f"{prefix}/server/{key}"


def client_parameter(prefix: str, client: str, key: str = SETTINGS) -> str:
    """An SSM parameter of a client account, e.g. ``/fl-fraud/client/insurer-a/settings``."""
    return f"{prefix}/client/{client}/{key}"


# What a client's failed job may tell the server: the job's own statements that carry no data. The job's
# stderr, where SageMaker takes FailureReason from, may quote the data (a bad cell, a traceback), so
# the launcher answers with one of these or with where the reason is kept in the client's account.
SHAREABLE_FAILURES = (
    re.compile(r"app [0-9a-f]{64} is not approved by this account \(approved: [0-9a-f]{64}(, [0-9a-f]{64})*\)"),
    re.compile(r"could not join the federation within [0-9.]+ s"),
    re.compile(r"no final model within --run-timeout [0-9.]+ s"),
    re.compile(r"stopped \(SIGTERM or Ctrl-C\)"),
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


SettingsT = TypeVar("SettingsT", bound="PublishedSettings")


class PublishedSettings:
    """JSON in and out for the settings dataclasses below, checked field by field."""

    @classmethod
    def from_json(cls: type[SettingsT], text: str, where: str) -> SettingsT:
        """``where`` names the document (its SSM parameter or file) in every error."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{where}: not JSON ({error})") from None
        return cls.from_dict(document, where)

    @classmethod
    def from_dict(cls: type[SettingsT], document: Any, where: str) -> SettingsT:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        if not isinstance(document, dict):
            raise ConfigError(f"{where}: expected a JSON object with the fields {', '.join(f.name for f in fields)}")
        hints = typing.get_type_hints(cls)
        values = {}
        for item in fields:
            if item.name not in document:
                raise ConfigError(f"{where}: field '{item.name}' is missing (published by a stack of another version?)")
            values[item.name] = _read(hints[item.name], document[item.name], f"{where}: field '{item.name}'")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples as lists), field by field."""
        return {item.name: _plain(getattr(self, item.name)) for item in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _plain(value: Any) -> Any:
    if isinstance(value, PublishedSettings):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _read(kind: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is tuple:
        item_kind = typing.get_args(kind)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(_read(item_kind, item, f"{where}[{index}]") for index, item in enumerate(value))
    if isinstance(kind, type) and issubclass(kind, PublishedSettings):
        return kind.from_dict(value, where)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where} must be a whole number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    return value


@dataclass(frozen=True)
class ClientEntry(PublishedSettings):
    """What the server account knows of one client account (from the federation config)."""

    name: str
    account: str
    kickoff_role_arn: str
    external_id: str  # agreed with the client; it guards the kickoff role's trust
    settings_parameter: str  # the client's ClientAccountSettings, read through the kickoff role
    vpc_cidr: str
    peering_connection_id: str  # the server's peering with this client's VPC
    training_security_group_id: str  # the client's jobs: the only group the server's Flower port admits


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
    clients: tuple[ClientEntry, ...]


@dataclass(frozen=True)
class LaunchSettings(PublishedSettings):
    """Everything a client's training job is made of, chosen by the client stack: its launcher builds the
    job from these and from nothing the server sends but a run name, an address and a CA certificate."""

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
    connect_seconds: int  # how long a job keeps trying to join before it gives up
    public_key_parameter_prefix: str  # where a job publishes its SuperNode's public key
    server_vpc_cidr: str  # the only network a job may be pointed at ...
    flower_port: int  # ... on the only port
    approved_app_hashes: tuple[str, ...]  # the Flower apps this account runs (launch.fab content hashes)


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
    route_table_ids: tuple[str, ...]  # each must route the server's CIDR to the peering
    launch: LaunchSettings


@dataclass(frozen=True)
class ClientHandover(PublishedSettings):
    """What a client party hands the server party after deploying its own stack (separate organisations).

    Public identifiers only: the external id is agreed out of band, and nothing here lets the server change
    the client account. ``peering_connection_id`` is empty until the client has accepted the server's
    peering request; the server admits the client's jobs to its Flower port only from then on.
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
