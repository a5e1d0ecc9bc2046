"""Every role of the project: customer-managed policies only, the server notebook's reach, the deployment
functions' logs."""

from __future__ import annotations

import json

import pytest

from tests.stacks.cdk_helpers import THREE_CLIENTS, all_templates, resources, statements

pytestmark = pytest.mark.slow


def test_the_server_notebook_role_may_assume_each_clients_kickoff_role_and_nothing_broader(three):
    role = next(
        r
        for r in resources(three.server, "AWS::IAM::Role").values()
        if r["Properties"].get("RoleName") == "FL-server-notebook"
    )
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "sagemaker.amazonaws.com"
    }
    policy = next(
        p["Properties"]
        for p in resources(three.server, "AWS::IAM::ManagedPolicy").values()
        if p["Properties"].get("ManagedPolicyName") == "FL-allow-kickoff-client-job"
    )
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRole"
    assert sorted(statement["Resource"]) == sorted(
        f"arn:aws:iam::{c['account']}:role/FL-kickoff-client-job" for c in THREE_CLIENTS
    )
    assume = [s for s in statements(three.server) if "sts:AssumeRole" in json.dumps(s["Action"]) and s != statement]
    assert len(assume) == 1
    assert all("FL-peering-routes" in json.dumps(s["Resource"]) for s in assume)


def test_no_inline_policies_on_the_projects_own_roles(three):
    for template in all_templates(three):
        for lid in resources(template, "AWS::IAM::Policy"):
            assert lid.startswith(("CustomCDKBucketDeployment", "NetworkFlowLogRole")), lid


def test_deployment_time_functions_log_to_a_log_group_the_stack_owns(default):
    for template in all_templates(default):
        [(group_id, group)] = [
            (lid, g)
            for lid, g in resources(template, "AWS::Logs::LogGroup").items()
            if lid.startswith("DeploymentFunctionLogs")
        ]
        assert group["DeletionPolicy"] == "Retain" and "KmsKeyId" in group["Properties"]  # retain_data by default
        functions = resources(template, "AWS::Lambda::Function")
        logged = {
            lid
            for lid, f in functions.items()
            if f["Properties"].get("LoggingConfig", {}).get("LogGroup") == {"Ref": group_id}
        }
        # BucketDeployment's and AwsCustomResource's Lambdas; CDK's own providers (bucket auto-delete,
        # default security group) take no log group
        providers = {lid for lid in functions if "CustomResourceProvider" in lid}
        # a client's launcher logs to a log group of its own (it runs for the federation, not for deployments)
        launchers = {lid for lid in functions if lid.startswith("LauncherFunction")}
        assert len(launchers) == (0 if template is default.server else 1)
        assert len(logged) == 2 and set(functions) == logged | providers | launchers
