"""The perimeter, least privilege and data safety, in both deployment modes, for one client and for three:
endpoint policies, DNS firewall, network-interface scoping, service-role trust, cross-account trust, retention."""

from __future__ import annotations

import json
import re

import pytest

from tests.stacks.cdk_helpers import DEPLOYMENTS, SERVER_ACCOUNT, Parties, resources, statements

pytestmark = pytest.mark.slow

ENDPOINT_NAMES = {
    "api": "api.sagemaker",
    "sts": "sts",
    "logs": "logs",
    "ssm": "ssm",
    "ec2": "ec2",
    "lambda": "lambda",
    "kms": "kms",
    "elasticloadbalancing": "elasticloadbalancing",
}


def _interface_endpoints(template) -> dict[str, dict]:
    """Interface endpoints to AWS services by service suffix (ssm, sts, logs, api, lambda); not a member's endpoint
    to the federation's Fleet service (privatelink), which carries only the Flower port to the server."""
    found = {}
    for endpoint in resources(template, "AWS::EC2::VPCEndpoint").values():
        properties = endpoint["Properties"]
        if properties.get("VpcEndpointType") == "Interface" and "vpce-svc-" not in json.dumps(properties):
            found[json.dumps(properties["ServiceName"]).split(".")[-1].strip('"')] = properties
    return found


