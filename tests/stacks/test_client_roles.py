"""A client account's roles: FL-kickoff-client-job for the server, and the training jobs' execution role."""

from __future__ import annotations

import json

import pytest

from tests.stacks.cdk_helpers import CLIENT_ACCOUNT, SERVER_ACCOUNT, all_templates, resources

pytestmark = pytest.mark.slow


def _kickoff(template):
    role = next(
        r
        for r in resources(template, "AWS::IAM::Role").values()
        if r["Properties"].get("RoleName") == "FL-kickoff-client-job"
    )
    policy = next(
        p
        for p in resources(template, "AWS::IAM::ManagedPolicy").values()
        if p["Properties"].get("ManagedPolicyName") == "FL-ask-the-launcher"
    )
    return role["Properties"], {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_kickoff_role_trusts_only_the_server_notebook_role_with_the_external_id(client):
    role, _ = _kickoff(client)
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert len(trust) == 1
    assert trust[0]["Principal"] == {"AWS": f"arn:aws:iam::{SERVER_ACCOUNT}:root"}
    assert trust[0]["Condition"] == {
        "StringEquals": {"sts:ExternalId": "fl-fraud-client-a-change-me"},
        "ArnEquals": {"aws:PrincipalArn": f"arn:aws:iam::{SERVER_ACCOUNT}:role/FL-server-notebook"},
    }


def test_the_kickoff_role_may_only_ask_the_launcher_and_read_this_clients_settings_and_keys(client):
    role, policy = _kickoff(client)
    assert set(policy) == {"AskTheLauncher", "ReadThisClientsSettingsAndPublicKeys"}
    launcher = next(
        lid for lid, f in resources(client, "AWS::Lambda::Function").items() if lid.startswith("LauncherFunction")
    )
    assert policy["AskTheLauncher"]["Action"] == "lambda:InvokeFunction"
    assert policy["AskTheLauncher"]["Resource"] == {"Fn::GetAtt": [launcher, "Arn"]}
    reading = policy["ReadThisClientsSettingsAndPublicKeys"]
    assert reading["Action"] == "ssm:GetParameter"
    assert reading["Resource"] == f"arn:aws:ssm:us-east-1:{CLIENT_ACCOUNT}:parameter/fl-fraud/client/client-a/*"
    attached = [
        p
        for p in resources(client, "AWS::IAM::ManagedPolicy").values()
        if {
            "Ref": next(
                lid
                for lid, r in resources(client, "AWS::IAM::Role").items()
                if r["Properties"].get("RoleName") == "FL-kickoff-client-job"
            )
        }
        in p["Properties"]["Roles"]
    ]
    actions = json.dumps([p["Properties"]["PolicyDocument"] for p in attached])
    assert "sagemaker:" not in actions and "iam:PassRole" not in actions  # the server writes no job request
    assert "ManagedPolicyArns" not in role and "Policies" not in role


def test_the_execution_role_is_least_privilege_and_never_sagemaker_full_access(three):
    for template in all_templates(three):
        assert "AmazonSageMakerFullAccess" not in json.dumps(template.to_json())
    template = three.clients["ClientStack-insurer-a"]
    role_id = next(lid for lid in resources(template, "AWS::IAM::Role") if lid.startswith("TrainingExecutionRole"))
    role = resources(template, "AWS::IAM::Role")[role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    trust = role["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": "222222222222"}
    assert trust["Condition"]["ArnLike"]["aws:SourceArn"].endswith(":222222222222:training-job/*")
    policies = [
        p["Properties"]
        for p in resources(template, "AWS::IAM::ManagedPolicy").values()
        if p["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    assert len(policies) == 2  # the job's own grants; the other members' keys (it grows with them: its own policy)
    by_sid = {s["Sid"]: s for policy in policies for s in policy["PolicyDocument"]["Statement"]}
    assert set(by_sid) == {
        "ReadCode",
        "ReadData",
        "ListData",
        "WriteArtifacts",
        "UseDataKey",
        "GrantDataKeyToTheVolume",
        "PublishSuperNodePublicKey",
        "CreateNetworkInterfacesInTheseSubnetsWithThisGroup",
        "NetworkInterfacesOfThisVpcOnly",
        "DescribeTheNetwork",
        "Logs",
        "Metrics",
        # the member's identity (tests/stacks/test_identity.py): its key, its pins, insurer-b's key (hospital-c's
        # fingerprint is in the config: nothing to read)
        "SignWithThisMembersIdentityKey",
        "ReadThisMembersPins",
        "ReadTheOtherMembersPublicKeys",
    }
    assert role["RoleName"] == "FL-training-job"  # the other members' identity keys admit it by this name
    assert sorted(by_sid["UseDataKey"]["Action"]) == [
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Encrypt",
        "kms:GenerateDataKey",
    ]
    assert by_sid["GrantDataKeyToTheVolume"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert sorted(by_sid["PublishSuperNodePublicKey"]["Action"]) == ["ssm:DeleteParameter", "ssm:PutParameter"]
    assert by_sid["PublishSuperNodePublicKey"]["Resource"].endswith(
        ":parameter/fl-fraud/client/insurer-a/supernode-keys/fl-client*"
    )
    assert by_sid["ReadData"]["Resource"]["Fn::Join"][1][-1] == "/data_prep/*"
    assert by_sid["WriteArtifacts"]["Resource"]["Fn::Join"][1][-1] == "/client_artifact/*"
    assert by_sid["Metrics"]["Condition"] == {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}}
    for statement in by_sid.values():
        assert not any(
            action.endswith(":*")
            for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        )
