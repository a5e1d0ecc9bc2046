"""A SageMaker notebook instance in a private subnet that installs fl_runtime offline and stops when idle.

No direct internet access, no root access for users, a KMS-encrypted volume, IMDSv2 only. At every
start the lifecycle configuration copies the code bundle from S3 (gateway endpoint), installs it into a
Python 3.11 virtualenv from the bundled wheels (``notebook/install.sh``, in the background: lifecycle
scripts must finish within 5 minutes) and installs a systemd timer that stops the instance after
the configured idle time (``notebook/idle_stop.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from stacks.bundle.builder import BUNDLE_NAME
from stacks.compliance import AWS_SOLUTIONS, acknowledge
from stacks.roles import attach, log_group_arn, service_principal

PLATFORM = "notebook-al2023-v1"
HOME = "/home/ec2-user/fl"
VENV = f"{HOME}/venv"


@dataclass(frozen=True)
class NotebookSettings:
    name: str
    instance_type: str
    subnet: ec2.ISubnet
    security_group: ec2.ISecurityGroup
    key: kms.IKey
    code_bucket: s3.IBucket
    code_prefix: str
    idle_minutes: int
    role_name: str | None = None
    network_reads: tuple[str, ...] = ()  # what doctor describes of the network (PEERING_READS, PRIVATELINK_READS)


# python -m fl_runtime doctor: peering, routes, the Flower-port rule; or (privatelink) endpoints, zones, addresses
PEERING_READS = ("ec2:DescribeVpcPeeringConnections", "ec2:DescribeRouteTables", "ec2:DescribeSecurityGroups")
PRIVATELINK_READS = (
    "ec2:DescribeVpcEndpoints",
    "ec2:DescribeVpcEndpointServices",
    "ec2:DescribeSubnets",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSecurityGroups",
)


def network_reads(privatelink: bool) -> tuple[str, ...]:
    return PRIVATELINK_READS if privatelink else PEERING_READS


def on_start_script(bundle_uri: str, idle_minutes: int) -> str:
    """The lifecycle on-start script (runs as root at every start)."""
    return f"""#!/bin/bash
set -euo pipefail
# stop the instance when idle (cost): a systemd timer every 5 minutes, with the system Python
# (Amazon Linux 2023 has systemd but no cron); its output goes to the journal
cat > /etc/systemd/system/fl-idle-stop.service <<'UNIT'
[Unit]
Description=Stop this notebook instance when it has been idle for {idle_minutes} minutes
ConditionPathExists={HOME}/bundle/notebook/idle_stop.py
[Service]
Type=oneshot
ExecStart=/usr/bin/python3 {HOME}/bundle/notebook/idle_stop.py {idle_minutes}
UNIT
cat > /etc/systemd/system/fl-idle-stop.timer <<'UNIT'
[Unit]
Description=Check every 5 minutes whether this notebook instance is idle
[Timer]
OnBootSec=5min
OnUnitActiveSec=5min
[Install]
WantedBy=timers.target
UNIT
systemctl daemon-reload
systemctl enable --now fl-idle-stop.timer
# install fl_runtime offline from the code bundle, in the background (lifecycle scripts have 5 minutes)
nohup bash -c '
  set -euo pipefail
  mkdir -p {HOME}/bundle.new
  aws s3 cp "{bundle_uri}" /tmp/fl-source.tar.gz --only-show-errors
  tar -xzf /tmp/fl-source.tar.gz -C {HOME}/bundle.new
  rm -rf {HOME}/bundle && mv {HOME}/bundle.new {HOME}/bundle
  bash {HOME}/bundle/notebook/install.sh {HOME}/bundle {VENV}
  chown -R ec2-user:ec2-user {HOME}
