"""IAM building blocks shared by the stacks: customer-managed policies, the custom-resource runtime.

Permissions live in customer-managed policies, never inline (HIPAA Security), and never in AWS
managed policies (AwsSolutions IAM4): each one lists exactly what its role needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.compliance import AWS_SOLUTIONS, acknowledge
from stacks.storage import encrypted_log_group


def service_principal(
    scope: Construct, service: str, source_arn: str | None = None, *, documented: bool = True
) -> iam.PrincipalBase:
    """``service`` may assume the role only on behalf of this account (and ``source_arn``): another account's
    resource of that service cannot be made to act with it (the confused deputy). ``documented=False``: the
    service does not document setting these keys for this use, so they are checked only when present
    (``IfExists``), rather than risk a role the service can never assume."""
    match = "StringEquals" if documented else "StringEqualsIfExists"
    conditions: dict = {match: {"aws:SourceAccount": Stack.of(scope).account}}
    if source_arn:
        conditions["ArnLike" if documented else "ArnLikeIfExists"] = {"aws:SourceArn": source_arn}
    return iam.ServicePrincipal(service).with_conditions(conditions)


def attach(
    scope: Construct, construct_id: str, role: iam.IRole, statements: list[iam.PolicyStatement], name: str | None = None
) -> iam.ManagedPolicy:
    return iam.ManagedPolicy(scope, construct_id, managed_policy_name=name, roles=[role], statements=statements)


def log_group_arn(scope: Construct, name: str) -> str:
    """ARN of a log group and its streams (``name`` may end in a wildcard)."""
    return Stack.of(scope).format_arn(
        service="logs", resource="log-group", resource_name=f"{name}:*", arn_format=ArnFormat.COLON_RESOURCE_NAME
    )


# read-only, and EC2 authorises them on "*" only
DESCRIBE_NETWORK = [
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
]


def acknowledge_network_interfaces(policy: iam.ManagedPolicy) -> None:
    """The one wildcard of ``network_interface_statements``: the interfaces' own ids."""
    interfaces = Stack.of(policy).format_arn(service="ec2", resource="network-interface", resource_name="*")
    acknowledge(
        policy,
        f"{AWS_SOLUTIONS}IAM5[Resource::{interfaces}]",
        "A VPC-mode job or function's network interfaces get their ids when created: creating one is also "
        "authorised on its subnet and group, named here; changing or deleting one holds only in this VPC (ec2:Vpc)",
    )


def network_interface_statements(
    scope: Construct, vpc: ec2.IVpc, subnets: ec2.SelectedSubnets, group: ec2.ISecurityGroup, writes: tuple[str, ...]
) -> list[iam.PolicyStatement]:
    """Create network interfaces in ``subnets`` with ``group`` only, and change or delete only interfaces of
    ``vpc`` (``writes``): what a VPC-mode job or function needs, not the account's other network interfaces."""
    stack = Stack.of(scope)

    def arn(resource: str, name: str) -> str:
        return stack.format_arn(service="ec2", resource=resource, resource_name=name)

    # EC2 authorises a create on the new interface (which has no ec2:Vpc key yet), its subnet and its group: the
    # subnet and group are what pin it
    return [
        iam.PolicyStatement(
            sid="CreateNetworkInterfacesInTheseSubnetsWithThisGroup",
            actions=["ec2:CreateNetworkInterface"],
            resources=[
                *(arn("subnet", s.subnet_id) for s in subnets.subnets),
                arn("security-group", group.security_group_id),
                arn("network-interface", "*"),
            ],
        ),
        iam.PolicyStatement(
            sid="NetworkInterfacesOfThisVpcOnly",
            actions=list(writes),
            resources=[arn("network-interface", "*")],
            conditions={"ArnEquals": {"ec2:Vpc": arn("vpc", vpc.vpc_id)}},
        ),
        iam.PolicyStatement(sid="DescribeTheNetwork", actions=DESCRIBE_NETWORK, resources=["*"]),
    ]


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
    log_group = encrypted_log_group(scope, "DeploymentFunctionLogs", key, retain_logs)
    role = iam.Role(
        scope,
        "CustomResourceRole",
        role_name=role_name,
        assumed_by=service_principal(scope, "lambda.amazonaws.com"),
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
