"""IAM building blocks shared by the stacks: customer-managed policies, the custom-resource runtime.

Permissions live in customer-managed policies, never inline (HIPAA Security), and never in AWS
managed policies (AwsSolutions IAM4): each one lists exactly what its role needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct


def attach(
    scope: Construct, construct_id: str, role: iam.IRole, statements: list[iam.PolicyStatement], name: str | None = None
) -> iam.ManagedPolicy:
    return iam.ManagedPolicy(scope, construct_id, managed_policy_name=name, roles=[role], statements=statements)


def log_group_arn(scope: Construct, name: str) -> str:
    """ARN of a log group and its streams (``name`` may end in a wildcard)."""
    return Stack.of(scope).format_arn(
        service="logs", resource="log-group", resource_name=f"{name}:*", arn_format=ArnFormat.COLON_RESOURCE_NAME
    )


@dataclass(frozen=True)
class CustomResourceRuntime:
    """What the stack's deployment-time Lambdas share: AwsCustomResource's role and policy, one log group.

    The log group belongs to the stack, so ``cdk destroy`` removes it (a Lambda left to log on its own
    creates ``/aws/lambda/<name>``, which outlives the stack). Each custom resource's construct adds
    what its API call needs to ``policy``.
    """

    role: iam.Role
    policy: iam.ManagedPolicy
    log_group: logs.LogGroup


def custom_resource_runtime(
    scope: Construct, key: kms.IKey, retain_logs: bool, role_name: str | None = None
) -> CustomResourceRuntime:
    log_group = logs.LogGroup(
        scope,
        "DeploymentFunctionLogs",
        encryption_key=key,
        retention=logs.RetentionDays.ONE_YEAR,
        removal_policy=RemovalPolicy.RETAIN if retain_logs else RemovalPolicy.DESTROY,
    )
    role = iam.Role(
        scope,
        "CustomResourceRole",
        role_name=role_name,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description="Deployment-time custom resources of this stack (AWS API calls made by CloudFormation)",
    )
    policy = attach(
        scope,
        "CustomResourcePolicy",
        role,
        [
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            ),
        ],
    )
    return CustomResourceRuntime(role, policy, log_group)
