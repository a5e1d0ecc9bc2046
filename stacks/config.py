"""The federation's deployment settings: one typed, validated object, read once from the CDK context.

Defaults live in cdk.json (one ``"federation:<field>"`` context key per field); override any of them
with ``npx cdk synth -c federation:<field>=<value>`` or a whole file via
``-c federation-file=path.json``. Every construct
receives this object (or a part of it); nothing below the app reads the context or the environment.
Invalid settings stop synthesis with one message that names the field.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import SimpleNamespace

from fl_runtime.aws.contract import (
    JOB_NAME_MAX,
    RUN_NAME_MAX,
    SETTINGS,
    client_parameter,
    job_name,
    server_clients_path,
    server_parameter,
)
from fl_runtime.errors import ConfigError
from stacks.client_config import ClientAccount, check_members, parse_client
from stacks.config_fields import ACCOUNT, arn_partition, cidr, integer, require, string
from stacks.network_config import PEERING, PEERINGS_PER_VPC, PRIVATELINK, network, peering_quota, privatelink_fields

REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
ECR_IMAGE = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[\w./-]+:[\w.-]+$")
SUBNET_PREFIX = 24  # one private subnet of this size per availability zone
ONE_ORGANISATION = "one-organisation"  # one owner deploys every stack (bootstrap trust, removed after)
SEPARATE_ORGANISATIONS = "separate-organisations"  # each party deploys its own account; handover files
DEPLOYMENT_MODES = (SEPARATE_ORGANISATIONS, ONE_ORGANISATION)


@dataclass(frozen=True)
class TrainingImage:
    """The SageMaker training image the client jobs run, and the platform its wheels are built for."""

    uri: str
    python_version: str  # "3.12": flwr 1.42 needs >= 3.11; the bundle carries wheels for it
    platform: str  # the newest manylinux tag the image's glibc supports, e.g. manylinux2014_x86_64


SERVER_NOTEBOOK_ROLE_NAME = "FL-server-notebook"
PEERING_OPERATOR_ROLE_NAME = "FL-peering-operator"
PEERING_ACCEPTER_ROLE_NAME = "FL-peering-accepter"
PEERING_ROUTES_ROLE_NAME = "FL-peering-routes"


@dataclass(frozen=True)
class FederationConfig:
    server_account: str
    region: str
    availability_zones: tuple[str, ...]
    server_vpc_cidr: str
    clients: tuple[ClientAccount, ...]
    notebook_instance_type: str
    training_instance_type: str
    flower_port: int
    training_image: TrainingImage
    inference_image: str  # named by each registered model version to serve its model.tar.gz (scikit-learn image)
    notebook_idle_minutes: int
    training_job_prefix: str
    max_training_seconds: int
    retain_data: bool
    parameter_prefix: str
    deployment_mode: str = ONE_ORGANISATION
    peering_quota: int = PEERINGS_PER_VPC[0]  # the server VPC's active peerings, as the account's quota allows
    network: str = PEERING
    # privatelink: each zone's id, in the order of availability_zones: the zones of the server's load balancer, which
    # every member's subnets must be in (a member names them in its own account: clients[].availability_zones)
    availability_zone_ids: tuple[str, ...] = ()
    # privatelink: the server's endpoint service (its deploy's output FleetEndpointServiceName); "" before it exists
    fleet_endpoint_service: str = ""
    # privatelink: the name each client's jobs dial, answered in its own VPC by a private hosted zone
    superlink_dns_name: str = ""

    @property
    def privatelink(self) -> bool:
        """Members reach the SuperLink through an endpoint of their own: no peering, no routes between the VPCs."""
        return self.network == PRIVATELINK

    @property
    def separate_organisations(self) -> bool:
        """Each party deploys its own stack with its own credentials; no bootstrap trust between accounts."""
        return self.deployment_mode == SEPARATE_ORGANISATIONS

    @property
    def server_deployment_role_arn(self) -> str:
        """The server's CloudFormation execution role (CDK's default bootstrap): in one organisation it creates
        the peering, and it alone may accept it on the client's side."""
        role = f"cdk-hnb659fds-cfn-exec-role-{self.server_account}-{self.region}"
        return f"arn:{self.arn_partition}:iam::{self.server_account}:role/{role}"

    @property
    def arn_partition(self) -> str:
        return arn_partition(self.region)

    @property
    def server_notebook_role_arn(self) -> str:
        return f"arn:{self.arn_partition}:iam::{self.server_account}:role/{SERVER_NOTEBOOK_ROLE_NAME}"

    @property
    def peering_operator_role_arn(self) -> str:
        return f"arn:{self.arn_partition}:iam::{self.server_account}:role/{PEERING_OPERATOR_ROLE_NAME}"

    def client_parameter(self, client: ClientAccount, key: str = SETTINGS) -> str:
        return client_parameter(self.parameter_prefix, client.name, key)

    def server_parameter(self, key: str = SETTINGS) -> str:
        return server_parameter(self.parameter_prefix, key)

    def server_clients_path(self) -> str:
        return server_clients_path(self.parameter_prefix)


