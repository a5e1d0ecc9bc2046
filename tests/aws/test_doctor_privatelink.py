"""doctor through PrivateLink: each failure is named by its check and client, with its fix.

moto 5.2.5 lacks DescribeVpcEndpointConnections and describes no endpoint service of a load balancer, so EC2 and
ELB answer through botocore's Stubber: every request and answer is checked against the services' API models."""

from __future__ import annotations

import dataclasses

import boto3
import pytest
from botocore.stub import Stubber

from fl_runtime.aws import doctor_privatelink as fleet
from fl_runtime.aws.doctor_checks import NETWORK
from tests.rehearsal import client_settings, server_settings

NAME = "superlink.fl-fraud.internal"
SERVICE_ID = "vpce-svc-0123456789abcdef0"
SERVICE_NAME = f"com.amazonaws.vpce.us-east-1.{SERVICE_ID}"
GROUP = "arn:aws:elasticloadbalancing:us-east-1:111111111111:targetgroup/fleet/0123456789abcdef"
MEMBERS = {"insurer-a": "222222222222", "insurer-b": "333333333333"}
ENDPOINT = "vpce-0aaaaaaaaaaaaaaa1"


def _server():
    clients = [client_settings(name, account, private_name=NAME) for name, account in MEMBERS.items()]
    settings = server_settings(clients, private_name=NAME)
    return dataclasses.replace(settings, region="us-east-1", target_group_arn=GROUP, zone_ids=("use1-az4", "use1-az6"))


def _client(endpoint_id: str = ENDPOINT):
    settings = client_settings("insurer-a", MEMBERS["insurer-a"], private_name=NAME)
    return dataclasses.replace(settings, fleet_endpoint_id=endpoint_id)


def _clients() -> tuple[object, object]:
    return (boto3.client(name, region_name="us-east-1") for name in ("ec2", "elbv2"))  # type: ignore[return-value]


def _connection(owner: str, state: str, endpoint: str = ENDPOINT) -> dict:
    return {"VpcEndpointId": endpoint, "VpcEndpointOwner": owner, "VpcEndpointState": state}


def _server_answers(ec2_stub, elb_stub, *, service: dict | None, zones: list[str], targets: list, connections: list):
    configurations = [service] if service else []
    ec2_stub.add_response("describe_vpc_endpoint_service_configurations", {"ServiceConfigurations": configurations})
    if service and "AvailabilityZoneIds" not in service:  # an answer with names only: doctor asks for their ids
        ec2_stub.add_response(
            "describe_availability_zones",
            {
                "AvailabilityZones": [
                    {"ZoneName": f"us-east-1{chr(97 + i)}", "ZoneId": zone} for i, zone in enumerate(zones)
                ]
            },
        )
    elb_stub.add_response("describe_target_health", {"TargetHealthDescriptions": targets}, {"TargetGroupArn": GROUP})
    ec2_stub.add_response("describe_vpc_endpoint_connections", {"VpcEndpointConnections": connections})


def _target(address: str, state: str = "unhealthy") -> dict:
    return {"Target": {"Id": address, "Port": 9092}, "TargetHealth": {"State": state}}


def _service(state: str = "Available", acceptance: bool = True) -> dict:
    return {
        "ServiceId": SERVICE_ID,
        "ServiceName": SERVICE_NAME,
        "ServiceState": state,
        "AcceptanceRequired": acceptance,
        "AvailabilityZones": ["us-east-1a", "us-east-1b"],
    }


ENDPOINTS = {"insurer-a": ENDPOINT, "insurer-b": "vpce-0bbbbbbbbbbbbbbb2"}  # what each client publishes


def _member(name: str, endpoint: str, private_name: str = NAME):
    settings = client_settings(name, MEMBERS[name], private_name=private_name)
    return dataclasses.replace(settings, fleet_endpoint_id=endpoint)


def _server_checks(address: str | None = "10.0.1.25", members: dict | None = None, **answers) -> dict:
    """The server's checks, then each client's as doctor makes them once it has read the client's settings."""
    ec2, elbv2 = _clients()
    with Stubber(ec2) as ec2_stub, Stubber(elbv2) as elb_stub:
        _server_answers(ec2_stub, elb_stub, **answers)
        checks, connections = fleet.server_fleet_checks(ec2, elbv2, _server(), address)
    members = members if members is not None else {name: _member(name, e) for name, e in ENDPOINTS.items()}
    for entry in _server().clients:
        checks += fleet.client_checks(_server(), entry, connections or [], members.get(entry.name))
    return {(check.name, check.client): check for check in checks}


