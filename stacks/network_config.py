"""The network fields of the federation config: how the members' jobs reach the SuperLink (``network``), the
peering quota, and what PrivateLink needs (docs/network.md). Read by ``config``; ConfigError names the field."""

from __future__ import annotations

import re
from collections.abc import Mapping

from fl_runtime.errors import ConfigError
from stacks.config_fields import require, whole_number

DEFAULT_SUPERLINK_NAME = "superlink.fl-fraud.internal"
PEERINGS_PER_VPC = (50, 125)  # Amazon VPC's quota of active peering connections per VPC: default, and the most
PEERING, PRIVATELINK = "peering", "privatelink"  # how the members' jobs reach the SuperLink (docs/network.md)
NETWORKS = (PEERING, PRIVATELINK)
ZONE_ID = re.compile(r"^[a-z]{2,5}\d+-az\d+$")  # an availability zone's id, the same in every account (use1-az1)
ENDPOINT_SERVICE = re.compile(r"^com\.amazonaws\.vpce\.[a-z0-9-]+\.vpce-svc-[0-9a-f]{8,17}$")
DNS_NAME = re.compile(r"^(?=.{4,200}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


def network(raw: Mapping) -> str:
    """``peering`` (the default) or ``privatelink``."""
    value = raw.get("network", PEERING)
    if value not in NETWORKS:
        raise ConfigError(f"network: {value!r} is not one of {', '.join(NETWORKS)}")
    return str(value)


def privatelink_fields(raw: Mapping, region: str, zones: tuple[str, ...]) -> dict:
    """The privatelink fields: the zones by id (one per zone name), the service name once the server has one, the
    name the members dial."""
    ids = require(raw, "availability_zone_ids")
    if (
        not isinstance(ids, list)
        or len(ids) != len(zones)
        or len(set(map(str, ids))) != len(ids)
        or any(
            not ZONE_ID.fullmatch(str(zone)) or not str(zone).startswith(f"{zone_id_prefix(region)}-") for zone in ids
        )
    ):
        raise ConfigError(
            f"availability_zone_ids: {ids!r} must list {len(zones)} different zone ids of {region} (e.g. "
            f"{zone_id_prefix(region)}-az1), one for each of availability_zones {list(zones)} in the server's account: "
            "each member's subnets must be in these zones, which it names in its own account (zone names differ per "
            "account; aws ec2 describe-availability-zones shows both)"
        )
    service = raw.get("fleet_endpoint_service", "")
    if service and (
        not isinstance(service, str) or not ENDPOINT_SERVICE.fullmatch(service) or f".{region}." not in service
    ):
        raise ConfigError(
            f"fleet_endpoint_service: {service!r} is not an endpoint service name of {region} "
            f"(com.amazonaws.vpce.{region}.vpce-svc-...): ServerStack's output FleetEndpointServiceName"
        )
    name = raw.get("superlink_dns_name", DEFAULT_SUPERLINK_NAME)
    reserved = ("amazonaws.com", "ec2.internal", "compute.internal")  # a private zone for them would hide AWS names
    if (
        not isinstance(name, str)
        or not DNS_NAME.fullmatch(name)
        or any(name == domain or name.endswith(f".{domain}") for domain in reserved)
    ):
        raise ConfigError(
            f"superlink_dns_name: {name!r} is not a lower-case DNS name of at least two labels outside "
            f"{', '.join(reserved)}, such as {DEFAULT_SUPERLINK_NAME}"
        )
    return {
        "availability_zone_ids": tuple(map(str, ids)),
        "fleet_endpoint_service": service,
        "superlink_dns_name": name,
    }


DIRECTIONS = {"north": "n", "south": "s", "east": "e", "west": "w", "central": "c",
              "northeast": "ne", "southeast": "se", "northwest": "nw", "southwest": "sw"}  # fmt: skip


def zone_id_prefix(region: str) -> str:
    """How a region's zone ids begin: us-east-1 -> use1, ap-southeast-2 -> apse2, us-gov-west-1 -> usgw1."""
    *words, number = region.split("-")
    return "".join(DIRECTIONS.get(word, word[0] if index else word) for index, word in enumerate(words)) + number


def peering_quota(raw: Mapping, clients: int) -> int:
    """The server VPC's quota of active peering connections, one per client: refused above it at synth, where a
    deploy would otherwise fail at the first peering past it."""
    default, most = PEERINGS_PER_VPC
    quota = raw.get("peering_quota")
    quota = default if quota is None else whole_number(quota, "peering_quota", 1, most)
    if clients > quota:
        raise ConfigError(
            f"clients: {clients} clients need {clients} VPC peering connections of the server VPC, more than "
            f"peering_quota {quota} (Amazon VPC's quota of active peering connections per VPC: {default} by default, "
            f"at most {most} once AWS raised it for the server account); ask AWS to raise it, then set peering_quota"
        )
    return quota
