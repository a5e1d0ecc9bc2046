"""ServerStack: the server account's side. Peering: deploys after every ClientStack (it peers with their VPCs);
privatelink: before them (they make endpoints to its service).

- a private-only VPC with endpoints and flow logs; peering with each client VPC, routes on both sides; or
  (privatelink) the Fleet load balancer and endpoint service the members connect to (``privatelink``);
- buckets: code (the bundle for the notebook) and results (``data/`` test set, ``model/`` global model);
- the notebook that runs the SuperLink, its security group admitting the Flower port from the clients'
  training security groups only, and its role ``FL-server-notebook`` with ``FL-allow-kickoff-client-job``;
- the model registry: a SageMaker model package group, each finished run a version of it (``federate``
  registers it, pending manual approval, encrypted with the data key); the notebook may add versions to
  this group and nothing else of the registry;
- the settings ``federate`` needs, as outputs and in SSM (``<prefix>/server/settings``, and each client's entry in
  ``<prefix>/server/client/<name>``).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import CfnOutput, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from fl_runtime.aws.contract import ClientEntry, ClientHandover, ServerAccountSettings
from fl_runtime.errors import ConfigError
from stacks.base import FederationStack
from stacks.bundle.builder import Bundle
from stacks.client_config import KICKOFF_ROLE_NAME, LAUNCHER_FUNCTION_NAME
from stacks.code_bundle import CODE_PREFIX
from stacks.compliance import AWS_SOLUTIONS, acknowledge, acknowledge_cdk_functions, objects_finding
from stacks.config import PEERING_OPERATOR_ROLE_NAME, SERVER_NOTEBOOK_ROLE_NAME, ClientAccount, FederationConfig
from stacks.network import CrossAccountCall
from stacks.notebook import FederationNotebook, NotebookSettings, network_reads
from stacks.outputs import publish
from stacks.peering import Peering, allow_peering_operations
from stacks.peering_separate import PeeringRequest
from stacks.privatelink import FleetService, allow_fleet_operations
from stacks.roles import attach

TEST_PREFIX = "data/"
MODEL_PREFIX = "model/"
SERVER_NOTEBOOK = "fl-server"
# one federation per server account, like the notebook's and roles' fixed names; lower case, as SageMaker's ARNs are
MODEL_PACKAGE_GROUP = "fl-fraud-global-model"
KICKOFF_POLICY = "FL-allow-kickoff-client-job"
# a kickoff role's ARN is at most 62 characters in a policy (aws-us-gov, with quotes and comma): 90 fit in 6,144
KICKOFF_ROLES_PER_POLICY = 90


def kickoff_calls(config: FederationConfig) -> tuple[CrossAccountCall, ...]:
    """What the notebook does with a client's kickoff-role session, through this VPC's endpoints: read that
    client's settings and published keys, and invoke its launcher. Nothing else of another account. One statement
    per endpoint for every client (the role, parameters and function have the same names in each client account),
    so the endpoint policies grow by an account id per member. The endpoint does not pair a role with its own
    account: each member account does (neither its parameters nor its launcher has a resource policy, so only its
    own roles can use them)."""
    partition, region = config.arn_partition, config.region
    accounts = tuple(dict.fromkeys(client.account for client in config.clients))
    role = f"arn:{partition}:iam::*:role/{KICKOFF_ROLE_NAME}"
    parameters = f"arn:{partition}:ssm:{region}:*:parameter{config.parameter_prefix}/client/*"
    launchers = f"arn:{partition}:lambda:{region}:*:function:{LAUNCHER_FUNCTION_NAME}"
    return (
        CrossAccountCall("Ssm", role, ("ssm:GetParameter",), (parameters,), accounts),
        CrossAccountCall("Lambda", role, ("lambda:InvokeFunction",), (launchers,), accounts),
    )


class ServerStack(FederationStack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FederationConfig,
        bundle: Bundle,
        handovers: Mapping[str, ClientHandover] | None = None,
    ) -> None:
        """``handovers``: separate organisations, each client's handover file by client name."""
        super().__init__(
            scope,
            construct_id,
            config=config,
            account=config.server_account,
            description="Federated fraud detection: server",
        )
        self.build_foundation(
            config.server_vpc_cidr,
            bundle,
            custom_resource_role_name=None if config.privatelink else PEERING_OPERATOR_ROLE_NAME,
            cross_account_calls=kickoff_calls(config),
            registers_targets=config.privatelink,
        )
        if not config.separate_organisations and not config.privatelink:
            allow_peering_operations(self.custom_resources, config)
        self.results = self.bucket("Results")
        self.notebook_security_group = self._notebook_security_group()
        self.notebook = self._server_notebook()
        self.model_registry = self._model_registry()
        self.fleet = self._fleet_service() if config.privatelink else None
        self.peerings = {} if config.privatelink else {c.name: self._peering(c, handovers) for c in config.clients}
        self.settings = self._settings()
        self._publish_settings()
        acknowledge_cdk_functions(self)

    def _publish_settings(self) -> None:
        """The settings at ``server_parameter`` and each client's entry in a parameter of its own under
        ``server_clients_path`` (so neither grows with the members), readable by the notebook."""
        config = self.config
        parameter = publish(self, config.server_parameter(), self.settings.published(), "Federation settings")
        entries = Construct(self, "ClientEntries")
        for entry in self.settings.clients:
            ssm.StringParameter(
                entries,
                entry.name,
                parameter_name=f"{config.server_clients_path()}/{entry.name}",
                string_value=self.to_json_string(entry.to_dict()),
                description=f"Federation settings of the server: client {entry.name}",
            )
            if self.config.privatelink:
                continue
            # what a client party of separate organisations is told after the server's deploy
            CfnOutput(
                entries,
                f"PeeringConnectionId-{entry.name}",
                value=entry.peering_connection_id,
                description=f"client {entry.name}: peering_connection_id",
            )
        path = f"arn:{self.partition}:ssm:{self.region}:{self.account}:parameter{config.server_clients_path()}"
        self.notebook.policy.add_statements(
            iam.PolicyStatement(sid="ReadSettings", actions=["ssm:GetParameter"], resources=[parameter.parameter_arn]),
            iam.PolicyStatement(
                sid="ReadClientEntries", actions=["ssm:GetParametersByPath"], resources=[path, f"{path}/*"]
            ),
        )
        acknowledge(
            self.notebook.policy,
            f"{AWS_SOLUTIONS}IAM5[Resource::{path}/*]",
            "reading the client entries by their path (one parameter per client, published by this stack): the "
            "notebook's policy does not grow with the members",
        )

    def _notebook_security_group(self) -> ec2.SecurityGroup:
        """HTTPS to this VPC's endpoints; the Flower port comes with each client's peering (from its jobs' group)."""
        group = ec2.SecurityGroup(
            self,
            "NotebookSecurityGroup",
            vpc=self.network.vpc,
            allow_all_outbound=False,
            description="Server notebook (SuperLink): Flower port from client training jobs, HTTPS to endpoints",
        )
        self.network.allow_endpoint_access(group)
        return group

    def _fleet_service(self) -> FleetService:
        """privatelink: the load balancer and endpoint service in front of the notebook's Flower port; only the
        member accounts may connect, and the notebook registers itself and accepts them."""
        config = self.config
        fleet = FleetService(
            self, "Fleet", vpc=self.network.vpc, subnets=self.network.subnets, port=config.flower_port,
            notebook_group=self.notebook_security_group,
            member_principals=[f"arn:{config.arn_partition}:iam::{c.account}:root" for c in config.clients],
        )  # fmt: skip
        allow_fleet_operations(self.notebook.policy, fleet)
        return fleet

    def _peering(
        self, client: ClientAccount, handovers: Mapping[str, ClientHandover] | None
    ) -> Peering | PeeringRequest:
        network, group = self.network, self.notebook_security_group
        if not self.config.separate_organisations:
            return Peering(
                self, f"Peering-{client.name}", config=self.config, client=client, vpc=network.vpc,
                subnets=network.subnets, operator=self.custom_resources, flower_group=group,
            )  # fmt: skip
        if handovers is None or client.name not in handovers:
            raise ConfigError(f"clients: no handover file from client {client.name!r} (separate organisations)")
        return PeeringRequest(
            self, f"Peering-{client.name}", handover=handovers[client.name], client=client, vpc=network.vpc,
            subnets=network.subnets, operator=self.custom_resources, flower_group=group,
            flower_port=self.config.flower_port,
        )  # fmt: skip

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
                network_reads=network_reads(self.config.privatelink),
                idle_minutes=config.notebook_idle_minutes,
                role_name=SERVER_NOTEBOOK_ROLE_NAME,
            ),
        )
        self._allow_kickoff(notebook)
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

    def _allow_kickoff(self, notebook: FederationNotebook) -> None:
        """Each client's kickoff role, by its ARN: ``FL-allow-kickoff-client-job``, and past KICKOFF_ROLES_PER_POLICY
        clients ``-2``, ``-3``... (a managed policy holds 6,144 characters; a role takes 10 managed policies, so
        this stays within the role's quota up to about 700 clients)."""
        roles = [client.kickoff_role_arn for client in self.config.clients]
        for index in range(0, len(roles), KICKOFF_ROLES_PER_POLICY):
            number = index // KICKOFF_ROLES_PER_POLICY + 1
            suffix = "" if number == 1 else f"-{number}"
            kickoff = iam.PolicyStatement(
                sid="AssumeEachClientsKickoffRole",
                actions=["sts:AssumeRole"],
                resources=roles[index : index + KICKOFF_ROLES_PER_POLICY],
            )
            attach(self, f"AllowKickoff{suffix.lstrip('-')}", notebook.role, name=f"{KICKOFF_POLICY}{suffix}",
                   statements=[kickoff])  # fmt: skip

    def _model_registry(self) -> sagemaker.CfnModelPackageGroup:
        """The group each run becomes a version of; the notebook may add versions to it and to nothing else.

        SageMaker encrypts a version's details with the key the request names (the data key): the notebook may
        let SageMaker, and only SageMaker, use the key for that (a grant for the model package, and the key's
        description). Retained like the data when the stack goes: approved versions are the audit trail of what
        was deployed."""
        group = sagemaker.CfnModelPackageGroup(
            self,
            "ModelRegistry",
            model_package_group_name=MODEL_PACKAGE_GROUP,
            model_package_group_description="Federated fraud detection: each federate run's global model",
        )
        group.apply_removal_policy(RemovalPolicy.RETAIN if self.config.retain_data else RemovalPolicy.DESTROY)
        versions = self.format_arn(
            service="sagemaker", resource="model-package", resource_name=f"{MODEL_PACKAGE_GROUP}/*"
        )
        through_sagemaker = {"kms:ViaService": f"sagemaker.{self.region}.amazonaws.com"}
        self.notebook.policy.add_statements(
            iam.PolicyStatement(
                sid="RegisterEachRunInTheModelRegistry",
                actions=["sagemaker:CreateModelPackage"],
                resources=[group.attr_model_package_group_arn, versions],
            ),
            iam.PolicyStatement(
                sid="SageMakerEncryptsTheVersionsWithTheDataKey",
                actions=["kms:CreateGrant"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": through_sagemaker, "Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
            iam.PolicyStatement(
                sid="SageMakerDescribesTheDataKey",
                actions=["kms:DescribeKey"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": through_sagemaker},
            ),
        )
        acknowledge(
            self.notebook.policy,
            f"{AWS_SOLUTIONS}IAM5[Resource::{versions}]",
            "SageMaker numbers a group's versions itself; the grant covers the versions of this group only",
        )
        return group

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
            vpc_id=self.network.vpc.vpc_id,
            route_table_ids=tuple(s.route_table.route_table_id for s in self.network.subnets.subnets),
            notebook_security_group_id=self.notebook_security_group.security_group_id,
            data_key_arn=self.key.key_arn,
            model_package_group=MODEL_PACKAGE_GROUP,
            inference_image=config.inference_image,
            **self._fleet_settings(),
            clients=tuple(
                ClientEntry(
                    name=c.name,
                    account=c.account,
                    kickoff_role_arn=c.kickoff_role_arn,
                    external_id=c.external_id,
                    settings_parameter=config.client_parameter(c),
                    vpc_cidr=c.vpc_cidr,
                    peering_connection_id=self.peerings[c.name].peering_id if c.name in self.peerings else "",
                    training_security_group_id=(
                        self.peerings[c.name].client_security_group_id if c.name in self.peerings else ""
                    ),
                )
                for c in config.clients
            ),
        )

    def _fleet_settings(self) -> dict:
        """privatelink: what federate and doctor need of the Fleet service (peering: nothing)."""
        if self.fleet is None:
            return {}
        return {
            "network": self.config.network,
            "superlink_dns_name": self.config.superlink_dns_name,
            "endpoint_service_id": self.fleet.service.vpc_endpoint_service_id,
            "target_group_arn": self.fleet.target_group.target_group_arn,
            "zone_ids": self.config.availability_zone_ids,
        }