def test_a_healthy_service_passes_every_server_check():
    connections = [
        _connection(MEMBERS["insurer-a"], "available"),
        _connection(MEMBERS["insurer-b"], "Available", "vpce-0bbbbbbbbbbbbbbb2"),  # botocore's model spells it so
    ]
    service = dict(_service(), AvailabilityZoneIds=["use1-az6", "use1-az4"])  # EC2 names the zones by id too
    checks = _server_checks(service=service, zones=[], targets=[_target("10.0.1.25")], connections=connections)
    assert all(check.ok for check in checks.values()), checks
    assert set(checks) == {
        ("endpoint service", ""),
        ("zones", ""),
        ("fleet target", ""),
        *((check, name) for check in ("endpoint connection", "private name") for name in MEMBERS),
    }


def test_each_server_side_failure_is_named_by_check_and_client_with_its_fix():
    connections = [
        _connection(MEMBERS["insurer-a"], "pendingAcceptance"),
        _connection("999999999999", "available"),
        _connection(MEMBERS["insurer-b"], "pendingAcceptance", "vpce-0eeeeeeeeeeeeeee5"),  # not the one it publishes
    ]
    members = {"insurer-a": _member("insurer-a", ENDPOINT, private_name="fleet.other.internal"),
               "insurer-b": _member("insurer-b", "vpce-0bbbbbbbbbbbbbbb2")}  # fmt: skip
    checks = _server_checks(
        members=members,
        service=_service(acceptance=False),
        zones=["use1-az4", "use1-az1"],
        targets=[_target("10.0.1.7")],
        connections=connections,
    )
    assert [key for key, check in checks.items() if check.ok] == [("private name", "insurer-b")]
    assert "accepts any allowed account's endpoint" in checks[("endpoint service", "")].detail
    assert "use1-az6 are not among the service's (use1-az1, use1-az4)" in checks[("zones", "")].detail
    target = checks[("fleet target", "")]
    assert "this notebook (10.0.1.25:9092) is not the target; found 10.0.1.7:9092" in target.detail
    assert "start federate" in target.fix
    pending = checks[("endpoint connection", "insurer-a")]
    assert pending.detail == f"{ENDPOINT} pendingAcceptance"
    assert "aws ec2 accept-vpc-endpoint-connections" in pending.fix and pending.fix.endswith(ENDPOINT)
    stranger = checks[("endpoint connection", "insurer-b")]
    assert stranger.detail == (
        "endpoints vpce-0eeeeeeeeeeeeeee5 of account 333333333333 are not the one client insurer-b publishes"
    )
    assert "reject-vpc-endpoint-connections" in stranger.fix
    name = checks[("private name", "insurer-a")]
    assert name.detail == f"its jobs dial fleet.other.internal; the certificate names {NAME}"


def test_a_client_without_an_endpoint_or_unread_settings_is_named():
    connections = [_connection(MEMBERS["insurer-b"], "available", "vpce-0bbbbbbbbbbbbbbb2")]
    members = {"insurer-a": _member("insurer-a", "")}  # insurer-b's settings could not be read: no name check
    checks = _server_checks(members=members, service=_service(), zones=["use1-az4", "use1-az6"],
                            targets=[_target("10.0.1.25")], connections=connections)  # fmt: skip
    missing = checks[("endpoint connection", "insurer-a")]
    assert missing.detail == "its settings name no Fleet endpoint yet"
    assert f"fleet_endpoint_service={SERVICE_NAME}" in missing.fix
    assert checks[("endpoint connection", "insurer-b")].ok and ("private name", "insurer-b") not in checks


def test_a_missing_service_and_stale_targets_are_named():
    checks = _server_checks(service=None, zones=[], targets=[_target("10.0.1.25"), _target("10.0.1.7")], connections=[])
    assert checks[("endpoint service", "")].detail == f"{SERVICE_ID}: no such endpoint service here"
    assert checks[("fleet target", "")].detail == "earlier addresses are still registered: 10.0.1.7:9092"
    no_notebook = _server_checks(None, service=_service(), zones=["use1-az4", "use1-az6"], targets=[], connections=[])
    assert no_notebook[("fleet target", "")].fix == "run doctor on the notebook"


def test_a_refused_describe_is_one_network_problem_naming_the_call():
    ec2, elbv2 = _clients()
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_vpc_endpoint_service_configurations", "UnauthorizedOperation", "not allowed")
        [check], connections = fleet.server_fleet_checks(ec2, elbv2, _server(), "10.0.1.25")
    assert (check.name, check.ok) == (NETWORK, False) and f"describing {SERVICE_ID}" in check.detail
    assert connections is None


