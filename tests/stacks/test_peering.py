"""Peering and PeeringAccepter: the connection, routes on both sides, and the roles that may touch them."""

from __future__ import annotations

import json

import pytest

from tests.stacks.cdk_helpers import CLIENT_ACCOUNT, SERVER_ACCOUNT, THREE_CLIENTS, resources, statements

pytestmark = pytest.mark.slow


def test_the_server_requests_peering_with_each_client_through_its_accepter_role(three):
    connections = [r["Properties"] for r in resources(three.server, "AWS::EC2::VPCPeeringConnection").values()]
    assert sorted(c["PeerOwnerId"] for c in connections) == ["222222222222", "333333333333", "444444444444"]
    for connection in connections:
        assert connection["PeerRoleArn"] == f"arn:aws:iam::{connection['PeerOwnerId']}:role/FL-peering-accepter"
        assert connection["PeerRegion"] == "us-east-1"


def test_routes_exist_on_both_sides_of_every_peering(three):
    server_routes = [r["Properties"] for r in resources(three.server, "AWS::EC2::Route").values()]
    for spec in THREE_CLIENTS:
        assert (
            len([r for r in server_routes if r["DestinationCidrBlock"] == spec["vpc_cidr"]]) == 2
        )  # one per server route table
    client_routes = [
        r["Properties"] for lid, r in resources(three.server, "Custom::AWS").items() if "ClientRoute" in lid
    ]
    assert len(client_routes) == 2 * len(THREE_CLIENTS)
    for route in client_routes:
        create, update, delete = (json.dumps(route[key]) for key in ("Create", "Update", "Delete"))
        assert (
            '\\"action\\":\\"createRoute\\"' in create
            and '\\"action\\":\\"replaceRoute\\"' in update
            and '\\"action\\":\\"deleteRoute\\"' in delete
        )
        assert "10.0.0.0/16" in create and "FL-peering-routes" in create
        assert '\\"physicalResourceId\\":{\\"id\\":\\"fl-route-' in create  # fixed: an update never deletes the route
        assert (
            "ignoreErrorCodesMatching" in delete and "InvalidRoute" in delete and "InvalidRoute" not in create
        )  # a route already gone does not block a delete


def test_the_client_accepter_role_only_accepts_peerings_into_its_vpc_from_the_server_account(client):
    role = next(
        r
        for r in resources(client, "AWS::IAM::Role").values()
        if r["Properties"].get("RoleName") == "FL-peering-accepter"
    )
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "AWS": f"arn:aws:iam::{SERVER_ACCOUNT}:root"
    }
    accept = {s["Sid"]: s for s in statements(client) if s["Action"] == "ec2:AcceptVpcPeeringConnection"}
    assert set(accept) == {"AcceptIntoThisVpcOnly", "AcceptOnlyFromTheServerAccount"}
    vpc = accept["AcceptIntoThisVpcOnly"]
    assert "Condition" not in vpc  # the peering condition keys do not exist on the VPC resource
    assert vpc["Resource"]["Fn::Join"][1][-1]["Ref"].startswith("NetworkVpc")
    connection = accept["AcceptOnlyFromTheServerAccount"]
    assert sorted(connection["Resource"]) == [
        f"arn:aws:ec2:us-east-1:{a}:vpc-peering-connection/*" for a in sorted((SERVER_ACCOUNT, CLIENT_ACCOUNT))
    ]
    assert connection["Condition"]["ArnLike"] == {"ec2:RequesterVpc": f"arn:aws:ec2:us-east-1:{SERVER_ACCOUNT}:vpc/*"}
    assert connection["Condition"]["ArnEquals"]["ec2:AccepterVpc"] == vpc["Resource"]


def test_client_routes_are_managed_only_by_the_servers_peering_operator(client):
    role = next(
        r
        for r in resources(client, "AWS::IAM::Role").values()
        if r["Properties"].get("RoleName") == "FL-peering-routes"
    )
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Condition"] == {
        "ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{SERVER_ACCOUNT}:role/FL-peering-operator"}
    }
    route_statement = next(
        s for s in statements(client) if s["Action"] == ["ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"]
    )
    assert len(route_statement["Resource"]) == 2 and "*" not in json.dumps(route_statement["Resource"])