' > /var/log/fl-install.log 2>&1 &
"""


class FederationNotebook(Construct):
    """The notebook instance, its lifecycle configuration, its role and policy (stacks add statements)."""

    def __init__(self, scope: Construct, construct_id: str, settings: NotebookSettings) -> None:
        super().__init__(scope, construct_id)
        self.name = settings.name
        self.role = iam.Role(
            self,
            "Role",
            role_name=settings.role_name,
            # SageMaker documents aws:SourceAccount for jobs, not notebook instances: checked when present
            assumed_by=service_principal(self, "sagemaker.amazonaws.com", documented=False),
            description=f"Notebook instance {settings.name}",
        )
        bundle_key = f"{settings.code_prefix}{BUNDLE_NAME}"
        self.policy = self._policy(settings, bundle_key)
        lifecycle = sagemaker.CfnNotebookInstanceLifecycleConfig(
            self,
            "Lifecycle",
            notebook_instance_lifecycle_config_name=f"{settings.name}-start",
            on_start=[
                sagemaker.CfnNotebookInstanceLifecycleConfig.NotebookInstanceLifecycleHookProperty(
                    content=Fn.base64(
                        on_start_script(f"s3://{settings.code_bucket.bucket_name}/{bundle_key}", settings.idle_minutes)
                    )
                )
            ],
        )
        metadata = sagemaker.CfnNotebookInstance.InstanceMetadataServiceConfigurationProperty(
            minimum_instance_metadata_service_version="2"
        )
        self.instance = sagemaker.CfnNotebookInstance(
            self,
            "Instance",
            notebook_instance_name=settings.name,
            instance_type=settings.instance_type,
            role_arn=self.role.role_arn,
            subnet_id=settings.subnet.subnet_id,
            security_group_ids=[settings.security_group.security_group_id],
            direct_internet_access="Disabled",
            root_access="Disabled",
            kms_key_id=settings.key.key_id,
            platform_identifier=PLATFORM,
            volume_size_in_gb=20,
            lifecycle_config_name=lifecycle.attr_notebook_instance_lifecycle_config_name,
            instance_metadata_service_configuration=metadata,
        )

    def _policy(self, settings: NotebookSettings, bundle_key: str) -> iam.ManagedPolicy:
        """Read the code bundle, use the data key, stop itself when idle, log; the stacks add the rest."""
        notebook_arn = Stack.of(self).format_arn(
            service="sagemaker", resource="notebook-instance", resource_name=settings.name
        )
        logs = log_group_arn(self, "/aws/sagemaker/NotebookInstances")
        policy = attach(
            self,
            "Policy",
            self.role,
            [
                iam.PolicyStatement(
                    sid="ReadCodeBundle",
                    actions=["s3:GetObject"],
                    resources=[settings.code_bucket.arn_for_objects(bundle_key)],
                ),
                iam.PolicyStatement(
                    sid="UseDataKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[settings.key.key_arn]
                ),
                iam.PolicyStatement(
                    sid="StopWhenIdle",
                    actions=["sagemaker:StopNotebookInstance", "sagemaker:DescribeNotebookInstance"],
                    resources=[notebook_arn],
                ),
                iam.PolicyStatement(
                    sid="PreflightReadsTheNetwork",  # python -m fl_runtime doctor
                    actions=list(settings.network_reads),
                    resources=["*"],
                ),
                iam.PolicyStatement(
                    sid="Logs",
                    actions=[
                        "logs:CreateLogGroup",
                        "logs:CreateLogStream",
                        "logs:PutLogEvents",
                        "logs:DescribeLogStreams",
                    ],
                    resources=[logs],
                ),
            ],
        )
        acknowledge(
            policy,
            f"{AWS_SOLUTIONS}IAM5[Resource::*]",
            f"{', '.join(settings.network_reads)} (read-only, for the doctor preflight) are authorised on * only",
        )
        acknowledge(
            policy,
            f"{AWS_SOLUTIONS}IAM5[Resource::{logs}]",
            "SageMaker names the notebook's log streams itself; the grant covers the notebook-instance log group only",
        )
        return policy
