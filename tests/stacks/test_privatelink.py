"""The privatelink network (stacks/privatelink.py): one way, no peering, in both deployment modes."""

from __future__ import annotations

import json
import subprocess

import pytest
from aws_cdk.assertions import Match

from fl_runtime.errors import ConfigError
from stacks.config import PEERING_ACCEPTER_ROLE_NAME, PEERING_OPERATOR_ROLE_NAME, PEERING_ROUTES_ROLE_NAME
from tests.stacks.cdk_helpers import (
    OVERLAPPING_CLIENTS,
    PRIVATELINK,
    SERVICE_NAME,
    THREE_CLIENTS,
    resources,
    synthesize,
)

PEERING_ROLES = {PEERING_ACCEPTER_ROLE_NAME, PEERING_OPERATOR_ROLE_NAME, PEERING_ROUTES_ROLE_NAME}


def _templates(synth) -> list[dict]:
    return [json.loads(path.read_text()) for path in synth.outdir.glob("*.template.json")]


def _all_templates(privatelink_three, privatelink_separate) -> list[dict]:
    separate = privatelink_separate
    return [*_templates(privatelink_three), *_templates(separate.server_synth), *_templates(separate.client_synth)]


def test_no_peering_route_between_the_vpcs_or_peering_role_in_either_deployment_mode(
    privatelink_three, privatelink_separate
):
    for template in _all_templates(privatelink_three, privatelink_separate):
        text = json.dumps(template)
        assert "VPCPeeringConnection" not in text and "PeeringConnection" not in text
        assert not [r for r in template["Resources"].values() if r["Type"] == "AWS::EC2::Route"]
        roles = {
            r["Properties"].get("RoleName") for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"
        }
        assert not roles & PEERING_ROLES
        # nothing grants an AWS principal of another account a way into any of these accounts but the kickoff role
        assert "sts:AssumeRole" not in json.dumps(
            [
                r
                for r in template["Resources"].values()
                if r["Type"] == "AWS::IAM::Role"
                and r["Properties"].get("RoleName") != "FL-kickoff-client-job"
                and "AWS" in json.dumps(r["Properties"]["AssumeRolePolicyDocument"])
            ]
        )


def test_the_server_offers_its_fleet_port_behind_an_internal_load_balancer_to_the_member_accounts_only(
    privatelink_three,
):
    server = privatelink_three.server
    server.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer",
        {
            "Scheme": "internal",
            "Type": "network",
            "LoadBalancerAttributes": Match.array_with([{"Key": "load_balancing.cross_zone.enabled", "Value": "true"}]),
        },
    )
    balancer = next(iter(resources(server, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()))
    assert len(balancer["Properties"]["Subnets"]) == 2  # every zone of the server VPC
    server.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup", {"TargetType": "ip", "Protocol": "TCP", "Port": 9092}
    )
    server.has_resource_properties("AWS::ElasticLoadBalancingV2::Listener", {"Protocol": "TCP", "Port": 9092})
    server.has_resource_properties("AWS::EC2::VPCEndpointService", {"AcceptanceRequired": True})
    permissions = next(iter(resources(server, "AWS::EC2::VPCEndpointServicePermissions").values()))
    assert sorted(permissions["Properties"]["AllowedPrincipals"]) == sorted(
        f"arn:aws:iam::{c['account']}:root" for c in THREE_CLIENTS
    )
    # the notebook's Flower port admits the load balancer's group and nothing else
    ingress = [
        r["Properties"]
        for r in resources(server, "AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"].get("FromPort") == 9092
    ]
    assert len(ingress) == 1 and "LoadBalancerSecurityGroup" in json.dumps(ingress[0]["SourceSecurityGroupId"])


def test_each_member_dials_a_name_its_own_vpc_answers_with_its_own_endpoint(privatelink_three):
    client = privatelink_three.clients["ClientStack-insurer-a"]
    client.has_resource_properties(
        "AWS::EC2::VPCEndpoint",
        {"ServiceName": SERVICE_NAME, "VpcEndpointType": "Interface", "PrivateDnsEnabled": False},
    )
    client.has_resource_properties("AWS::Route53::HostedZone", {"Name": "superlink.fl-fraud.internal."})
    client.has_resource_properties("AWS::Route53::RecordSet", {"Name": "superlink.fl-fraud.internal.", "Type": "A"})
    allowed = [
        r["Properties"]["Domains"] for r in resources(client, "AWS::Route53Resolver::FirewallDomainList").values()
    ]
    assert any("superlink.fl-fraud.internal" in domains for domains in allowed)
    # the endpoint admits this account's training jobs on the Flower port, and they reach nothing of the server's VPC
    ingress = [r["Properties"] for r in resources(client, "AWS::EC2::SecurityGroupIngress").values()]
    fleet = [rule for rule in ingress if rule.get("FromPort") == 9092]
    assert len(fleet) == 1 and "TrainingSecurityGroup" in json.dumps(fleet[0]["SourceSecurityGroupId"])
    assert "10.0.0.0/16" not in json.dumps(resources(client, "AWS::EC2::SecurityGroup"))
    settings = json.loads(
        json.dumps(privatelink_three.client_stacks["ClientStack-insurer-a"].launch_settings.to_dict())
    )
    assert settings["superlink_dns_name"] == "superlink.fl-fraud.internal"


