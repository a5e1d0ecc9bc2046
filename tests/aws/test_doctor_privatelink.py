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
    return dataclasses.replace(settings, target_group_arn=GROUP, zone_ids=("use1-az4", "use1-az6"))


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
    if service:
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


def _server_checks(address: str | None = "10.0.1.25", **answers) -> dict[tuple[str, str], object]:
    ec2, elbv2 = _clients()
    with Stubber(ec2) as ec2_stub, Stubber(elbv2) as elb_stub:
        _server_answers(ec2_stub, elb_stub, **answers)
        checks = fleet.server_fleet_checks(ec2, elbv2, _server(), address)
    return {(check.name, check.client): check for check in checks}


def test_a_healthy_service_passes_every_server_check():
    connections = [
        _connection(MEMBERS["insurer-a"], "available"),
        _connection(MEMBERS["insurer-b"], "available", "vpce-0bbbbbbbbbbbbbbb2"),
    ]
    checks = _server_checks(
        service=_service(), zones=["use1-az4", "use1-az6"], targets=[_target("10.0.1.25")], connections=connections
    )
    assert all(check.ok for check in checks.values()), checks
    assert set(checks) == {
        ("endpoint service", ""),
        ("zones", ""),
        ("fleet target", ""),
        ("endpoint connection", "insurer-a"),
        ("endpoint connection", "insurer-b"),
    }


def test_each_server_side_failure_is_named_by_check_and_client_with_its_fix():
    connections = [_connection(MEMBERS["insurer-a"], "pendingAcceptance"), _connection("999999999999", "available")]
    checks = _server_checks(
        service=_service(acceptance=False),
        zones=["use1-az4", "use1-az1"],
        targets=[_target("10.0.1.7")],
        connections=connections,
    )
    assert not any(check.ok for check in checks.values())
    assert "accepts any allowed account's endpoint" in checks[("endpoint service", "")].detail
    assert "use1-az6 are not among the service's (use1-az1, use1-az4)" in checks[("zones", "")].detail
    target = checks[("fleet target", "")]
    assert "this notebook (10.0.1.25:9092) is not the target; found 10.0.1.7:9092" in target.detail
    assert "start federate" in target.fix
    pending = checks[("endpoint connection", "insurer-a")]
    assert pending.detail == f"{ENDPOINT} pendingAcceptance"
    assert (
        f"aws ec2 accept-vpc-endpoint-connections --service-id <endpoint_service_id> --vpc-endpoint-ids {ENDPOINT}"
        in pending.fix
    )
    missing = checks[("endpoint connection", "insurer-b")]
    assert missing.detail == "no endpoint of account 333333333333 to the service"
    assert f"fleet_endpoint_service={SERVICE_NAME}" in missing.fix


def test_a_missing_service_and_stale_targets_are_named():
    checks = _server_checks(service=None, zones=[], targets=[_target("10.0.1.25"), _target("10.0.1.7")], connections=[])
    assert checks[("endpoint service", "")].detail == f"{SERVICE_ID}: no such endpoint service here"
    assert checks[("fleet target", "")].detail == "earlier addresses are still registered: 10.0.1.7:9092"
    assert (
        _server_checks(None, service=_service(), zones=["use1-az4", "use1-az6"], targets=[], connections=[])[
            ("fleet target", "")
        ].fix
        == "run doctor on the notebook"
    )


def test_a_refused_describe_is_one_network_problem_naming_the_call():
    ec2, elbv2 = _clients()
    with Stubber(ec2) as stub:
        stub.add_client_error("describe_vpc_endpoint_service_configurations", "UnauthorizedOperation", "not allowed")
        [check] = fleet.server_fleet_checks(ec2, elbv2, _server(), "10.0.1.25")
    assert (check.name, check.ok) == (NETWORK, False) and f"describing {SERVICE_ID}" in check.detail


def _client_checks(
    *,
    state: str = "available",
    subnet_zones=("use1-az4", "use1-az6"),
    offered=("use1-az4", "use1-az6"),
    resolved=("10.1.0.10", "10.1.1.10"),
) -> dict:
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
        stub.add_response(
            "describe_vpc_endpoint_services",
            {"ServiceDetails": [{"ServiceName": SERVICE_NAME, "AvailabilityZones": ["us-east-1b", "us-east-1c"]}]},
        )
        stub.add_response(
            "describe_availability_zones",
            {"AvailabilityZones": [{"ZoneName": f"us-east-1{c}", "ZoneId": zone} for c, zone in zip("bc", offered)]},
        )
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


def test_a_healthy_client_endpoint_passes_and_matches_zones_by_id():
    checks = _client_checks()
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
