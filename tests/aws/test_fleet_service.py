"""Through PrivateLink: federate names the members' private name in the SuperLink's certificate, sends no address,
registers the notebook as the load balancer's only target (moto's ELBv2 over HTTP) and accepts only the endpoints
the members publish (moto 5.2.5 lacks DescribeVpcEndpointConnections and AcceptVpcEndpointConnections:
botocore's Stubber answers them, checking each request and answer against EC2's API model). And a SuperNode
shown a certificate without the name it dials is refused by TLS, with the real Flower processes."""

from __future__ import annotations

import dataclasses
import time

import boto3
import pytest
from botocore.stub import Stubber

from fl_runtime.aws import fleet_gateway
from fl_runtime.aws.fleet_service import job_address, open_fleet, superlink_names
from fl_runtime.launch.flower import SuperLink, SuperNodeSpec, flower_env, free_port
from fl_runtime.launch.pki import create_node_key, create_tls
from fl_runtime.launch.processes import Supervisor
from tests.rehearsal import client_settings, server_settings

MEMBERS = {"insurer-a": "222222222222", "insurer-b": "333333333333"}
SERVICE = "vpce-svc-0123456789abcdef0"


def _settings(private_name: str = "superlink.fl-fraud.internal", target_group: str = ""):
    clients = [client_settings(name, account) for name, account in MEMBERS.items()]
    settings = server_settings(clients, private_name=private_name)
    return dataclasses.replace(settings, target_group_arn=target_group) if target_group else settings


def test_the_certificate_names_the_private_name_and_no_address_is_sent_only_through_privatelink():
    privatelink, peering = _settings(), _settings(private_name="")
    assert superlink_names(privatelink, "10.0.1.25") == ["10.0.1.25", "superlink.fl-fraud.internal"]
    assert job_address(privatelink, "10.0.1.25", 9092) is None
    assert superlink_names(peering, "10.0.1.25") == ["10.0.1.25"]
    assert job_address(peering, "10.0.1.25", 9092) == "10.0.1.25:9092"


def _target_group(endpoint: str) -> tuple[object, str]:
    ec2 = boto3.client("ec2", endpoint_url=endpoint, region_name="us-east-1")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    elbv2 = boto3.client("elbv2", endpoint_url=endpoint, region_name="us-east-1")
    group = elbv2.create_target_group(Name="fleet", Protocol="TCP", Port=9092, VpcId=vpc, TargetType="ip")
    return elbv2, group["TargetGroups"][0]["TargetGroupArn"]


def _connection(endpoint_id: str, owner: str, state: str = "pendingAcceptance") -> dict:
    return {"ServiceId": SERVICE, "VpcEndpointId": endpoint_id, "VpcEndpointOwner": owner, "VpcEndpointState": state}


PUBLISHED = {"insurer-a": "vpce-0aaaaaaaaaaaaaaa1", "insurer-b": "vpce-0bbbbbbbbbbbbbbb2"}