def test_a_member_names_the_federations_zones_in_its_own_account(privatelink_three, tmp_path):
    """The load balancer's zones are availability_zone_ids (published for doctor); a member whose account gives them
    other names lists its own, and its subnets go there (doctor then compares them by id on both sides)."""
    synth, clients = privatelink_three, OVERLAPPING_CLIENTS
    server = synth.server_stack.settings.to_dict()
    assert server["zone_ids"] == ["use1-az4", "use1-az6"] and server["network"] == "privatelink"
    for name, zones in (("insurer-a", ["us-east-1d", "us-east-1f"]), ("insurer-b", ["us-east-1a", "us-east-1b"])):
        subnets = resources(synth.clients[f"ClientStack-{name}"], "AWS::EC2::Subnet").values()
        assert sorted(subnet["Properties"]["AvailabilityZone"] for subnet in subnets) == zones
    with pytest.raises(ConfigError, match=r"clients\[0\]\.availability_zones: .* must list 2 different zones"):
        synthesize(tmp_path / "bad", clients=[dict(clients[0], availability_zones=["us-east-1d"]), *clients[1:]],
                   **PRIVATELINK)  # fmt: skip


def test_the_load_balancer_admits_the_endpoints_traffic_by_acceptance_not_by_inbound_rules(privatelink_three):
    """PrivateLink traffic is not checked against the load balancer's inbound rules ("off"): the members' addresses
    may overlap anything; the group has no inbound rule at all and reaches only the notebook's Flower port."""
    server = privatelink_three.server
    [balancer] = resources(server, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    assert balancer["Properties"]["EnforceSecurityGroupInboundRulesOnPrivateLinkTraffic"] == "off"
    [(group_id, group)] = [
        (lid, g) for lid, g in resources(server, "AWS::EC2::SecurityGroup").items() if "LoadBalancer" in lid
    ]
    assert "SecurityGroupIngress" not in group["Properties"]
    inbound = [r for r in resources(server, "AWS::EC2::SecurityGroupIngress").values()
               if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}]  # fmt: skip
    assert inbound == []
    outbound = [r["Properties"] for r in resources(server, "AWS::EC2::SecurityGroupEgress").values()
                if r["Properties"]["GroupId"] == {"Fn::GetAtt": [group_id, "GroupId"]}]  # fmt: skip
    assert len(outbound) == 1 and outbound[0]["FromPort"] == outbound[0]["ToPort"] == 9092
    assert "NotebookSecurityGroup" in json.dumps(outbound[0]["DestinationSecurityGroupId"])


def test_the_server_deploys_first_and_a_member_without_the_service_name_yet_has_no_endpoint(
    privatelink_three, tmp_path
):
    manifest = json.loads((privatelink_three.outdir / "manifest.json").read_text())
    assert "ServerStack" in manifest["artifacts"]["ClientStack-insurer-a"]["dependencies"]
    assert not [d for d in manifest["artifacts"]["ServerStack"].get("dependencies", []) if d.startswith("Client")]
    before = synthesize(tmp_path, clients=THREE_CLIENTS, **dict(PRIVATELINK, fleet_endpoint_service=""))
    client = before.clients["ClientStack-insurer-a"]
    client.resource_count_is("AWS::Route53::HostedZone", 0)
    assert "vpce-svc" not in json.dumps(client.to_json())


def test_cfn_lint_reports_no_errors_on_the_privatelink_templates(privatelink_three, privatelink_separate):
    """ServerStack and one member's stack of each deployment mode (the other members' are the same shape)."""
    templates = [
        privatelink_three.outdir / "ServerStack.template.json",
        privatelink_three.outdir / "ClientStack-insurer-a.template.json",
        privatelink_separate.server_synth.outdir / "ServerStack.template.json",
        privatelink_separate.client_synth.outdir / "ClientStack-insurer-a.template.json",
    ]
    assert all(template.is_file() for template in templates)
    done = subprocess.run(
        ["cfn-lint", "--non-zero-exit-code", "error", *map(str, templates)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.parametrize(
    "override, message",
    [
        ({"availability_zone_ids": ["use1-az4"]}, "availability_zone_ids: .* must list 2 different zone ids"),
        ({"availability_zone_ids": ["us-east-1a", "us-east-1b"]}, "availability_zone_ids"),
        ({"availability_zone_ids": ["usw2-az1", "usw2-az2"]}, "different zone ids of us-east-1 .e.g. use1-az1."),
        ({"superlink_dns_name": "s3.amazonaws.com"}, "superlink_dns_name: 's3.amazonaws.com' is not .* outside"),
        ({"superlink_dns_name": "ip-10-0-0-1.ec2.internal"}, "outside amazonaws.com, ec2.internal, compute.internal"),
        (
            {"fleet_endpoint_service": "com.amazonaws.vpce.eu-west-1.vpce-svc-0123456789abcdef0"},
            "fleet_endpoint_service: .* is not an endpoint service name of us-east-1",
        ),
        ({"superlink_dns_name": "Fleet"}, "superlink_dns_name: 'Fleet' is not a lower-case DNS name"),
        ({"network": "transit-gateway"}, "network: 'transit-gateway' is not one of peering, privatelink"),
    ],
)
def test_invalid_privatelink_settings_are_refused_naming_the_field(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        synthesize(tmp_path, clients=THREE_CLIENTS, **{**PRIVATELINK, **override})
