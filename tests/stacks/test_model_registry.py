"""ServerStack's model registry: the group each finished run becomes a version of, its name in the published
settings, and the notebook's reach into it: new versions of this group only, the data key only through SageMaker."""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match

from stacks.server_stack import MODEL_PACKAGE_GROUP
from tests.stacks.cdk_helpers import default_context, resources, statements

pytestmark = pytest.mark.slow
VERSIONS = f"arn:aws:sagemaker:us-east-1:111111111111:model-package/{MODEL_PACKAGE_GROUP}/*"


def _group_id(template) -> str:
    [logical_id] = resources(template, "AWS::SageMaker::ModelPackageGroup")
    return logical_id


def _actions(statement: dict) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def test_the_server_keeps_a_model_package_group_and_publishes_its_name_image_and_key(default):
    template = default.server
    template.has_resource(
        "AWS::SageMaker::ModelPackageGroup",
        {"Properties": {"ModelPackageGroupName": "fl-fraud-global-model"}, "DeletionPolicy": "Retain"},
    )
    [parameter] = [
        p["Properties"]["Value"]
        for p in resources(template, "AWS::SSM::Parameter").values()
        if p["Properties"]["Name"] == "/fl-fraud/server/settings"
    ]
    published = json.dumps(parameter)
    image = default_context()["federation:inference_image"]
    assert f'\\"model_package_group\\":\\"{MODEL_PACKAGE_GROUP}\\"' in published
    assert f'\\"inference_image\\":\\"{image}\\"' in published
    [key] = resources(template, "AWS::KMS::Key")
    assert '\\"data_key_arn\\":\\"' in published and {"Fn::GetAtt": [key, "Arn"]} in parameter["Fn::Join"][1]


def test_the_notebook_may_add_versions_to_this_group_and_do_nothing_else_in_the_registry(default):
    template = default.server
    template.has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {
            "Roles": Match.array_with([{"Ref": Match.string_like_regexp("NotebookRole")}]),
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        {
                            "Sid": "RegisterEachRunInTheModelRegistry",
                            "Effect": "Allow",
                            "Action": "sagemaker:CreateModelPackage",
                            "Resource": [{"Fn::GetAtt": [_group_id(template), "ModelPackageGroupArn"]}, VERSIONS],
                        }
                    ]
                )
            },
        },
    )
    registry = [
        action
        for statement in statements(template)
        for action in _actions(statement)
        if "ModelPackage" in action or action in ("*", "sagemaker:*")
    ]
    assert registry == ["sagemaker:CreateModelPackage"]  # approving a version is a person's call, never the notebook's


def _notebook_statements(template) -> list[dict]:
    """The statements of the notebook's own policy (the one that registers runs)."""
    [policy] = [
        p["Properties"]["PolicyDocument"]["Statement"]
        for p in resources(template, "AWS::IAM::ManagedPolicy").values()
        if any(
            s.get("Sid") == "RegisterEachRunInTheModelRegistry" for s in p["Properties"]["PolicyDocument"]["Statement"]
        )
    ]
    return policy


def test_the_notebook_lets_only_sagemaker_use_the_data_key_for_the_versions(default):
    template = default.server
    [key] = resources(template, "AWS::KMS::Key")
    through_sagemaker = {"kms:ViaService": "sagemaker.us-east-1.amazonaws.com"}
    granting = [s for s in _notebook_statements(template) if {"kms:CreateGrant", "kms:DescribeKey"} & set(_actions(s))]
    assert granting == [
        {
            "Action": "kms:CreateGrant",
            "Condition": {"StringEquals": through_sagemaker, "Bool": {"kms:GrantIsForAWSResource": "true"}},
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [key, "Arn"]},
            "Sid": "SageMakerEncryptsTheVersionsWithTheDataKey",
        },
        {
            "Action": "kms:DescribeKey",
            "Condition": {"StringEquals": through_sagemaker},
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [key, "Arn"]},
            "Sid": "SageMakerDescribesTheDataKey",
        },
    ]
    assert sum("kms:CreateGrant" in _actions(s) for s in statements(template)) == 1  # no other role may grant
