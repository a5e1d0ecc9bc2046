"""Through PrivateLink (``network: privatelink``): what ``federate`` does about the server's Fleet service.

The members' jobs dial ``superlink_dns_name``, which each member's own VPC answers with its own endpoint; the
endpoints lead to the server's load balancer, which forwards to an IP target. So before a run, on the notebook:

- the SuperLink's certificate names that private name (as well as the notebook's address): a job verifies it;
- the launchers are sent no address (each account's launcher points its job at the name itself);
- the notebook's current address is the load balancer's one target (a notebook instance gets a new address
  when it restarts: any other registered address is deregistered);
- the endpoint connections pending acceptance are accepted if each is the endpoint a member publishes in its
  settings (``fleet_endpoint_id``, read through its kickoff role) and its owner is that member's account: the
  service admits only member accounts and requires acceptance, and CloudFormation cannot accept a connection made
  after the deploy. Any other pending connection (another account's, or another endpoint of a member account, from
  a VPC that is not its federation VPC) is left pending and named.

With peering none of this applies: the jobs dial the notebook's address, sent by federate and checked by each
launcher against the server VPC.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from typing import Any

from fl_runtime.aws.calls import aws_call
from fl_runtime.aws.contract import ServerAccountSettings
from fl_runtime.errors import FederationError

PRIVATELINK = "privatelink"
PENDING = "pendingAcceptance"


def private_address(settings: ServerAccountSettings) -> str:
    """This notebook's address toward the clients: the source address of its route to the first client VPC (through
    PrivateLink, to its own VPC's router, since the load balancer in that VPC forwards to it).

    Connecting a UDP socket picks a route and sends nothing. The address must lie in the server VPC: it
    is what the client jobs dial and what their security groups and peering routes admit, or the load balancer's
    target.
    """
    server_vpc = ipaddress.ip_network(settings.server_vpc_cidr)
    if settings.network == PRIVATELINK:
        toward = str(server_vpc[1])
    else:
        toward = str(ipaddress.ip_network(settings.clients[0].vpc_cidr)[1]) if settings.clients else "10.255.255.255"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((toward, 1))
        address = probe.getsockname()[0]
    if ipaddress.ip_address(address) not in server_vpc:
        raise FederationError(
            f"this machine reaches {toward} from {address}, outside the server VPC {settings.server_vpc_cidr}: "
            "run federate on the server notebook, or pass --address with its private address"
        )
    return address


def superlink_names(settings: ServerAccountSettings, address: str) -> list[str]:
    """What the SuperLink's certificate names: the notebook's address, and through PrivateLink the private name."""
    return [address, settings.superlink_dns_name] if settings.network == PRIVATELINK else [address]


def job_address(settings: ServerAccountSettings, address: str, port: int) -> str | None:
    """What federate sends each launcher as the SuperLink's address: none through PrivateLink."""
    return None if settings.network == PRIVATELINK else f"{address}:{port}"


def open_fleet(
    elbv2: Any, ec2: Any, settings: ServerAccountSettings, address: str, endpoints: Mapping[str, str]
) -> list[str]:
    """The notebook as the load balancer's only target, and the members' published endpoints accepted
    (``endpoints``: each member's ``fleet_endpoint_id`` by name); returns what was done, one line each.
    FederationError names the call that failed."""
    if settings.network != PRIVATELINK:
        return []
    return [*_register(elbv2, settings, address), *_accept(ec2, settings, endpoints)]


def _register(elbv2: Any, settings: ServerAccountSettings, address: str) -> list[str]:
    group, port = settings.target_group_arn, settings.flower_port
    with aws_call("server", f"reading the targets of {group}"):
        described = elbv2.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
    stale = [{"Id": t["Target"]["Id"], "Port": t["Target"]["Port"]} for t in described if t["Target"]["Id"] != address]
    done = []
    if stale:
        with aws_call("server", f"deregistering earlier addresses from {group}"):
            elbv2.deregister_targets(TargetGroupArn=group, Targets=stale)
        done.append(f"Fleet load balancer: deregistered {', '.join(t['Id'] for t in stale)} (an earlier address)")
    if not any(t["Target"]["Id"] == address and t["Target"]["Port"] == port for t in described):
        with aws_call("server", f"registering {address}:{port} in {group}"):
            elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": address, "Port": port}])
        done.append(f"Fleet load balancer: registered this notebook, {address}:{port}")
    return done


def endpoint_connections(ec2: Any, service_id: str) -> list[dict]:
    """Every endpoint connection to ``service_id`` (federate accepts from them, doctor checks them)."""
    with aws_call("server", f"describing the endpoint connections of {service_id}"):
        pages = ec2.get_paginator("describe_vpc_endpoint_connections").paginate(
            Filters=[{"Name": "service-id", "Values": [service_id]}]
        )
        return [c for page in pages for c in page["VpcEndpointConnections"]]


def is_pending(connection: dict) -> bool:
    """Waiting for the server's acceptance: EC2 answers pendingAcceptance, botocore's model spells it
    PendingAcceptance, so compared case-blind."""
    return str(connection.get("VpcEndpointState", "")).lower() == PENDING.lower()


def _refusal(connection: dict, members: Mapping[str, str], endpoints: Mapping[str, str]) -> str | None:
    """Why a pending connection is not a member's published endpoint; None when it is."""
    owner, endpoint = connection.get("VpcEndpointOwner"), connection["VpcEndpointId"]
    name = members.get(str(owner))
    if name is None:
        return f"{endpoint} of account {owner} left pending: not a member account"
    if endpoints.get(name) != endpoint:
        published = endpoints.get(name) or "none"
        return f"{endpoint} of client {name}'s account left pending: not the endpoint it publishes ({published})"
    return None


def _accept(ec2: Any, settings: ServerAccountSettings, endpoints: Mapping[str, str]) -> list[str]:
    service = settings.endpoint_service_id
    members = {entry.account: entry.name for entry in settings.clients}
    refusals = {
        c["VpcEndpointId"]: (c, _refusal(c, members, endpoints))
        for c in endpoint_connections(ec2, service)
        if is_pending(c)
    }
    accepted = [connection for connection, refusal in refusals.values() if refusal is None]
    done = [f"Fleet endpoint service: {refusal}" for _, refusal in refusals.values() if refusal is not None]
    if accepted:
        ids = [c["VpcEndpointId"] for c in accepted]
        with aws_call("server", f"accepting the endpoint connections {', '.join(ids)} to {service}"):
            answer = ec2.accept_vpc_endpoint_connections(ServiceId=service, VpcEndpointIds=ids)
        refused = {item["ResourceId"]: item["Error"].get("Message", "") for item in answer.get("Unsuccessful", [])}
        for connection in accepted:
            endpoint, name = connection["VpcEndpointId"], members[connection["VpcEndpointOwner"]]
            outcome = f"refused ({refused[endpoint]})" if endpoint in refused else "accepted"
            done.append(f"Fleet endpoint service: client {name}'s endpoint {endpoint} {outcome}")
    return done
