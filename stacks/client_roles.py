"""A client account's IAM roles for federated training: least privilege, every grant scoped.

- ``FL-kickoff-client-job``: what the server's notebook may do here, and nothing more: invoke this
  client's launcher (``job_launcher``), which builds and starts the job from this account's own settings,
  and read this client's settings and the SuperNode public keys its jobs publish, in SSM. It trusts the
  server account's notebook role only, and only with the client's external id.
- The SageMaker execution role (``FL-training-job``): read the code and data buckets, write model artifacts, use the
  data key for the job's volume and artifacts, the VPC network interfaces of a VPC-mode job, publish and remove
  its SuperNode's public key, sign with the member's identity key and read its pins (``identity``), and its own
  logs and metrics. No AWS managed policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.client_config import KICKOFF_ROLE_NAME, TRAINING_ROLE_NAME
from stacks.compliance import AWS_SOLUTIONS, acknowledge, acknowledge_each, objects_finding
from stacks.config import ClientAccount, FederationConfig
from stacks.identity import MemberIdentity
from stacks.roles import (
    acknowledge_network_interfaces,
    attach,
    log_group_arn,
    network_interface_statements,
    service_principal,
)

PUBLIC_KEYS = "supernode-keys"  # <prefix>/client/<name>/supernode-keys/<job>: one public key per job
DATA_PREFIX = "data_prep/"
ARTIFACT_PREFIX = "client_artifact/"
# what SageMaker does with the execution role's credentials for a VPC-mode job's network interfaces
TRAINING_NETWORK_INTERFACE_WRITES = (
    "ec2:CreateNetworkInterfacePermission",
    "ec2:DeleteNetworkInterface",
    "ec2:DeleteNetworkInterfacePermission",
)


def public_key_parameters(scope: Construct, config: FederationConfig, client: ClientAccount) -> str:
    """ARN pattern of the parameters the client's training jobs publish their public keys in."""
    name = config.client_parameter(client, f"{PUBLIC_KEYS}/{config.training_job_prefix}*").lstrip("/")
    return Stack.of(scope).format_arn(service="ssm", resource="parameter", resource_name=name)


@dataclass(frozen=True)
class JobResources:
    """What a client's training jobs run with: its buckets, its data key, its subnets and security group."""

    code: s3.IBucket
    data: s3.IBucket
    artifacts: s3.IBucket
    key: kms.IKey
    subnets: ec2.SelectedSubnets
    security_group: ec2.ISecurityGroup
    vpc: ec2.IVpc


def _read_peer_keys(scope: Construct, role: iam.Role, identity: MemberIdentity) -> None:
    """One organisation: the other members' public keys, in a policy of their own (it grows with the members)."""
    statements = identity.peer_statements()
    if not statements:
        return
    policy = attach(scope, "TrainingReadsMembersKeys", role, statements)
    acknowledge(
        policy,
        f"{AWS_SOLUTIONS}IAM5[Resource::{identity.settings.peer_keys}]",
        "One organisation: the job reads the other members' identity public keys (kms:GetPublicKey only) by the "
        "aliases their stacks give them; IAM names a key by its ARN, unknown until that stack is deployed, so the "
        "grant holds for the keys of exactly those accounts (aws:ResourceAccount) requested through an identity "
        "alias (kms:RequestAlias)",
    )


def training_execution_role(
    scope: Construct, config: FederationConfig, client: ClientAccount, resources: JobResources, identity: MemberIdentity
) -> iam.Role:
    """The role SageMaker gives a training job: read code and staged data, write artifacts, sign as the member and
    read its pins, nothing more. Named, so that in one organisation the other members' keys can admit it."""
    stack = Stack.of(scope)
    role = iam.Role(
        scope,
        "TrainingExecutionRole",
        role_name=TRAINING_ROLE_NAME,
        assumed_by=service_principal(
            scope, "sagemaker.amazonaws.com", stack.format_arn(service="sagemaker", resource="training-job/*")
        ),
        description="SageMaker training jobs of the federation: read code and data, write artifacts",
    )
    logs = log_group_arn(scope, "/aws/sagemaker/TrainingJobs")
    public_keys = public_key_parameters(scope, config, client)
    network = network_interface_statements(
        scope, resources.vpc, resources.subnets, resources.security_group, TRAINING_NETWORK_INTERFACE_WRITES
    )
    statements = [*_execution_statements(resources, logs, public_keys), *identity.job_statements(), *network]
    policy = attach(scope, "TrainingExecutionPolicy", role, statements)
    reasons = {
        f"{AWS_SOLUTIONS}IAM5[Resource::*]": (
            "ec2:DescribeNetworkInterfaces, DescribeVpcs, DescribeDhcpOptions, DescribeSubnets and "
            "DescribeSecurityGroups (read-only) are authorised on * only; cloudwatch:PutMetricData has no resource "
            "and is limited to the SageMaker training namespace by condition"
        ),
        objects_finding(
            resources.code
        ): "The job reads its source.tar.gz from the code bucket, which holds nothing else",
        objects_finding(resources.data, f"{DATA_PREFIX}*"): (
            "The job reads the staged train/validation objects under data_prep/ only"
        ),
        objects_finding(resources.artifacts, f"{ARTIFACT_PREFIX}*"): (
            "SageMaker writes model.tar.gz under client_artifact/<job name>/, which is not known in advance"
        ),
        f"{AWS_SOLUTIONS}IAM5[Resource::{logs}]": (
            "SageMaker names the log streams per training job; the grant covers the training-job log group"
        ),
        f"{AWS_SOLUTIONS}IAM5[Resource::{public_keys}]": (
            "Each job publishes its SuperNode public key under a parameter named after the job, which is not known "
            "in advance; the grant is limited to this client's key path and the job-name prefix"
        ),
    }
    acknowledge_each(policy, reasons)
    _read_peer_keys(scope, role, identity)
    acknowledge_network_interfaces(policy)
    return role


