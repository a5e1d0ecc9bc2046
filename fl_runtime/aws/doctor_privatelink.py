"""``doctor``'s checks of a privatelink federation (``network: privatelink``, ``stacks/privatelink.py``).

Server side (``--server``):
- endpoint service: the Fleet endpoint service is ``Available`` and requires acceptance; zones: it is offered in
  each zone of the federation, by zone id (``availability_zone_ids``: names differ per account);
- fleet target: the load balancer's target group holds this notebook's current address on the Flower port (federate
  registers it; healthy only while federate runs);
- per client, endpoint connection: the client's account has a connection to the service, ``available`` (federate
  accepts a pending one of a member account when it starts).

Client side (``--client NAME``):
- fleet endpoint: this VPC's endpoint to the service is ``available``;
- zones: each of its subnets is in a zone, by id, where the service is offered;
- private name: ``superlink_dns_name`` resolves, in this VPC, to the endpoint's own addresses (the private hosted
  zone answers it, the DNS firewall lets it through).

The checks are pure functions of EC2's and ELB's answers; the calls are at the bottom.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from fl_runtime.aws.calls import aws_call
from fl_runtime.aws.contract import ClientAccountSettings, ClientEntry, ServerAccountSettings, endpoint_service_name
from fl_runtime.aws.doctor_checks import NETWORK, Check, passed, problem
from fl_runtime.aws.fleet_service import endpoint_connections, is_pending
from fl_runtime.errors import FederationError

ENDPOINT_SERVICE, ZONES, FLEET_TARGET = "endpoint service", "zones", "fleet target"
ENDPOINT_CONNECTION, FLEET_ENDPOINT, PRIVATE_NAME = "endpoint connection", "fleet endpoint", "private name"
REDEPLOY_SERVER = "redeploy ServerStack (network privatelink): it makes the Fleet load balancer and endpoint service"


def service_check(service: dict | None, service_id: str) -> Check:
    """The endpoint service exists, is Available and requires acceptance (DescribeVpcEndpointServiceConfigurations)."""
    if service is None:
        return problem(ENDPOINT_SERVICE, "", f"{service_id or 'no id'}: no such endpoint service here", REDEPLOY_SERVER)
    state, name = service.get("ServiceState", ""), service.get("ServiceName", service_id)
    if state.lower() != "available":
        return problem(ENDPOINT_SERVICE, "", f"{name} is {state}, not Available", REDEPLOY_SERVER)
    if not service.get("AcceptanceRequired"):
        detail = f"{name} accepts any allowed account's endpoint without the server's acceptance"
        return problem(ENDPOINT_SERVICE, "", detail, REDEPLOY_SERVER)
    return passed(ENDPOINT_SERVICE, "", f"{name} is Available; acceptance required")


def zones_check(client: str, offered: set[str], used: set[str], fix: str) -> Check:
    """Every zone id in ``used`` (the federation's, or a client endpoint's subnets) is one the service is offered in."""
    missing = sorted(used - offered)
    if not used:
        return problem(ZONES, client, "no zone ids to compare (no subnets described)", fix)
    if missing:
        detail = f"zone ids {', '.join(missing)} are not among the service's ({', '.join(sorted(offered)) or 'none'})"
        return problem(ZONES, client, detail, fix)
    return passed(ZONES, client, f"{', '.join(sorted(used))}, all offered by the service")


def target_check(targets: list[dict], address: str, port: int) -> Check:
    """The target group holds ``address:port`` and nothing else (DescribeTargetHealth's TargetHealthDescriptions)."""
    registered = {
        (str(t["Target"]["Id"]), int(t["Target"].get("Port", 0))): t.get("TargetHealth", {}).get("State")
        for t in targets
    }
    fix = "start federate on this notebook: it registers its address (and deregisters earlier ones)"
    if (address, port) not in registered:
        seen = ", ".join(f"{host}:{p}" for host, p in registered) or "no target"
        return problem(FLEET_TARGET, "", f"this notebook ({address}:{port}) is not the target; found {seen}", fix)
    others = sorted(f"{host}:{p}" for host, p in registered if (host, p) != (address, port))
    if others:
        return problem(FLEET_TARGET, "", f"earlier addresses are still registered: {', '.join(others)}", fix)
    state = registered[(address, port)]
    return passed(FLEET_TARGET, "", f"{address}:{port} ({state}; healthy while federate runs)")


def connection_check(entry: ClientEntry, connections: list[dict], service_name: str, published: str | None) -> Check:
    """The endpoint the client publishes (``published``; None when its settings could not be read) is connected to
    the service and available (DescribeVpcEndpointConnections); any other endpoint of its account is named."""
    mine = {c["VpcEndpointId"]: c for c in connections if c.get("VpcEndpointOwner") == entry.account}
    deploy = f"client {entry.name} deploys its stack with fleet_endpoint_service={service_name}"
    if published == "":
        return problem(ENDPOINT_CONNECTION, entry.name, "its settings name no Fleet endpoint yet", deploy)
    others = sorted(set(mine) - {published}) if published else []
    if others:
        detail = (
            f"endpoints {', '.join(others)} of account {entry.account} are not the one client {entry.name} publishes"
        )
        fix = (
            "reject them: aws ec2 reject-vpc-endpoint-connections --service-id <endpoint_service_id> "
            f"--vpc-endpoint-ids {' '.join(others)}"
        )
        return problem(ENDPOINT_CONNECTION, entry.name, detail, fix)
    connection = mine.get(published) if published else next(iter(mine.values()), None)
    if connection is None:
        return problem(
            ENDPOINT_CONNECTION, entry.name, f"no endpoint of account {entry.account} to the service", deploy
        )
    endpoint, state = connection["VpcEndpointId"], connection.get("VpcEndpointState", "")
    if state.lower() == "available":
        return passed(ENDPOINT_CONNECTION, entry.name, f"{endpoint} available")
    fix = (
        f"federate accepts it when it starts; or: aws ec2 accept-vpc-endpoint-connections --service-id "
        f"<endpoint_service_id> --vpc-endpoint-ids {endpoint}"
        if is_pending(connection)
        else f"client {entry.name} redeploys its stack (a rejected or failed endpoint is replaced)"
    )
    return problem(ENDPOINT_CONNECTION, entry.name, f"{endpoint} {state}", fix)


def name_agrees(entry: ClientEntry, server_name: str, client_name: str) -> Check:
    """The name the client's jobs dial is the one the SuperLink's certificate carries."""
    if client_name == server_name:
        return passed(PRIVATE_NAME, entry.name, f"its jobs dial {client_name}, the name the certificate carries")
    detail = f"its jobs dial {client_name or 'an address (peering)'}; the certificate names {server_name}"
    return problem(PRIVATE_NAME, entry.name, detail, "every party's federation file: the same superlink_dns_name")


def endpoint_check(client: str, endpoint: dict | None, endpoint_id: str) -> Check:
    """This VPC's endpoint to the Fleet service is available (DescribeVpcEndpoints)."""
    if endpoint is None:
        fix = "deploy this client's stack with fleet_endpoint_service, ServerStack's output FleetEndpointServiceName"
        return problem(FLEET_ENDPOINT, client, f"{endpoint_id or 'no endpoint id'}: no such endpoint here", fix)
    state = endpoint.get("State", "")
    if state.lower() != "available":
        fix = "the server accepts it when federate starts (doctor --server shows the connection)"
        return problem(FLEET_ENDPOINT, client, f"{endpoint_id} is {state}, not available", fix)
    return passed(FLEET_ENDPOINT, client, f"{endpoint_id} to {endpoint.get('ServiceName', '?')} is available")


def name_check(client: str, name: str, resolved: list[str] | str, endpoint_addresses: set[str]) -> Check:
    """``name`` resolves to the endpoint's own addresses only (``resolved``: addresses, or why it did not)."""
    fix = "redeploy this client's stack: its private hosted zone answers the name, its DNS firewall allows it"
    if isinstance(resolved, str):
        return problem(PRIVATE_NAME, client, f"{name} does not resolve here: {resolved}", fix)
    strangers = sorted(set(resolved) - endpoint_addresses)
    if not resolved or strangers:
        detail = f"{name} resolves to {', '.join(strangers) or 'nothing'}, not this VPC's endpoint"
        return problem(PRIVATE_NAME, client, f"{detail} ({', '.join(sorted(endpoint_addresses)) or 'no address'})", fix)
    return passed(PRIVATE_NAME, client, f"{name} -> {', '.join(sorted(set(resolved)))}, this VPC's endpoint")


# -- the calls ---------------------------------------------------------------------------------------------------------


def _call(party: str, what: str, call: Callable[[], Any]) -> Any:
    with aws_call(party, what):
        return call()


def offered_zone_ids(ec2: Any, service: dict | None, party: str) -> set[str]:
    """The ids of the zones a service is offered in: EC2's AvailabilityZoneIds, or its zone names (in the caller's
    account) turned into ids where an answer has only those."""
    if service is None:
        return set()
    if service.get("AvailabilityZoneIds"):
        return set(service["AvailabilityZoneIds"])
    names = list(service.get("AvailabilityZones", []))
    if not names:
        return set()
    zones = _call(party, "describing availability zones", lambda: ec2.describe_availability_zones(ZoneNames=names))
    return {zone["ZoneId"] for zone in zones["AvailabilityZones"]}


def server_fleet_checks(
    ec2: Any, elbv2: Any, settings: ServerAccountSettings, address: str | None
) -> tuple[list[Check], list[dict] | None]:
    """The service, its zones and the notebook as the target; and the connections to the service, for each client's
    check (``client_checks``), None when they could not be described."""
    service_id = settings.endpoint_service_id
    try:
        services = _call(
            "server",
            f"describing {service_id}",
            lambda: ec2.describe_vpc_endpoint_service_configurations(
                Filters=[{"Name": "service-id", "Values": [service_id]}]
            ),
        )["ServiceConfigurations"]
        service = services[0] if services else None
        offered = offered_zone_ids(ec2, service, "server")
        targets = _call(
            "server",
            "describing the Fleet targets",
            lambda: elbv2.describe_target_health(TargetGroupArn=settings.target_group_arn),
        )
        connections = endpoint_connections(ec2, service_id)
    except FederationError as error:
        return [
            problem(NETWORK, "", str(error), "the notebook role reads the Fleet service: redeploy ServerStack")
        ], None
    checks = [service_check(service, service_id), zones_check("", offered, set(settings.zone_ids), REDEPLOY_SERVER)]
    if address is None:
        checks.append(problem(FLEET_TARGET, "", "this machine is not in the server VPC", "run doctor on the notebook"))
    else:
        checks.append(target_check(targets["TargetHealthDescriptions"], address, settings.flower_port))
    return checks, connections


def client_checks(
    settings: ServerAccountSettings, entry: ClientEntry, connections: list[dict], client: ClientAccountSettings | None
) -> list[Check]:
    """One client seen from the server: the endpoint it publishes is connected, and it dials the certificate's name."""
    service_name = endpoint_service_name(settings.region, settings.endpoint_service_id)
    published = client.fleet_endpoint_id if client else None
    checks = [connection_check(entry, connections, service_name, published)]
    if client is not None:
        checks.append(name_agrees(entry, settings.superlink_dns_name, client.launch.superlink_dns_name))
    return checks


def resolve(name: str) -> list[str] | str:
    """The IPv4 addresses ``name`` resolves to here, or why it did not."""
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(name, None, socket.AF_INET)})
    except OSError as error:
        return str(error)