def _client_cross_account_calls(service: str, cross: list[dict], account: str, peers: list[str]) -> None:
    """A client VPC lets no other account through its endpoints; in one organisation its training jobs, and nothing
    else of the account, may read the other members' identity public keys through its KMS endpoint."""
    if service != "kms" or not peers:
        assert cross == [], f"a client VPC lets no other account through its {service} endpoint"
        return
    [statement] = cross
    assert statement["Condition"] == {"ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{account}:role/FL-training-job"}}
    assert statement["Action"] == "kms:GetPublicKey" and statement["Principal"] == {"AWS": "*"}
    keys = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    assert sorted(keys) == sorted(f"arn:aws:kms:us-east-1:{peer}:key/*" for peer in peers)


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_interface_endpoints_admit_this_accounts_principals_and_only_the_declared_cross_account_calls(
    deployment, request
):
    synth = request.getfixturevalue(deployment)
    separate = isinstance(synth, Parties)
    stacks = synth.client_synth.client_stacks if separate else synth.client_stacks
    # one organisation: the members without a configured fingerprint, whose keys the others' jobs read
    read = (
        []
        if separate
        else [c.account for c in next(iter(stacks.values())).config.clients if not c.identity_fingerprint]
    )
    kickoff_roles = {}
    for template, account in synth.accounts():
        for service, endpoint in _interface_endpoints(template).items():
            own, *cross = endpoint["PolicyDocument"]["Statement"]
            assert own["Condition"]["StringEquals"] == {"aws:PrincipalAccount": account}, service
            if service != "sts":  # STS calls carry no resource of this account
                assert own["Condition"]["StringEqualsIfExists"] == {"aws:ResourceAccount": account}, service
            if account != SERVER_ACCOUNT:
                _client_cross_account_calls(service, cross, account, [other for other in read if other != account])
                continue
            assert (service in ("ssm", "lambda")) == bool(cross), service
            for statement in cross:  # one statement for every client: it grows by an account id per member
                condition = statement["Condition"]
                assert condition["ArnLike"] == {"aws:PrincipalArn": "arn:aws:iam::*:role/FL-kickoff-client-job"}
                accounts = condition["StringEquals"]["aws:PrincipalAccount"]
                accounts = accounts if isinstance(accounts, list) else [accounts]
                assert (
                    condition["StringEquals"]["aws:ResourceAccount"]
                    == condition["StringEquals"]["aws:PrincipalAccount"]
                )
                action = {"ssm": "ssm:GetParameter", "lambda": "lambda:InvokeFunction"}[service]
                assert statement["Action"] == action and statement["Principal"] == {"AWS": "*"}
                assert (
                    statement["Resource"]
                    == {
                        "ssm": "arn:aws:ssm:us-east-1:*:parameter/fl-fraud/client/*",
                        "lambda": "arn:aws:lambda:us-east-1:*:function:FL-job-launcher",
                    }[service]
                )
                kickoff_roles.setdefault(service, set()).update(accounts)
    [assume] = [s for s in statements(synth.server) if s.get("Sid") == "AssumeEachClientsKickoffRole"]
    roles = assume["Resource"] if isinstance(assume["Resource"], list) else [assume["Resource"]]
    assert kickoff_roles["ssm"] == kickoff_roles["lambda"] == {role.split(":")[4] for role in roles}


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_every_vpc_resolves_only_the_aws_names_it_needs_blocks_the_rest_and_logs_every_query(deployment, request):
    synth = request.getfixturevalue(deployment)
    for template, account in synth.accounts():
        [vpc] = resources(template, "AWS::EC2::VPC")
        [association] = resources(template, "AWS::Route53Resolver::FirewallRuleGroupAssociation").values()
        assert association["Properties"]["VpcId"] == {"Ref": vpc}
        assert association["Properties"]["MutationProtection"] == "DISABLED"  # or cdk destroy could not remove it
        lists = {
            lid: r["Properties"]["Domains"]
            for lid, r in resources(template, "AWS::Route53Resolver::FirewallDomainList").items()
        }
        [group] = resources(template, "AWS::Route53Resolver::FirewallRuleGroup").values()
        allow, block = sorted(group["Properties"]["FirewallRules"], key=lambda rule: rule["Priority"])
        allowed = lists[allow["FirewallDomainListId"]["Fn::GetAtt"][0]]
        assert allow["Action"] == "ALLOW" and block["Action"] == "BLOCK" and block["BlockResponse"] == "NXDOMAIN"
        assert lists[block["FirewallDomainListId"]["Fn::GetAtt"][0]] == ["*"]
        endpoints = {f"{ENDPOINT_NAMES[s]}.us-east-1.amazonaws.com" for s in _interface_endpoints(template)}
        assert endpoints <= set(allowed) and "s3.us-east-1.amazonaws.com" in allowed
        assert ("lambda.us-east-1.amazonaws.com" in allowed) == (account == SERVER_ACCOUNT)
        assert not {"*", "*.amazonaws.com", "*.com"} & set(allowed)
        [logging] = resources(template, "AWS::Route53Resolver::ResolverQueryLoggingConfig").values()
        [logged] = resources(template, "AWS::Route53Resolver::ResolverQueryLoggingConfigAssociation").values()
        assert logged["Properties"]["ResourceId"] == {"Ref": vpc}
        log_group = next(lid for lid in resources(template, "AWS::Logs::LogGroup") if "QueryLogs" in lid)
        assert {"Ref": log_group} in logging["Properties"]["DestinationArn"]["Fn::Join"][1]
        assert "KmsKeyId" in resources(template, "AWS::Logs::LogGroup")[log_group]["Properties"]


