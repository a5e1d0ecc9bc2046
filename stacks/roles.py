"""IAM building blocks shared by the stacks: customer-managed policies, the custom-resource role.

Permissions live in customer-managed policies, never inline (HIPAA Security), and never in AWS
managed policies (AwsSolutions IAM4): each one lists exactly what its role needs.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from stacks.compliance import AWS_SOLUTIONS, acknowledge


def attach(scope: Construct, construct_id: str, role: iam.IRole, statements: list[iam.PolicyStatement], name: str | None = None) -> iam.ManagedPolicy:
    return iam.ManagedPolicy(scope, construct_id, managed_policy_name=name, roles=[role], statements=statements)


def log_group_arn(scope: Construct, name: str) -> str:
    """ARN of a log group and its streams (``name`` may end in a wildcard)."""
    return Stack.of(scope).format_arn(service="logs", resource="log-group", resource_name=f"{name}:*", arn_format=ArnFormat.COLON_RESOURCE_NAME)


def custom_resource_role(scope: Construct, role_name: str | None = None) -> tuple[iam.Role, iam.ManagedPolicy]:
    """The role of the stack's AwsCustomResource Lambda (one per stack: CDK shares that Lambda).

    Only logging here; each custom resource's construct adds what its API call needs to the policy.
    """
    role = iam.Role(
        scope, "CustomResourceRole", role_name=role_name, assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description="Deployment-time custom resources of this stack (AWS API calls made by CloudFormation)",
    )
    logs = log_group_arn(scope, "/aws/lambda/*")
    policy = attach(scope, "CustomResourcePolicy", role, [iam.PolicyStatement(actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"], resources=[logs])])
    acknowledge(policy, f"{AWS_SOLUTIONS}IAM5[Resource::{logs}]", "CDK names the custom-resource Lambda and its log group; the grant covers Lambda log groups of this account only")
    return role, policy