def client_fleet_checks(ec2: Any, settings: ClientAccountSettings, lookup: Callable = resolve) -> list[Check]:
    """This VPC's endpoint, its zones against the service's, and the private name."""
    client, endpoint_id, name = settings.client, settings.fleet_endpoint_id, settings.launch.superlink_dns_name
    try:
        endpoints = _call(
            client,
            f"describing {endpoint_id}",
            lambda: ec2.describe_vpc_endpoints(
                Filters=[{"Name": "vpc-endpoint-id", "Values": [endpoint_id or "none"]}]
            ),
        )["VpcEndpoints"]
        endpoint = endpoints[0] if endpoints else None
        if endpoint is None:
            return [endpoint_check(client, None, endpoint_id)]
        subnets = _call(
            client, "describing the endpoint's subnets", lambda: ec2.describe_subnets(SubnetIds=endpoint["SubnetIds"])
        )["Subnets"]
        service = _call(
            client,
            "describing the Fleet service",
            lambda: ec2.describe_vpc_endpoint_services(ServiceNames=[endpoint["ServiceName"]]),
        )["ServiceDetails"]
        offered = offered_zone_ids(ec2, service[0] if service else None, client)
        interfaces = _call(
            client,
            "describing the endpoint's interfaces",
            lambda: ec2.describe_network_interfaces(NetworkInterfaceIds=endpoint["NetworkInterfaceIds"]),
        )["NetworkInterfaces"]
    except FederationError as error:
        return [problem(NETWORK, client, str(error), "the notebook role reads the endpoint: redeploy this stack")]
    zone_fix = "the server's and this VPC's availability_zone_ids must be the same zones: fix the config, redeploy"
    return [
        endpoint_check(client, endpoint, endpoint_id),
        zones_check(client, offered, {subnet["AvailabilityZoneId"] for subnet in subnets}, zone_fix),
        name_check(client, name, lookup(name), {i["PrivateIpAddress"] for i in interfaces}),
    ]