def _client_checks(
    *,
    state: str = "available",
    subnet_zones=("use1-az4", "use1-az6"),
    offered=("use1-az4", "use1-az6"),
    resolved=("10.1.0.10", "10.1.1.10"),
    by_id: bool = False,
) -> dict:
    """``by_id``: EC2 names the service's zones by id; otherwise by this account's names, which doctor turns into
    ids (the same zones may have other names in the server's account)."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    endpoint = {
        "VpcEndpointId": ENDPOINT,
        "ServiceName": SERVICE_NAME,
        "State": state,
        "SubnetIds": ["subnet-0a", "subnet-0b"],
        "NetworkInterfaceIds": ["eni-0a", "eni-0b"],
    }
    with Stubber(ec2) as stub:
        stub.add_response("describe_vpc_endpoints", {"VpcEndpoints": [endpoint]})
        stub.add_response(
            "describe_subnets",
            {
                "Subnets": [
                    {"SubnetId": f"subnet-0{c}", "AvailabilityZoneId": zone} for c, zone in zip("ab", subnet_zones)
                ]
            },
        )
        detail = {"ServiceName": SERVICE_NAME, "AvailabilityZones": ["us-east-1b", "us-east-1c"]}
        stub.add_response(
            "describe_vpc_endpoint_services",
            {"ServiceDetails": [dict(detail, AvailabilityZoneIds=list(offered)) if by_id else detail]},
        )
        if not by_id:
            zones = [{"ZoneName": f"us-east-1{c}", "ZoneId": zone} for c, zone in zip("bc", offered)]
            stub.add_response("describe_availability_zones", {"AvailabilityZones": zones})
        stub.add_response(
            "describe_network_interfaces",
            {
                "NetworkInterfaces": [
                    {"NetworkInterfaceId": "eni-0a", "PrivateIpAddress": "10.1.0.10"},
                    {"NetworkInterfaceId": "eni-0b", "PrivateIpAddress": "10.1.1.10"},
                ]
            },
        )
        checks = fleet.client_fleet_checks(ec2, _client(), lambda name: list(resolved) if resolved else "no answer")
    return {check.name: check for check in checks}


@pytest.mark.parametrize("by_id", [True, False])
def test_a_healthy_client_endpoint_passes_and_matches_zones_by_id(by_id):
    checks = _client_checks(by_id=by_id)
    assert all(check.ok for check in checks.values()) and set(checks) == {"fleet endpoint", "zones", "private name"}
    assert checks["private name"].detail == f"{NAME} -> 10.1.0.10, 10.1.1.10, this VPC's endpoint"


@pytest.mark.parametrize(
    "answers, check, detail",
    [
        ({"state": "pendingAcceptance"}, "fleet endpoint", f"{ENDPOINT} is pendingAcceptance, not available"),
        ({"subnet_zones": ("use1-az4", "use1-az1")}, "zones", "zone ids use1-az1 are not among the service's"),
        ({"resolved": ("203.0.113.9",)}, "private name", f"{NAME} resolves to 203.0.113.9, not this VPC's endpoint"),
        ({"resolved": ()}, "private name", f"{NAME} does not resolve here: no answer"),
    ],
)
def test_each_client_side_failure_is_named_with_its_fix(answers, check, detail):
    found = _client_checks(**answers)[check]
    assert not found.ok and found.client == "insurer-a" and detail in found.detail and found.fix


def test_a_client_without_its_endpoint_yet_is_told_to_deploy_with_the_service_name():
    ec2 = boto3.client("ec2", region_name="us-east-1")
    with Stubber(ec2) as stub:
        stub.add_response("describe_vpc_endpoints", {"VpcEndpoints": []})
        [check] = fleet.client_fleet_checks(ec2, _client(endpoint_id=""), lambda name: "unused")
    assert (check.name, check.ok) == ("fleet endpoint", False) and "fleet_endpoint_service" in check.fix


def test_every_call_doctor_and_federate_make_through_privatelink_is_granted_to_the_notebook():
    """A call the notebook's role may not make is a failed check no redeploy fixes: the calls of doctor_privatelink
    and fleet_service are the actions the stacks grant (stacks.notebook.PRIVATELINK_READS, stacks.privatelink)."""
    import inspect
    import re

    from fl_runtime.aws import fleet_service
    from stacks.notebook import PRIVATELINK_READS
    from stacks.privatelink import FLEET_OPERATIONS

    granted = set(PRIVATELINK_READS) | set(FLEET_OPERATIONS)
    called = set()
    for module in (fleet, fleet_service):
        source = inspect.getsource(module)
        for operation in set(re.findall(r"(?:ec2|elbv2)\.(?:get_paginator\(\")?([a-z_]+)\(?", source)):
            if operation.startswith(("describe_", "register_", "deregister_", "accept_")):
                called.add(operation)
    actions = {("elasticloadbalancing:" if "target" in op else "ec2:") + op.title().replace("_", "") for op in called}
    assert "ec2:DescribeVpcEndpointServices" in actions and "elasticloadbalancing:RegisterTargets" in actions
    assert actions <= granted, actions - granted
