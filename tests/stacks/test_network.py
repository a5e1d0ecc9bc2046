"""PrivateNetwork and the security groups on it: private-only VPCs, flow logs, endpoints, and who may reach whom."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from tests.stacks.cdk_helpers import CLIENT_ACCOUNT, SERVER_ACCOUNT, THREE_CLIENTS, all_templates, resources

pytestmark = pytest.mark.slow


def test_vpcs_are_private_only_with_no_internet_or_nat_gateway(three):
    for template in all_templates(three):
        template.resource_count_is("AWS::EC2::InternetGateway", 0)
        template.resource_count_is("AWS::EC2::NatGateway", 0)
        template.resource_count_is("AWS::EC2::Subnet", 2)
        for subnet in resources(template, "AWS::EC2::Subnet").values():
            assert subnet["Properties"]["MapPublicIpOnLaunch"] is False
        for route in resources(template, "AWS::EC2::Route").values():
            assert route["Properties"]["DestinationCidrBlock"] != "0.0.0.0/0"
            assert "VpcPeeringConnectionId" in route["Properties"]


def test_every_vpc_has_flow_logs_of_all_traffic_into_an_encrypted_log_group(three):
    for template in all_templates(three):
        template.has_resource_properties(
            "AWS::EC2::FlowLog", {"TrafficType": "ALL", "LogDestinationType": "cloud-watch-logs"}
        )
        template.has_resource_properties("AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value(), "RetentionInDays": 365})


def test_endpoints_for_s3_sagemaker_sts_logs_ssm_and_ec2_lambda_on_the_server_side_and_kms_on_the_clients(three):
    for template in all_templates(three):
        endpoints = resources(template, "AWS::EC2::VPCEndpoint").values()
        gateways = [e for e in endpoints if e["Properties"].get("VpcEndpointType") == "Gateway"]
        interfaces = [e["Properties"] for e in endpoints if e["Properties"].get("VpcEndpointType") == "Interface"]
        assert len(gateways) == 1 and "s3" in json.dumps(gateways[0]["Properties"]["ServiceName"])
        names = {json.dumps(p["ServiceName"]).split(".")[-1].strip('"') for p in interfaces}
        # the server's notebook invokes the clients' launchers (lambda:InvokeFunction) from its private subnet; a
        # client's jobs sign with its identity key (and read the other members' public keys), its notebook reads it
        everywhere = {"api", "sts", "logs", "ssm", "ec2"}
        assert names == (everywhere | {"lambda"} if template is three.server else everywhere | {"kms"})
        assert all(p["PrivateDnsEnabled"] is True for p in interfaces)


def test_the_s3_endpoint_only_reaches_buckets_of_its_own_account(default):
    for template, account in ((default.server, SERVER_ACCOUNT), (default.clients["ClientStack"], CLIENT_ACCOUNT)):
        gateway = next(
            e
            for e in resources(template, "AWS::EC2::VPCEndpoint").values()
            if e["Properties"].get("VpcEndpointType") == "Gateway"
        )
        own, packages = gateway["Properties"]["PolicyDocument"]["Statement"]
        assert own["Action"] == "s3:*" and own["Resource"] == "*"
        assert own["Condition"] == {"StringEquals": {"s3:ResourceAccount": account}}
        assert (
            packages["Action"] == "s3:GetObject"
            and packages["Resource"] == "arn:aws:s3:::al2023-repos-us-east-1-de612dc2/*"
        )


def _ingress(template):
    inline = [
        rule
        for sg in resources(template, "AWS::EC2::SecurityGroup").values()
        for rule in sg["Properties"].get("SecurityGroupIngress", [])
    ]
    return inline + [r["Properties"] for r in resources(template, "AWS::EC2::SecurityGroupIngress").values()]


def test_the_servers_flower_port_admits_each_clients_training_security_group_not_its_cidr(three):
    notebook_sg = next(
        lid for lid in resources(three.server, "AWS::EC2::SecurityGroup") if lid.startswith("NotebookSecurityGroup")
    )
    assert "SecurityGroupIngress" not in resources(three.server, "AWS::EC2::SecurityGroup")[notebook_sg]["Properties"]
    flower = [r for lid, r in resources(three.server, "AWS::EC2::SecurityGroupIngress").items() if "FlowerPort" in lid]
    assert sorted(r["Properties"]["SourceSecurityGroupOwnerId"] for r in flower) == sorted(
        c["account"] for c in THREE_CLIENTS
    )
    for rule in flower:
        properties = rule["Properties"]
        assert properties["GroupId"] == {"Fn::GetAtt": [notebook_sg, "GroupId"]}
        assert (properties["FromPort"], properties["ToPort"], properties["IpProtocol"]) == (9092, 9092, "tcp")
        assert "CidrIp" not in properties
        # the client's group id, read from its published ids; referenced once CloudFormation accepted the peering
        assert "Fn::Select" in json.dumps(properties["SourceSecurityGroupId"])
        assert any(d.startswith("PeeringinsurerConnection") or "Connection" in d for d in rule["DependsOn"])
    assert all(r.get("CidrIp") != "0.0.0.0/0" for r in _ingress(three.server))


def test_a_training_job_reaches_only_the_servers_flower_port_and_its_own_endpoints(client):
    groups = resources(client, "AWS::EC2::SecurityGroup")
    training = next(lid for lid in groups if lid.startswith("TrainingSecurityGroup"))
    inline = groups[training]["Properties"]["SecurityGroupEgress"]
    assert inline == [
        {
            "CidrIp": "10.0.0.0/16",
            "Description": "Flower Fleet API on the server (TLS)",
            "FromPort": 9092,
            "IpProtocol": "tcp",
            "ToPort": 9092,
        }
    ]
    egress = [
        r["Properties"]
        for r in resources(client, "AWS::EC2::SecurityGroupEgress").values()
        if r["Properties"]["GroupId"]["Fn::GetAtt"][0] == training
    ]
    destinations = sorted(
        ("endpoints" if "DestinationSecurityGroupId" in r else "s3-prefix-list", r["FromPort"]) for r in egress
    )
    assert destinations == [("endpoints", 443), ("s3-prefix-list", 443)]
    assert not [r for r in _ingress(client) if r.get("GroupId", {}).get("Fn::GetAtt", [None])[0] == training]


def test_interface_endpoints_admit_https_only_from_the_vpcs_own_security_groups(client):
    for rule in _ingress(client):
        if "SourceSecurityGroupId" in rule:
            assert rule["FromPort"] == rule["ToPort"] == 443
        assert rule.get("CidrIp") not in ("0.0.0.0/0",)