def _fits_subnets(network: ipaddress.IPv4Network, field: str, zones: int) -> None:
    """Each zone gets a /24 private subnet (stacks/network.py): the VPC must hold one per zone."""
    if 2 ** (SUBNET_PREFIX - network.prefixlen) < zones:
        raise ConfigError(
            f"{field}: {network} cannot hold a /{SUBNET_PREFIX} subnet in each of the {zones} availability zones; "
            "use a larger block"
        )


def _training_image(raw: Mapping) -> TrainingImage:
    image = require(raw, "training_image")
    if not isinstance(image, Mapping):
        raise ConfigError("training_image: expected an object with uri, python_version, platform")
    uri = string(image, "uri", ECR_IMAGE, "an ECR image URI", "training_image.")
    python = str(require(image, "python_version", "training_image."))
    if not re.match(r"^3\.(1[1-9])$", python):
        raise ConfigError(
            f'training_image.python_version: {python!r}: flwr 1.42 needs Python 3.11 or newer (e.g. "3.11")'
        )
    platform = require(image, "platform", "training_image.")
    if not re.match(r"^(manylinux(1|2010|2014)|manylinux_2_\d+)_(x86_64|aarch64)$", str(platform)):
        raise ConfigError(
            f"training_image.platform: {platform!r} is not a manylinux platform tag such as manylinux2014_x86_64"
        )
    return TrainingImage(uri, python, str(platform))


def _zones(raw: Mapping, region: str, prefix: str = "", count: int = 0) -> tuple[str, ...]:
    """At least two different zone names of ``region`` (``count`` of them, for a client's own names)."""
    zones = require(raw, "availability_zones", prefix)
    if (
        not isinstance(zones, list)
        or len(zones) < 2
        or (count and len(zones) != count)
        or len(set(map(str, zones))) != len(zones)
        or any(not re.fullmatch(rf"{region}[a-z]", str(z)) for z in zones)
    ):
        many = f"{count}" if count else "at least two"
        raise ConfigError(
            f"{prefix}availability_zones: {zones!r} must list {many} different zones of {region}, e.g. {region}a"
        )
    return tuple(str(z) for z in zones)


def _clients(
    raw: Mapping, region: str, zones: int, server_account: str, server_cidr: ipaddress.IPv4Network, routed: bool
) -> tuple[ClientAccount, ...]:
    """Each client valid on its own, and no two sharing a name or an account (nor with the server); ``routed``
    (peering): nor addresses, since each VPC routes to the others. Through PrivateLink no VPC routes to another:
    their blocks may overlap."""
    raw_clients = require(raw, "clients")
    if not isinstance(raw_clients, list) or not raw_clients:
        raise ConfigError("clients: expected a non-empty list of {name, account, vpc_cidr, external_id}")
    clients: list[ClientAccount] = []
    networks = {"server_vpc_cidr": server_cidr}
    for index, item in enumerate(raw_clients):
        client, network = parse_client(item, index, region)
        if isinstance(item, Mapping) and "availability_zones" in item:  # its own account's names for the same zones
            client = replace(client, availability_zones=_zones(item, region, f"clients[{index}].", zones))
        _fits_subnets(network, f"clients[{index}].vpc_cidr", zones)
        for other_field, other in networks.items() if routed else ():
            if network.overlaps(other):
                raise ConfigError(f"clients[{index}].vpc_cidr: {network} overlaps {other_field} {other}")
        if client.name in {c.name for c in clients}:
            raise ConfigError(f"clients[{index}].name: {client.name!r} is used by another client")
        if client.account in {c.account for c in clients} | {server_account}:
            raise ConfigError(
                f"clients[{index}].account: {client.account} is already the server's or another client's account; "
                "each party has its own"
            )
        networks[f"clients[{index}].vpc_cidr"] = network
        clients.append(client)
    check_members(clients, raw_clients)
    return tuple(clients)


def _job_prefix(raw: Mapping, clients: tuple[ClientAccount, ...]) -> str:
    """A prefix that leaves every client's longest job name within SageMaker's limit."""
    prefix = string(
        raw,
        "training_job_prefix",
        re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9-]{0,39}$"),
        "a training-job name prefix (letters, digits, hyphens; max 40)",
    )
    for index, client in enumerate(clients):
        try:
            job_name(prefix, "r" * RUN_NAME_MAX, client.name)  # the longest name a run can give
        except ValueError:
            raise ConfigError(
                f"training_job_prefix: {prefix!r} with clients[{index}].name {client.name!r} leaves no room in a "
                f"{JOB_NAME_MAX}-character training-job name <prefix>-<run name, up to {RUN_NAME_MAX}>-<client>; "
                "shorten either"
            ) from None
    return prefix