def _execution_statements(resources: JobResources, logs: str, public_keys: str) -> list[iam.PolicyStatement]:
    data, key = resources.data, resources.key
    return [
        iam.PolicyStatement(sid="ReadCode", actions=["s3:GetObject"], resources=[resources.code.arn_for_objects("*")]),
        iam.PolicyStatement(
            sid="ReadData", actions=["s3:GetObject"], resources=[data.arn_for_objects(f"{DATA_PREFIX}*")]
        ),
        iam.PolicyStatement(
            sid="ListData",
            actions=["s3:ListBucket"],
            resources=[data.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{DATA_PREFIX}*"]}},
        ),
        iam.PolicyStatement(
            sid="WriteArtifacts",
            actions=["s3:PutObject", "s3:AbortMultipartUpload"],
            resources=[resources.artifacts.arn_for_objects(f"{ARTIFACT_PREFIX}*")],
        ),
        # the data key encrypts the job's volume (VolumeKmsKeyId) and its model artifacts (OutputDataConfig)
        iam.PolicyStatement(
            sid="UseDataKey",
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
            resources=[key.key_arn],
        ),
        iam.PolicyStatement(
            sid="GrantDataKeyToTheVolume",
            actions=["kms:CreateGrant"],
            resources=[key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
        ),
        iam.PolicyStatement(
            sid="PublishSuperNodePublicKey",
            actions=["ssm:PutParameter", "ssm:DeleteParameter"],
            resources=[public_keys],
        ),
        iam.PolicyStatement(
            sid="Logs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[logs],
        ),
        iam.PolicyStatement(
            sid="Metrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}},
        ),
    ]


def kickoff_role(
    scope: Construct, config: FederationConfig, client: ClientAccount, launcher: lambda_.IFunction
) -> iam.Role:
    """The role the server notebook assumes: it may invoke this client's launcher, which decides everything
    about the job, and read this client's settings and the public keys its jobs publish. Nothing else: no
    SageMaker action, no role to pass."""
    stack = Stack.of(scope)
    role = iam.Role(
        scope,
        "KickoffRole",
        role_name=KICKOFF_ROLE_NAME,
        assumed_by=iam.AccountPrincipal(config.server_account).with_conditions(
            {
                "StringEquals": {"sts:ExternalId": client.external_id},
                "ArnEquals": {"aws:PrincipalArn": config.server_notebook_role_arn},
            }
        ),
        description="Lets the federation server notebook ask this account launcher for a run job",
    )
    settings = stack.format_arn(
        service="ssm", resource="parameter", resource_name=config.client_parameter(client, "*").lstrip("/")
    )
    statements = [
        iam.PolicyStatement(sid="AskTheLauncher", actions=["lambda:InvokeFunction"], resources=[launcher.function_arn]),
        # the settings, and the SuperNode public keys the jobs publish under the same path (no secret travels)
        iam.PolicyStatement(
            sid="ReadThisClientsSettingsAndPublicKeys", actions=["ssm:GetParameter"], resources=[settings]
        ),
    ]
    policy = attach(scope, "KickoffPolicy", role, name="FL-ask-the-launcher", statements=statements)
    acknowledge(
        policy,
        f"{AWS_SOLUTIONS}IAM5[Resource::{settings}]",
        "The server reads the settings this client stack publishes, and the SuperNode public keys its jobs publish "
        "(named after the job, not known in advance), under this client's own parameter path",
    )
    return role
