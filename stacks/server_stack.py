"""ServerStack: the server account's side. Deploys after every ClientStack (it peers with their VPCs).

- a private-only VPC with endpoints and flow logs; peering with each client VPC, routes on both sides;
- buckets: code (the bundle for the notebook) and results (``data/`` test set, ``model/`` global model);
- the notebook that runs the SuperLink, its security group admitting the Flower port from client CIDRs
  only, and its role ``FL-server-notebook`` with ``FL-allow-kickoff-client-job``;
- the settings ``federate`` needs, as outputs and in SSM (``<prefix>/server/settings``).
"""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from fl_runtime.aws.contract import ClientEntry, ServerAccountSettings
from stacks.base import FederationStack
from stacks.bundle.builder import Bundle
from stacks.code_bundle import CODE_PREFIX
from stacks.compliance import acknowledge, acknowledge_cdk_functions, objects_finding
from stacks.config import PEERING_OPERATOR_ROLE_NAME, SERVER_NOTEBOOK_ROLE_NAME, FederationConfig
from stacks.notebook import FederationNotebook, NotebookSettings
from stacks.outputs import publish
from stacks.peering import Peering, allow_peering_operations
from stacks.roles import attach

TEST_PREFIX = "data/"
MODEL_PREFIX = "model/"
SERVER_NOTEBOOK = "fl-server"


class ServerStack(FederationStack):
    def __init__(self, scope: Construct, construct_id: str, *, config: FederationConfig, bundle: Bundle) -> None:
        super().__init__(
            scope,
            construct_id,
            config=config,
            account=config.server_account,
            description="Federated fraud detection: server",
        )
        self.build_foundation(config.server_vpc_cidr, bundle, custom_resource_role_name=PEERING_OPERATOR_ROLE_NAME)
        operator = self.custom_resources
        allow_peering_operations(operator, config)
        key, network, code, code_bundle = self.key, self.network, self.code, self.code_bundle
        results = self.bucket("Results")

        self.notebook_security_group = ec2.SecurityGroup(
            self,
            "NotebookSecurityGroup",
            vpc=network.vpc,
            allow_all_outbound=False,
            description="Server notebook (SuperLink): Flower port from client VPCs, HTTPS to endpoints",
        )
        for client in config.clients:
            self.notebook_security_group.add_ingress_rule(
                ec2.Peer.ipv4(client.vpc_cidr),
                ec2.Port.tcp(config.flower_port),
                f"Flower Fleet API from client {client.name}",
            )
        network.allow_endpoint_access(self.notebook_security_group)

        notebook = FederationNotebook(
            self,
            "Notebook",
            NotebookSettings(
                name=SERVER_NOTEBOOK,
                instance_type=config.notebook_instance_type,
                subnet=network.subnets.subnets[0],
                security_group=self.notebook_security_group,
                key=key,
                code_bucket=code,
                code_prefix=CODE_PREFIX,
                idle_minutes=config.notebook_idle_minutes,
                role_name=SERVER_NOTEBOOK_ROLE_NAME,
            ),
        )
        attach(
            self,
            "AllowKickoff",
            notebook.role,
            name="FL-allow-kickoff-client-job",
            statements=[
                iam.PolicyStatement(
                    sid="AssumeEachClientsKickoffRole",
                    actions=["sts:AssumeRole"],
                    resources=[c.kickoff_role_arn for c in config.clients],
                )
            ],
        )
        notebook.policy.add_statements(
            iam.PolicyStatement(
                sid="TestSetAndGlobalModel",
                actions=["s3:GetObject", "s3:PutObject"],
                resources=[results.arn_for_objects(f"{TEST_PREFIX}*"), results.arn_for_objects(f"{MODEL_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="ListResults",
                actions=["s3:ListBucket"],
                resources=[results.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{TEST_PREFIX}*", f"{MODEL_PREFIX}*"]}},
            ),
        )
        acknowledge(
            notebook.policy,
            objects_finding(results, f"{TEST_PREFIX}*"),
            "stage-data puts the server-only test set under data/; federate reads it",
        )
        acknowledge(
            notebook.policy,
            objects_finding(results, f"{MODEL_PREFIX}*"),
            "federate writes each run's global model, metrics and report under model/<run>/",
        )

        self.peerings = {
            client.name: Peering(self, f"Peering-{client.name}", config, client, network.vpc, network.subnets, operator)
            for client in config.clients
        }

        settings = ServerAccountSettings(
            region=config.region,
            notebook=notebook.name,
            flower_port=config.flower_port,
            server_vpc_cidr=config.server_vpc_cidr,
            results_bucket=results.bucket_name,
            test_prefix=TEST_PREFIX,
            model_prefix=MODEL_PREFIX,
            source_uri=code_bundle.uri,
            clients=tuple(
                ClientEntry(
                    name=c.name,
                    account=c.account,
                    kickoff_role_arn=c.kickoff_role_arn,
                    external_id=c.external_id,
                    settings_parameter=config.client_parameter(c),
                    vpc_cidr=c.vpc_cidr,
                )
                for c in config.clients
            ),
        )
        parameter = publish(self, config.server_parameter(), settings.to_dict(), "Federation settings of the server")
        notebook.policy.add_statements(
            iam.PolicyStatement(sid="ReadSettings", actions=["ssm:GetParameter"], resources=[parameter.parameter_arn])
        )
        self.settings = settings
        acknowledge_cdk_functions(self)
