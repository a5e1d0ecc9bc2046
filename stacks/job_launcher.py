"""A client account's launcher: the only function FL-kickoff-client-job may invoke, and the only role that may
create the federation's training jobs.

The function runs ``fl_runtime/aws/launcher.py`` (with the modules it imports, nothing else of the runtime):
it refuses any request but start, describe or stop of a run's job, and builds the job from the
``LaunchSettings`` this stack writes into its environment. Its role may start only the federation's jobs as
configured (name prefix, private subnets, training security group, instance type, runtime bound, this
account's data key for volumes and output), pass only the training execution role, watch and stop those
jobs, and list the account's training jobs (the launcher counts those of the last 24 hours against the
client's ``max_jobs_per_day``). It runs in the VPC's private subnets and reaches the SageMaker API through
the VPC endpoint.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from fl_runtime.aws.contract import LaunchSettings
from fl_runtime.aws.launcher import SETTINGS_ENV
from fl_runtime.launch.fab import PACKAGE
from stacks.client_config import LAUNCHER_FUNCTION_NAME
from stacks.client_roles import JobResources
from stacks.compliance import AWS_SOLUTIONS, HIPAA, acknowledge, acknowledge_each
from stacks.network import PrivateNetwork
from stacks.roles import acknowledge_network_interfaces, attach, network_interface_statements, service_principal
from stacks.storage import encrypted_log_group

# the launcher's code: these modules of the runtime, and only these (the Lambda runtime brings boto3)
LAUNCHER_MODULES = ("__init__.py", "errors.py", "documents.py", "aws/__init__.py", "aws/contract.py", "aws/launcher.py")
HANDLER = "fl_runtime.aws.launcher.handler"
CACHE = PACKAGE.parent / ".cache" / "launcher"
# what Lambda does with the function's role for its VPC network interfaces
NETWORK_INTERFACE_WRITES = (
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)


def launcher_code(cache: Path = CACHE) -> Path:
    """A folder holding exactly the launcher's modules, named after their content (the asset's hash)."""
    files = {f"fl_runtime/{name}": (PACKAGE / name).read_bytes() for name in LAUNCHER_MODULES}
    digest = hashlib.sha256(b"".join(name.encode() + b"\0" + data for name, data in sorted(files.items()))).hexdigest()
    folder = cache / digest[:16]
    if not folder.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{digest[:16]}-", dir=cache))
        for name, data in files.items():
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            (staging / name).write_bytes(data)
        try:
            staging.rename(folder)
        except OSError:  # another synth made the same folder meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return folder


@dataclass(frozen=True)
class LauncherSettings:
    launch: LaunchSettings  # what the jobs are made of (CDK tokens until deployment)
    resources: JobResources  # what the role's conditions pin: buckets, key, subnets, security group
    execution_role: iam.IRole  # the only role the launcher may pass to SageMaker
    network: PrivateNetwork
    retain_logs: bool


class JobLauncher(Construct):
    """The function, its role, its security group and its log group; see the module docstring."""

    def __init__(self, scope: Construct, construct_id: str, settings: LauncherSettings) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self, "Role", assumed_by=service_principal(self, "lambda.amazonaws.com"),
            description="The client's launcher: starts, watches and stops only the federation's training jobs",
        )  # fmt: skip
        self.security_group = security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=settings.network.vpc, allow_all_outbound=False,
            description="Client launcher: HTTPS to this VPC endpoints (SageMaker API) only",
        )  # fmt: skip
        settings.network.allow_endpoint_access(security_group)
        log_group = encrypted_log_group(self, "Logs", settings.resources.key, settings.retain_logs)
        self.function = lambda_.Function(
            self, "Function", function_name=LAUNCHER_FUNCTION_NAME, runtime=lambda_.Runtime.PYTHON_3_14,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(launcher_code())), role=self.role,
            environment={SETTINGS_ENV: Stack.of(self).to_json_string(settings.launch.to_dict())},
            timeout=Duration.seconds(60), memory_size=256, environment_encryption=settings.resources.key,
            vpc=settings.network.vpc, vpc_subnets=ec2.SubnetSelection(subnets=settings.network.subnets.subnets),
            security_groups=[security_group], log_group=log_group,
            description="Starts, describes or stops this account's federation training job of a run; nothing else",
        )  # fmt: skip
        self._grant(settings, log_group)
        acknowledge(
            self.function, f"{HIPAA}LambdaDLQ",
            "The server invokes the launcher synchronously and reads its answer; a dead-letter queue receives nothing",
        )  # fmt: skip
        acknowledge(
            self.function, f"{HIPAA}LambdaConcurrency",
            "Reserving concurrency fails the deploy in accounts whose Lambda quota is still the initial 10; the "
            "launcher runs a few times per federation run, and what it starts is bounded by the job's own limits, "
            "one job per run and max_jobs_per_day",
        )  # fmt: skip

    def _grant(self, settings: LauncherSettings, log_group: logs.LogGroup) -> None:
        stack, launch = Stack.of(self), settings.launch
        jobs = stack.format_arn(
            service="sagemaker", resource="training-job", resource_name=f"{launch.training_job_prefix}*"
        )
        policy = attach(self, "Policy", self.role, [
            _start_jobs_statement(settings, jobs),
            iam.PolicyStatement(
                sid="WatchAndStopTheJobs", actions=["sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"],
                resources=[jobs],
            ),
            # no resource-level permission exists for it: SageMaker authorises ListTrainingJobs on * only
            iam.PolicyStatement(
                sid="CountTheJobsOfTheLastDay", actions=["sagemaker:ListTrainingJobs"], resources=["*"]
            ),
            iam.PolicyStatement(
                sid="PassTheExecutionRoleToSageMakerOnly", actions=["iam:PassRole"],
                resources=[settings.execution_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            *network_interface_statements(
                self, settings.network.vpc, settings.network.subnets, self.security_group, NETWORK_INTERFACE_WRITES
            ),
            iam.PolicyStatement(
                sid="Logs", actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[log_group.log_group_arn]
            ),
        ])  # fmt: skip
        # Lambda checks the network-interface grants when it creates the function: the policy comes first
        self.function.node.add_dependency(policy)
        log_group_id = stack.get_logical_id(log_group.node.default_child)  # type: ignore[arg-type]
        reasons = {
            f"{AWS_SOLUTIONS}IAM5[Resource::{jobs}]": (
                "Training-job names carry a per-run part; the grant is limited to the federation's name prefix"
            ),
            f"{AWS_SOLUTIONS}IAM5[Resource::*]": (
                "ec2:DescribeNetworkInterfaces, DescribeVpcs, DescribeDhcpOptions, DescribeSubnets and "
                "DescribeSecurityGroups (read-only) are authorised on * only; so is sagemaker:ListTrainingJobs "
                "(read-only: names, times and statuses of the account's jobs), with which the launcher counts the "
                "federation's jobs of the last 24 hours against max_jobs_per_day"
            ),
            f"{AWS_SOLUTIONS}IAM5[Resource::<{log_group_id}.Arn>:*]": (
                "Lambda names the log streams of its invocations; the grant covers this function's log group only"
            ),
        }
        acknowledge_each(policy, reasons)
        acknowledge_network_interfaces(policy)


def _start_jobs_statement(settings: LauncherSettings, jobs: str) -> iam.PolicyStatement:
    """CreateTrainingJob for the federation's jobs as configured, and only those."""
    resources, launch = settings.resources, settings.launch
    key_arn = resources.key.key_arn
    keys = ("sagemaker:VpcSubnets", "sagemaker:VpcSecurityGroupIds", "sagemaker:InstanceTypes")
    return iam.PolicyStatement(
        sid="StartOnlyTheFederationsJobsAsConfigured",
        actions=["sagemaker:CreateTrainingJob"],
        resources=[jobs],
        conditions={
            "ForAllValues:StringEquals": {
                "sagemaker:VpcSubnets": [s.subnet_id for s in resources.subnets.subnets],
                "sagemaker:VpcSecurityGroupIds": [resources.security_group.security_group_id],
                "sagemaker:InstanceTypes": [launch.training_instance_type],
            },
            "NumericLessThanEquals": {"sagemaker:MaxRuntimeInSeconds": launch.max_training_seconds},
            "ArnEquals": {"sagemaker:VolumeKmsKey": key_arn, "sagemaker:OutputKmsKey": key_arn},
            "Null": dict.fromkeys((*keys, "sagemaker:VolumeKmsKey", "sagemaker:OutputKmsKey"), "false"),
        },
    )