NETWORK_INTERFACE_WRITES = {
    "ec2:CreateNetworkInterface",
    "ec2:DeleteNetworkInterface",
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterfacePermission",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
}


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_network_interface_writes_hold_only_in_this_vpc_its_subnets_and_its_group(deployment, request):
    synth = request.getfixturevalue(deployment)
    scoped = 0
    for template in (synth.server, *synth.clients.values()):
        for statement in statements(template):
            actions = {statement["Action"]} if isinstance(statement["Action"], str) else set(statement["Action"])
            if not actions & NETWORK_INTERFACE_WRITES:
                continue
            listed = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            assert "*" not in listed, statement
            text = json.dumps(listed)
            if "ec2:CreateNetworkInterface" in actions:  # pinned by the subnets and the group it names
                assert actions == {"ec2:CreateNetworkInterface"}
                assert ":subnet/" in text and ":security-group/" in text and text.count(":subnet/") == 2
            else:  # changing or deleting: only interfaces of this VPC
                assert "ec2:Vpc" in statement["Condition"]["ArnEquals"], statement
                scoped += 1
    assert scoped == 2 * len(synth.clients)  # the training execution role and the launcher of each client


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_every_role_a_service_assumes_names_this_account_as_the_source(deployment, request):
    synth = request.getfixturevalue(deployment)
    for template, account in synth.accounts():
        for lid, role in resources(template, "AWS::IAM::Role").items():
            for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
                if "Service" not in statement["Principal"]:
                    continue
                conditions = statement["Condition"]
                source = conditions.get("StringEquals", conditions.get("StringEqualsIfExists", {}))
                assert source.get("aws:SourceAccount") == account, lid


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_another_account_may_assume_only_the_roles_it_needs_each_from_one_principal_arn(deployment, request):
    synth = request.getfixturevalue(deployment)
    peering_roles = not isinstance(synth, Parties) and not deployment.startswith("privatelink")
    for template in synth.clients.values():
        trusted = {}
        for role in resources(template, "AWS::IAM::Role").values():
            for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
                if "AWS" in statement["Principal"]:
                    trusted[role["Properties"]["RoleName"]] = statement["Condition"]["ArnEquals"]["aws:PrincipalArn"]
        expected = {"FL-kickoff-client-job": f"arn:aws:iam::{SERVER_ACCOUNT}:role/FL-server-notebook"}
        if peering_roles:  # one organisation, peering: the server's deployment peers and routes
            expected["FL-peering-accepter"] = (
                f"arn:aws:iam::{SERVER_ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{SERVER_ACCOUNT}-us-east-1"
            )
            expected["FL-peering-routes"] = f"arn:aws:iam::{SERVER_ACCOUNT}:role/FL-peering-operator"
        assert trusted == expected
        kickoff = next(
            p["Properties"]["PolicyDocument"]["Statement"]
            for p in resources(template, "AWS::IAM::ManagedPolicy").values()
            if p["Properties"].get("ManagedPolicyName") == "FL-ask-the-launcher"
        )
        assert sorted(s["Action"] for s in kickoff) == ["lambda:InvokeFunction", "ssm:GetParameter"]


@pytest.mark.parametrize("deployment", ["separate_one", "separate_three"])
def test_claims_data_and_keys_are_retained_by_default_in_separate_organisations_too(deployment, request):
    synth = request.getfixturevalue(deployment)
    for template in (synth.server, *synth.clients.values()):
        for bucket in resources(template, "AWS::S3::Bucket").values():
            assert bucket["DeletionPolicy"] == "Retain"
        for key in resources(template, "AWS::KMS::Key").values():
            assert key["DeletionPolicy"] == "Retain" and key["Properties"]["PendingWindowInDays"] == 30


# EC2's characters for a security group's description, and for a rule's (a rule naming a group or a prefix list
# also refuses "&"): anything else fails the deploy, not the synth (an apostrophe did, in a rule's description)
GROUP_DESCRIPTION = re.compile(r"^[a-zA-Z0-9 ._\-:/()#,@\[\]+=&;{}!$*]{0,255}$")
RULE_DESCRIPTION = re.compile(r"^[a-zA-Z0-9 ._\-:/()#,@\[\]+=;{}!$*]{0,255}$")


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_every_security_group_and_rule_description_is_one_ec2_accepts(deployment, request):
    synth = request.getfixturevalue(deployment)
    for template, _account in synth.accounts():
        for lid, group in resources(template, "AWS::EC2::SecurityGroup").items():
            properties = group["Properties"]
            assert GROUP_DESCRIPTION.match(properties["GroupDescription"]), lid
            for rule in properties.get("SecurityGroupIngress", []) + properties.get("SecurityGroupEgress", []):
                assert RULE_DESCRIPTION.match(rule.get("Description", "")), (lid, rule.get("Description"))
        for kind in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"):
            for lid, rule in resources(template, kind).items():
                assert RULE_DESCRIPTION.match(rule["Properties"].get("Description", "")), (lid, rule["Properties"])
