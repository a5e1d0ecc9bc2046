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
        self.build_foundation(
            config.server_vpc_cidr, bundle, custom_resource_role_name=PEERING_OPERATOR_ROLE_NAME, invokes_lambda=True
        )
        allow_peering_operations(self.custom_resources, config)
        self.results = self.bucket("Results")
        self.notebook_security_group = self._notebook_security_group()
        self.notebook = self._server_notebook()
        network = self.network
        self.peerings = {
            client.name: Peering(
                self,
                f"Peering-{client.name}",
                config=config,
                client=client,
                vpc=network.vpc,
                subnets=network.subnets,
                operator=self.custom_resources,
            )
            for client in config.clients
        }
        self.settings = self._settings()
        parameter = publish(
            self, config.server_parameter(), self.settings.to_dict(), "Federation settings of the server"
        )
        self.notebook.policy.add_statements(
            iam.PolicyStatement(sid="ReadSettings", actions=["ssm:GetParameter"], resources=[parameter.parameter_arn])
        )
        acknowledge_cdk_functions(self)

    def _notebook_security_group(self) -> ec2.SecurityGroup:
        """The Flower port from each client VPC, HTTPS to this VPC's endpoints."""
        group = ec2.SecurityGroup(
            self,
            "NotebookSecurityGroup",
            vpc=self.network.vpc,
            allow_all_outbound=False,
            description="Server notebook (SuperLink): Flower port from client VPCs, HTTPS to endpoints",
        )
        for client in self.config.clients:
            group.add_ingress_rule(
                ec2.Peer.ipv4(client.vpc_cidr),
                ec2.Port.tcp(self.config.flower_port),
                f"Flower Fleet API from client {client.name}",
            )
        self.network.allow_endpoint_access(group)
        return group

    def _server_notebook(self) -> FederationNotebook:
        """The notebook that runs federate: it may assume each client's kickoff role and use the results bucket."""
        config, results = self.config, self.results
        notebook = FederationNotebook(
            self,
            "Notebook",
            NotebookSettings(
                name=SERVER_NOTEBOOK,
                instance_type=config.notebook_instance_type,
                subnet=self.network.subnets.subnets[0],
                security_group=self.notebook_security_group,
                key=self.key,
                code_bucket=self.code,
                code_prefix=CODE_PREFIX,
                idle_minutes=config.notebook_idle_minutes,
                role_name=SERVER_NOTEBOOK_ROLE_NAME,
            ),
        )
        kickoff = iam.PolicyStatement(
            sid="AssumeEachClientsKickoffRole",
            actions=["sts:AssumeRole"],
            resources=[c.kickoff_role_arn for c in config.clients],
        )
        attach(self, "AllowKickoff", notebook.role, name="FL-allow-kickoff-client-job", statements=[kickoff])
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
        return notebook

    def _settings(self) -> ServerAccountSettings:
        """What this stack publishes for federate and stage-data --server."""
        config = self.config
        return ServerAccountSettings(
            region=config.region,
            notebook=self.notebook.name,
            flower_port=config.flower_port,
            server_vpc_cidr=config.server_vpc_cidr,
            results_bucket=self.results.bucket_name,
            test_prefix=TEST_PREFIX,
            model_prefix=MODEL_PREFIX,
            source_uri=self.code_bundle.uri,
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
