"""One organisation: the CloudFormation execution policy and the permissions boundary to bootstrap an account with,
instead of ``AdministratorAccess``.

When one owner deploys every stack from one place, each account is bootstrapped to trust that place, and
CloudFormation acts in it with the execution policies named at bootstrap. This module writes two policies for an
account from the templates ``cdk synth`` made for it:

- ``execution-policy.json``: the actions CloudFormation needs for exactly the resource types of that account's
  stacks (an unknown type is an error: a new construct must be added here, reviewed). IAM only on roles and
  policies named ``FL-*`` or after the federation's stacks, never the CDK bootstrap's own roles, and every role it
  creates or changes must carry the boundary below; the boundary itself cannot be changed or removed with it.
- ``permissions-boundary.json``: the most any role of the stacks may ever do: the actions their own policies
  grant, nothing of IAM, Organizations or account settings. A stack that grants a role more than that fails.

    npx cdk synth -o cdk.out
    python -m stacks.bootstrap_policy cdk.out 222222222222 bootstrap/222222222222/

What this does not change (the README says it too): whoever holds the trust can redeploy the federation's stacks
in that account with other contents, so remove the trust once deployed (``cdk bootstrap --untrust``), and prefer
separate organisations, where no account trusts another to deploy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fl_runtime.errors import ConfigError
from fl_runtime.files import atomic_path

BOUNDARY_NAME = "FL-deployment-boundary"
EXECUTION_POLICY_NAME = "FL-cloudformation-execution"
STACK_PREFIXES = ("ClientStack", "ServerStack", "FL-")  # the names CDK gives roles and policies of these stacks
LAMBDA_BASIC = "service-role/AWSLambdaBasicExecutionRole"  # CDK's BucketDeployment handler gets it (IAM4, reasoned)
LAMBDA_BASIC_ACTIONS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]

_EC2_TAGS = ["ec2:CreateTags", "ec2:DeleteTags", "ec2:Describe*"]
_GROUP_RULES = ["ec2:AuthorizeSecurityGroup*", "ec2:RevokeSecurityGroup*", "ec2:UpdateSecurityGroupRuleDescriptions*"]
_LOGS = [
    "logs:CreateLogGroup",
    "logs:DeleteLogGroup",
    "logs:PutRetentionPolicy",
    "logs:DeleteRetentionPolicy",
    "logs:AssociateKmsKey",
    "logs:DisassociateKmsKey",
    "logs:TagResource",
    "logs:UntagResource",
    "logs:DescribeLogGroups",
    "logs:ListTagsForResource",
]
_CUSTOM = ["lambda:InvokeFunction"]  # CloudFormation invokes a custom resource's provider function
RESOURCE_ACTIONS: dict[str, list[str]] = {
    "AWS::CDK::Metadata": [],
    "AWS::EC2::VPC": ["ec2:CreateVpc", "ec2:DeleteVpc", "ec2:ModifyVpcAttribute", *_EC2_TAGS],
    "AWS::EC2::Subnet": ["ec2:CreateSubnet", "ec2:DeleteSubnet", "ec2:ModifySubnetAttribute", *_EC2_TAGS],
    "AWS::EC2::RouteTable": ["ec2:CreateRouteTable", "ec2:DeleteRouteTable", *_EC2_TAGS],
    "AWS::EC2::SubnetRouteTableAssociation": [
        "ec2:AssociateRouteTable",
        "ec2:DisassociateRouteTable",
        "ec2:ReplaceRouteTableAssociation",
    ],
    "AWS::EC2::Route": ["ec2:CreateRoute", "ec2:DeleteRoute", "ec2:ReplaceRoute", "ec2:DescribeRouteTables"],
    "AWS::EC2::SecurityGroup": ["ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup", *_GROUP_RULES, *_EC2_TAGS],
    "AWS::EC2::SecurityGroupIngress": _GROUP_RULES,
    "AWS::EC2::SecurityGroupEgress": _GROUP_RULES,
    "AWS::EC2::VPCEndpoint": [
        "ec2:CreateVpcEndpoint",
        "ec2:DeleteVpcEndpoints",
        "ec2:ModifyVpcEndpoint",
        "route53:AssociateVPCWithHostedZone",
        "route53:DisassociateVPCFromHostedZone",
        *_EC2_TAGS,
    ],
    "AWS::EC2::FlowLog": [
        "ec2:CreateFlowLogs",
        "ec2:DeleteFlowLogs",
        "logs:CreateLogDelivery",
        "logs:DeleteLogDelivery",
        *_EC2_TAGS,
    ],
    "AWS::EC2::VPCPeeringConnection": [
        "ec2:CreateVpcPeeringConnection",
        "ec2:DeleteVpcPeeringConnection",
        "ec2:AcceptVpcPeeringConnection",
        "sts:AssumeRole",
        *_EC2_TAGS,
    ],
    "AWS::IAM::Role": [],  # the IAM statements below
    "AWS::IAM::ManagedPolicy": [],
    "AWS::IAM::Policy": [],
    "AWS::KMS::Key": [
        "kms:CreateKey",
        "kms:PutKeyPolicy",
        "kms:GetKeyPolicy",
        "kms:EnableKeyRotation",
        "kms:GetKeyRotationStatus",
        "kms:DescribeKey",
        "kms:UpdateKeyDescription",
        "kms:ScheduleKeyDeletion",
        "kms:TagResource",
        "kms:UntagResource",
        "kms:ListResourceTags",
    ],
    "AWS::Lambda::Function": [
        "lambda:CreateFunction",
        "lambda:DeleteFunction",
        "lambda:GetFunction",
        "lambda:GetFunctionConfiguration",
        "lambda:UpdateFunctionCode",
        "lambda:UpdateFunctionConfiguration",
        "lambda:TagResource",
        "lambda:UntagResource",
        "lambda:ListTags",
        "ec2:CreateNetworkInterface",
        "ec2:DeleteNetworkInterface",
        "ec2:Describe*",
        "kms:Encrypt",  # the launcher's environment is encrypted with the data key:
        "kms:CreateGrant",  # Lambda decrypts it through a grant made at deployment
    ],
    "AWS::Lambda::LayerVersion": [
        "lambda:PublishLayerVersion",
        "lambda:DeleteLayerVersion",
        "lambda:GetLayerVersion",
    ],
    "AWS::Logs::LogGroup": _LOGS,
    "AWS::Logs::ResourcePolicy": [
        "logs:PutResourcePolicy",
        "logs:DeleteResourcePolicy",
        "logs:DescribeResourcePolicies",
    ],
    "AWS::Route53Resolver::FirewallDomainList": [
        "route53resolver:*FirewallDomain*",
        "route53resolver:TagResource",
        "route53resolver:UntagResource",
    ],
    "AWS::Route53Resolver::FirewallRuleGroup": [
        "route53resolver:*FirewallRule*",
        "route53resolver:TagResource",
        "route53resolver:UntagResource",
    ],
    "AWS::Route53Resolver::FirewallRuleGroupAssociation": ["route53resolver:*FirewallRuleGroup*"],
    "AWS::Route53Resolver::ResolverQueryLoggingConfig": [
        "route53resolver:*ResolverQueryLogConfig*",
        "logs:CreateLogDelivery",
        "logs:GetLogDelivery",
        "logs:DeleteLogDelivery",
        "logs:ListLogDeliveries",
        "logs:PutResourcePolicy",
        "logs:DescribeResourcePolicies",
    ],
    "AWS::Route53Resolver::ResolverQueryLoggingConfigAssociation": ["route53resolver:*ResolverQueryLogConfig*"],
    "AWS::S3::Bucket": [
        "s3:CreateBucket",
        "s3:DeleteBucket",
        "s3:PutBucket*",
        "s3:GetBucket*",
        "s3:PutEncryptionConfiguration",
        "s3:GetEncryptionConfiguration",
        "s3:PutLifecycleConfiguration",
        "s3:GetLifecycleConfiguration",
        "s3:ListBucket",
    ],
    "AWS::S3::BucketPolicy": ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy", "s3:GetBucketPolicy"],
    "AWS::SSM::Parameter": [
        "ssm:PutParameter",
        "ssm:DeleteParameter",
        "ssm:GetParameter*",
        "ssm:AddTagsToResource",
        "ssm:RemoveTagsFromResource",
    ],
    "AWS::SageMaker::NotebookInstance": [
        "sagemaker:*NotebookInstance",
        "sagemaker:AddTags",
        "sagemaker:DeleteTags",
        "sagemaker:ListTags",
    ],
    "AWS::SageMaker::NotebookInstanceLifecycleConfig": ["sagemaker:*NotebookInstanceLifecycleConfig"],
    "Custom::AWS": _CUSTOM,
    "Custom::CDKBucketDeployment": _CUSTOM,
    "Custom::VpcRestrictDefaultSG": _CUSTOM,
    "Custom::S3AutoDeleteObjects": _CUSTOM,
}
ROLE_WRITES = [
    "iam:CreateRole",
    "iam:PutRolePolicy",
    "iam:AttachRolePolicy",
    "iam:DetachRolePolicy",
    "iam:DeleteRolePolicy",
    "iam:PutRolePermissionsBoundary",
]
ROLE_OTHERS = [
    "iam:DeleteRole",
    "iam:GetRole",
    "iam:GetRolePolicy",
    "iam:UpdateRole",
    "iam:UpdateAssumeRolePolicy",
    "iam:TagRole",
    "iam:UntagRole",
    "iam:ListRolePolicies",
    "iam:ListAttachedRolePolicies",
    "iam:ListRoleTags",
]
POLICY_ACTIONS = [
    "iam:CreatePolicy",
    "iam:DeletePolicy",
    "iam:CreatePolicyVersion",
    "iam:DeletePolicyVersion",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
    "iam:ListPolicyVersions",
    "iam:TagPolicy",
    "iam:UntagPolicy",
]
NEVER_IN_A_ROLE = ("iam:", "organizations:", "account:", "sts:AssumeRoot")


def account_templates(assembly: Path, account: str) -> list[dict]:
    """The templates of the stacks ``cdk synth`` made for ``account`` (from the assembly's manifest)."""
    try:
        manifest = json.loads((assembly / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{assembly}: not a cloud assembly (run npx cdk synth -o {assembly}): {error}") from None
    templates = []
    for artifact in manifest.get("artifacts", {}).values():
        if artifact.get("type") == "aws:cloudformation:stack" and f"aws://{account}/" in artifact.get(
            "environment", ""
        ):
            templates.append(json.loads((assembly / artifact["properties"]["templateFile"]).read_text()))
    if not templates:
        raise ConfigError(f"{assembly}: no stack of account {account} (the federation config's accounts)")
    return templates


def _resource_actions(templates: list[dict]) -> list[str]:
    actions: set[str] = set()
    for template in templates:
        for logical_id, resource in template["Resources"].items():
            kind = resource["Type"]
            if kind not in RESOURCE_ACTIONS:
                raise ConfigError(
                    f"resource {logical_id}: type {kind} has no reviewed actions in stacks/bootstrap_policy.py"
                )
            actions.update(RESOURCE_ACTIONS[kind])
    return sorted(actions)


def _role_actions(templates: list[dict]) -> list[str]:
    """Every action the stacks' own policies grant their roles (inline and customer managed)."""
    actions = set(LAMBDA_BASIC_ACTIONS)
    for template in templates:
        for resource in template["Resources"].values():
            properties = resource.get("Properties", {})
            documents = (
                [properties["PolicyDocument"]]
                if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
                else []
            )
            if resource["Type"] == "AWS::IAM::Role":  # CDK's providers embed theirs in the role
                documents += [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
            for document in documents:
                for statement in document["Statement"]:
                    granted = statement["Action"]
                    actions.update([granted] if isinstance(granted, str) else granted)
    refused = sorted(a for a in actions if a.startswith(NEVER_IN_A_ROLE) and a != "iam:PassRole")
    if refused:
        raise ConfigError(f"a role of these stacks is granted {refused[0]}, which the boundary never allows")
    return sorted(actions)


def boundary_policy(templates: list[dict]) -> dict:
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "WhatTheFederationsRolesDo", "Effect": "Allow", "Action": _role_actions(templates), "Resource": "*"}
        ],
    }


def execution_policy(templates: list[dict], account: str, partition: str = "aws") -> dict:
    iam = f"arn:{partition}:iam::{account}"
    boundary = f"{iam}:policy/{BOUNDARY_NAME}"
    roles = [f"{iam}:role/{prefix}*" for prefix in STACK_PREFIXES]
    policies = [f"{iam}:policy/{prefix}*" for prefix in STACK_PREFIXES]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "TheStacksResources", "Effect": "Allow", "Action": _resource_actions(templates), "Resource": "*"},
            {
                "Sid": "RolesOnlyWithinTheBoundary",
                "Effect": "Allow",
                "Action": ROLE_WRITES,
                "Resource": roles,
                "Condition": {"StringEquals": {"iam:PermissionsBoundary": boundary}},
            },
            {"Sid": "TheStacksRoles", "Effect": "Allow", "Action": [*ROLE_OTHERS, "iam:PassRole"], "Resource": roles},
            {"Sid": "TheStacksPolicies", "Effect": "Allow", "Action": POLICY_ACTIONS, "Resource": policies},
            {
                "Sid": "NoAwsManagedPolicyButLambdasLogging",
                "Effect": "Deny",
                "Action": "iam:AttachRolePolicy",
                "Resource": "*",
                "Condition": {
                    "ArnNotLike": {
                        "iam:PolicyARN": [f"{iam}:policy/*", f"arn:{partition}:iam::aws:policy/{LAMBDA_BASIC}"]
                    }
                },
            },
            {"Sid": "TheBoundaryStays", "Effect": "Deny", "Action": POLICY_ACTIONS, "Resource": boundary},
            {"Sid": "OnEveryRole", "Effect": "Deny", "Action": "iam:DeleteRolePermissionsBoundary", "Resource": "*"},
        ],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacks.bootstrap_policy", description=__doc__.splitlines()[0])
    parser.add_argument("assembly", type=Path, help="the cdk.out folder of npx cdk synth")
    parser.add_argument("account", help="the account to bootstrap")
    parser.add_argument("out", type=Path, help="folder for execution-policy.json and permissions-boundary.json")
    parser.add_argument("--partition", default="aws")
    args = parser.parse_args(argv)
    try:
        templates = account_templates(args.assembly, args.account)
        documents = {
            "execution-policy.json": execution_policy(templates, args.account, args.partition),
            "permissions-boundary.json": boundary_policy(templates),
        }
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    for name, document in documents.items():
        with atomic_path(args.out / name) as path:
            path.write_text(json.dumps(document, indent=1) + "\n")
        print(f"wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