def test_the_notebook_becomes_the_only_target_and_only_the_members_published_endpoints_are_accepted(local_aws):
    _recorder, endpoint = local_aws
    elbv2, group = _target_group(endpoint)
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": "10.0.1.7", "Port": 9092}])  # before a restart
    ec2 = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(ec2)
    filters = [{"Name": "service-id", "Values": [SERVICE]}]
    connections = [
        _connection("vpce-0aaaaaaaaaaaaaaa1", MEMBERS["insurer-a"]),
        _connection("vpce-0bbbbbbbbbbbbbbb2", MEMBERS["insurer-b"], "available"),  # accepted before
        _connection("vpce-0ccccccccccccccc3", "999999999999"),  # not a member: the service should not allow it
        _connection("vpce-0ddddddddddddddd4", MEMBERS["insurer-b"], "PendingAcceptance"),  # another VPC of a member
    ]
    stub.add_response(
        "describe_vpc_endpoint_connections", {"VpcEndpointConnections": connections}, {"Filters": filters}
    )
    stub.add_response(
        "accept_vpc_endpoint_connections",
        {"Unsuccessful": []},
        {"ServiceId": SERVICE, "VpcEndpointIds": ["vpce-0aaaaaaaaaaaaaaa1"]},
    )
    with stub:
        done = open_fleet(elbv2, ec2, _settings(target_group=group), "10.0.1.25", PUBLISHED)
    stub.assert_no_pending_responses()
    targets = elbv2.describe_target_health(TargetGroupArn=group)["TargetHealthDescriptions"]
    assert [t["Target"]["Id"] for t in targets] == ["10.0.1.25"]
    assert done == [
        "Fleet load balancer: deregistered 10.0.1.7 (an earlier address)",
        "Fleet load balancer: registered this notebook, 10.0.1.25:9092",
        "Fleet endpoint service: vpce-0ccccccccccccccc3 of account 999999999999 left pending: not a member account",
        "Fleet endpoint service: vpce-0ddddddddddddddd4 of client insurer-b's account left pending: not the endpoint "
        "it publishes (vpce-0bbbbbbbbbbbbbbb2)",
        "Fleet endpoint service: client insurer-a's endpoint vpce-0aaaaaaaaaaaaaaa1 accepted",
    ]


def test_a_registered_notebook_is_left_alone_and_a_refused_acceptance_is_named(local_aws):
    _recorder, endpoint = local_aws
    elbv2, group = _target_group(endpoint)
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": "10.0.1.25", "Port": 9092}])
    ec2 = boto3.client("ec2", region_name="us-east-1")
    stub = Stubber(ec2)
    stub.add_response(
        "describe_vpc_endpoint_connections",
        {"VpcEndpointConnections": [_connection("vpce-0aaaaaaaaaaaaaaa1", MEMBERS["insurer-a"])]},
    )
    refused = {"ResourceId": "vpce-0aaaaaaaaaaaaaaa1", "Error": {"Code": "x", "Message": "the endpoint was deleted"}}
    stub.add_response("accept_vpc_endpoint_connections", {"Unsuccessful": [refused]})
    with stub:
        done = open_fleet(elbv2, ec2, _settings(target_group=group), "10.0.1.25", PUBLISHED)
    assert done == [
        "Fleet endpoint service: client insurer-a's endpoint vpce-0aaaaaaaaaaaaaaa1 refused (the endpoint was deleted)"
    ]


def test_with_peering_the_fleet_is_not_touched():
    assert open_fleet(None, None, _settings(private_name=""), "10.0.1.25", PUBLISHED) == []


@pytest.mark.slow
def test_a_supernode_dialing_a_name_the_certificate_does_not_carry_is_refused(tmp_path):
    """The SuperLink's certificate names 127.0.0.1 only: a job that dials ``localhost`` (a private name the run did
    not give) never gets in, though its key is registered and its CA is the run's."""
    supervisor = Supervisor(tmp_path / "logs")
    try:
        tls = create_tls(tmp_path / "tls", [])
        link = SuperLink(supervisor, tmp_path, tls, host="127.0.0.1", port=free_port(), dial_address="127.0.0.1")
        link.start()
        port = free_port()
        fleet_gateway.start(supervisor, link, f"127.0.0.1:{port}", tmp_path, timeout=30)
        key = create_node_key(tmp_path / "keys", "member")
        link.register(key.public_key)
        (tmp_path / "secret").write_bytes(b"s" * 32)
        spec = SuperNodeSpec(f"localhost:{port}", tls.ca_certificate, key, {"data-path": "/x.csv"}, 10)
        supervisor.start(
            "member", spec.command(free_port(), tmp_path / "secret"), flower_env(tmp_path / "home"), tmp_path / "member"
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "member" not in supervisor.exited():
            time.sleep(0.5)
        assert supervisor.exited().get("member", 0) != 0
        log = supervisor.log_tail("member", 80)
        assert "CERTIFICATE_VERIFY_FAILED" in log or "certificate verify failed" in log or "Peer name" in log, log
    finally:
        supervisor.stop_all()
