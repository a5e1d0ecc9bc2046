"""ClientStack: one client account's side of the federation. Deployed before ServerStack.

- a private-only VPC with endpoints and flow logs, and the peering accepter the server uses;
- buckets: code (``code/source.tar.gz``), data (``data_prep/``), model artifacts (``client_artifact/``);
- the training jobs' security group: out to the server's Flower port and this VPC's endpoints only;
- the SageMaker execution role and ``FL-kickoff-client-job`` for the server's notebook;
- a notebook instance for staging this client's data;
- the settings the kickoff step needs, as outputs and in SSM (``<prefix>/client/<name>/settings``).
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from fl_runtime.aws.contract import ClientAccountSettings
from stacks.base import FederationStack
from stacks.bundle.builder import ENTRY_POINT, Bundle
from stacks.client_roles import ARTIFACT_PREFIX, DATA_PREFIX, PUBLIC_KEYS, kickoff_role, training_execution_role
from stacks.code_bundle import CODE_PREFIX
from stacks.compliance import acknowledge, acknowledge_cdk_functions, objects_finding
from stacks.config import ClientAccount, FederationConfig
from stacks.notebook import FederationNotebook, NotebookSettings
from stacks.outputs import publish
from stacks.peering import PeeringAccepter


class ClientStack(FederationStack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: FederationConfig, client: ClientAccount, bundle: Bundle
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            config=config,
            account=client.account,
            description=f"Federated fraud detection: client {client.name}",
        )
        self.build_foundation(client.vpc_cidr, bundle)
        key, network, code, code_bundle = self.key, self.network, self.code, self.code_bundle
        data = self.bucket("Data")
        artifacts = self.bucket("Artifacts")

        self.training_security_group = ec2.SecurityGroup(
            self,
            "TrainingSecurityGroup",
            vpc=network.vpc,
            allow_all_outbound=False,
            description="Client training jobs: the server Flower port and this VPC endpoints, nothing else",
        )
        self.training_security_group.add_egress_rule(
            ec2.Peer.ipv4(config.server_vpc_cidr),
            ec2.Port.tcp(config.flower_port),
            "Flower Fleet API on the server (TLS)",
        )
        network.allow_endpoint_access(self.training_security_group)

        execution_role = training_execution_role(
            self, config, client, code=code, data=data, artifacts=artifacts, key=key
        )
        self.kickoff_role = kickoff_role(
            self,
            config,
            client,
            execution_role=execution_role,
            subnets=network.subnets,
            training_security_group=self.training_security_group,
            key=key,
        )
        self.peering = PeeringAccepter(self, "Peering", config, client, network.vpc, network.subnets)

        notebook_security_group = ec2.SecurityGroup(
            self,
            "NotebookSecurityGroup",
            vpc=network.vpc,
            allow_all_outbound=False,
            description="Client notebook: this VPC endpoints only",
        )
        network.allow_endpoint_access(notebook_security_group)
        notebook = FederationNotebook(
            self,
            "Notebook",
            NotebookSettings(
                name=f"fl-client-{client.name}",
                instance_type=config.notebook_instance_type,
                subnet=network.subnets.subnets[0],
                security_group=notebook_security_group,
                key=key,
                code_bucket=code,
                code_prefix=CODE_PREFIX,
                idle_minutes=config.notebook_idle_minutes,
            ),
        )
        notebook.policy.add_statements(
            iam.PolicyStatement(
                sid="StageData",
                actions=["s3:PutObject", "s3:GetObject"],
                resources=[data.arn_for_objects(f"{DATA_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="ListStagedData",
                actions=["s3:ListBucket"],
                resources=[data.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{DATA_PREFIX}*"]}},
            ),
        )
        acknowledge(
            notebook.policy,
            objects_finding(data, f"{DATA_PREFIX}*"),
            "stage-data writes the train and validation CSVs under data_prep/ and checks what is there",
        )

        settings = ClientAccountSettings(
            client=client.name,
            account=client.account,
            kickoff_role_arn=self.kickoff_role.role_arn,
            external_id=client.external_id,
            execution_role_arn=execution_role.role_arn,
            subnet_ids=tuple(s.subnet_id for s in network.subnets.subnets),
            training_security_group_id=self.training_security_group.security_group_id,
            code_bucket=code.bucket_name,
            source_uri=code_bundle.uri,
            entry_point=ENTRY_POINT,
            data_bucket=data.bucket_name,
            data_prefix=DATA_PREFIX,
            artifact_bucket=artifacts.bucket_name,
            artifact_prefix=ARTIFACT_PREFIX,
            public_key_parameter_prefix=config.client_parameter(client, PUBLIC_KEYS),
            data_key_arn=key.key_arn,
            training_image=config.training_image.uri,
            training_instance_type=config.training_instance_type,
            training_job_prefix=config.training_job_prefix,
            max_training_seconds=config.max_training_seconds,
            notebook=notebook.name,
        )
        parameter = publish(
            self, config.client_parameter(client), settings.to_dict(), f"Federation settings of client {client.name}"
        )
        notebook.policy.add_statements(
            iam.PolicyStatement(sid="ReadSettings", actions=["ssm:GetParameter"], resources=[parameter.parameter_arn])
        )
        self.settings = settings
        acknowledge_cdk_functions(self)