def parse(raw: Mapping) -> FederationConfig:
    """Validate raw settings (from the CDK context) into a FederationConfig; raise ConfigError naming the field."""
    if not isinstance(raw, Mapping):
        raise ConfigError("federation: expected an object (the 'federation' context key)")
    server_account = string(raw, "server_account", ACCOUNT, "a 12-digit AWS account id")
    region = string(raw, "region", REGION, "an AWS region such as us-east-1")
    zones = _zones(raw, region)
    server_cidr = cidr(raw, "server_vpc_cidr")
    _fits_subnets(server_cidr, "server_vpc_cidr", len(zones))
    carried_by = network(raw)
    clients = _clients(raw, region, len(zones), server_account, server_cidr, routed=carried_by == PEERING)
    notebook = string(raw, "notebook_instance_type", INSTANCE_TYPE, "a SageMaker instance type such as ml.t3.medium")
    training = string(raw, "training_instance_type", INSTANCE_TYPE, "a SageMaker instance type such as ml.m5.large")
    prefix_pattern = re.compile(r"^(/[a-zA-Z0-9_.-]+)+$")
    job_prefix = _job_prefix(raw, clients)
    parameter_prefix = string(raw, "parameter_prefix", prefix_pattern, "an SSM parameter path such as /fl-fraud")
    retain = raw.get("retain_data", True)  # claims data survives a stack deletion unless a config says otherwise
    if not isinstance(retain, bool):
        raise ConfigError(f"retain_data: {retain!r} is not true or false")
    mode = raw.get("deployment_mode", ONE_ORGANISATION)
    if mode not in DEPLOYMENT_MODES:
        raise ConfigError(f"deployment_mode: {mode!r} is not one of {', '.join(DEPLOYMENT_MODES)}")
    quota = peering_quota(raw, len(clients) if carried_by == PEERING else 0)
    return FederationConfig(
        server_account=server_account,
        region=region,
        availability_zones=zones,
        server_vpc_cidr=str(server_cidr),
        clients=clients,
        notebook_instance_type=notebook,
        training_instance_type=training,
        flower_port=integer(raw, "flower_port", 1024, 65535),
        training_image=_training_image(raw),
        inference_image=string(raw, "inference_image", ECR_IMAGE, "an ECR image URI"),
        notebook_idle_minutes=integer(raw, "notebook_idle_minutes", 5, 1440),
        training_job_prefix=job_prefix,
        max_training_seconds=integer(raw, "max_training_seconds", 600, 432000),
        retain_data=retain,
        parameter_prefix=parameter_prefix,
        deployment_mode=mode,
        peering_quota=quota,
        network=carried_by,
        **(privatelink_fields(raw, region, zones) if carried_by == PRIVATELINK else {}),
    )


CONTEXT_PREFIX = "federation:"
FIELDS = (
    "server_account",
    "region",
    "availability_zones",
    "server_vpc_cidr",
    "clients",
    "notebook_instance_type",
    "training_instance_type",
    "flower_port",
    "training_image",
    "inference_image",
    "notebook_idle_minutes",
    "training_job_prefix",
    "max_training_seconds",
    "retain_data",
    "parameter_prefix",
    "deployment_mode",
    "peering_quota",
    "network",
    "availability_zone_ids",
    "fleet_endpoint_service",
    "superlink_dns_name",
)


def _context_value(node, field: str):
    """``federation:<field>`` from the CDK context; ``-c`` gives strings, so JSON-decode non-string fields."""
    value = node.try_get_context(CONTEXT_PREFIX + field)
    if isinstance(value, str) and field not in (
        "server_account",
        "region",
        "server_vpc_cidr",
        "notebook_instance_type",
        "training_instance_type",
        "inference_image",
        "training_job_prefix",
        "parameter_prefix",
        "deployment_mode",
        "network",
        "fleet_endpoint_service",
        "superlink_dns_name",
    ):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ConfigError(f"{field}: -c {CONTEXT_PREFIX}{field}=... is not valid JSON: {value!r}") from None
    return value


def from_cdk_json(path: Path) -> FederationConfig:
    """The defaults in cdk.json, for tools that run outside a CDK app (bundle locks, tests)."""
    context = json.loads(Path(path).read_text())["context"]
    return from_context(SimpleNamespace(try_get_context=context.get))


def from_context(node) -> FederationConfig:
    """The app's single read of the CDK context.

    Defaults: the ``federation:<field>`` keys in cdk.json. Overrides: ``-c federation:<field>=<value>``
    (JSON for lists, objects, numbers and booleans), or a whole file with ``-c federation-file=path.json``
    holding ``{"<field>": ...}`` entries that replace the defaults.
    """
    raw = {field: _context_value(node, field) for field in FIELDS}
    path = node.try_get_context("federation-file")
    if path:
        try:
            overrides = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"federation-file: cannot read {path}: {error}") from None
        unknown = sorted(set(overrides) - set(FIELDS))
        if unknown:
            raise ConfigError(f"federation-file: {path} has unknown field {unknown[0]!r}")
        raw.update(overrides)
    return parse({key: value for key, value in raw.items() if value is not None})
