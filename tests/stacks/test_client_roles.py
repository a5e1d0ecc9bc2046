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
        if p["Properties"].get("ManagedPolicyName") == "FL-sagemaker-actions"
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


def test_kickoff_policy_has_the_reference_permissions_scoped(client):
    _, policy = _kickoff(client)
    jobs = f"arn:aws:sagemaker:us-east-1:{CLIENT_ACCOUNT}:training-job/fl-client*"
    assert policy["StartJobsInThePrivateSubnetsOnly"]["Action"] == "sagemaker:CreateTrainingJob"
    assert policy["StartJobsInThePrivateSubnetsOnly"]["Resource"] == jobs
    condition = policy["StartJobsInThePrivateSubnetsOnly"]["Condition"]
    conditions = condition["ForAllValues:StringEquals"]
    assert len(conditions["sagemaker:VpcSubnets"]) == 2 and len(conditions["sagemaker:VpcSecurityGroupIds"]) == 1
    assert conditions["sagemaker:InstanceTypes"] == ["ml.m5.large"]
    assert condition["NumericLessThanEquals"] == {"sagemaker:MaxRuntimeInSeconds": 7200}
    data_key = {"Fn::GetAtt": [next(iter(resources(client, "AWS::KMS::Key"))), "Arn"]}
    assert condition["ArnEquals"] == {"sagemaker:VolumeKmsKey": data_key, "sagemaker:OutputKmsKey": data_key}
    assert set(condition["Null"]) == {
        "sagemaker:VpcSubnets",
        "sagemaker:VpcSecurityGroupIds",
        "sagemaker:InstanceTypes",
        "sagemaker:VolumeKmsKey",
        "sagemaker:OutputKmsKey",
    }
    assert sorted(policy["WatchAndStopJobs"]["Action"]) == [
        "sagemaker:DescribeTrainingJob",
        "sagemaker:StopTrainingJob",
        "sagemaker:UpdateTrainingJob",
    ]
    assert policy["WatchAndStopJobs"]["Resource"] == jobs
    assert sorted(policy["InspectNetwork"]["Action"]) == [
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
    ]
    assert policy["ReadExecutionRole"]["Action"] == "iam:GetRole"
    passing = policy["PassExecutionRoleToSageMakerOnly"]
    assert passing["Action"] == "iam:PassRole"
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    assert passing["Resource"] == {
        "Fn::GetAtt": [
            next(lid for lid in resources(client, "AWS::IAM::Role") if lid.startswith("TrainingExecutionRole")),
            "Arn",
        ]
    }
    reading = policy["ReadThisClientsSettingsAndPublicKeys"]
    assert reading["Action"] == ["ssm:GetParameter", "ssm:GetParameters"]
    assert (
        reading["Resource"] == f"arn:aws:ssm:us-east-1:{CLIENT_ACCOUNT}:parameter/fl-fraud/client/client-a/*"
    )  # settings and job keys
    assert set(policy) == {
        "StartJobsInThePrivateSubnetsOnly",
        "WatchAndStopJobs",
        "InspectNetwork",
        "ReadExecutionRole",
        "PassExecutionRoleToSageMakerOnly",
        "ReadThisClientsSettingsAndPublicKeys",
    }
    assert not any(
        action.startswith(("s3:", "kms:"))
        for s in policy.values()
        for action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )


def test_the_execution_role_is_least_privilege_and_never_sagemaker_full_access(three):
    for template in all_templates(three):
        assert "AmazonSageMakerFullAccess" not in json.dumps(template.to_json())
    template = three.clients["ClientStack-insurer-a"]
    role_id = next(lid for lid in resources(template, "AWS::IAM::Role") if lid.startswith("TrainingExecutionRole"))
    role = resources(template, "AWS::IAM::Role")[role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    policy = next(
        p["Properties"]
        for p in resources(template, "AWS::IAM::ManagedPolicy").values()
        if p["Properties"]["Roles"] == [{"Ref": role_id}]
    )
    by_sid = {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}
    assert set(by_sid) == {
        "ReadCode",
        "ReadData",
        "ListData",
        "WriteArtifacts",
        "UseDataKey",
        "GrantDataKeyToTheVolume",
        "PublishSuperNodePublicKey",
        "VpcNetworkInterfaces",
        "Logs",
        "Metrics",
    }
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
    for statement in policy["PolicyDocument"]["Statement"]:
        assert not any(
            action.endswith(":*")
            for action in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        )
