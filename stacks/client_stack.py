"""ClientStack: one client account's side of the federation. Peering: deployed before ServerStack; privatelink:
after it, once its endpoint service's name is in the config (``fleet_endpoint_service``).

- a private-only VPC with endpoints, flow logs and a DNS firewall; the peering: one organisation, the accepter
  the server's deployment uses; separate organisations, this account's acceptance of the server's request and the
  handover output for the server party. Or (privatelink) this VPC's endpoint to the server's Fleet service and the
  private name the jobs dial (``privatelink``);
- buckets: code (``code/source.tar.gz``), data (``data_prep/``), model artifacts (``client_artifact/``);
- the training jobs' security group: out to the server's Flower port and this VPC's endpoints only;
- the SageMaker execution role and ``FL-kickoff-client-job`` for the server's notebook;
- the member's identity key (KMS) and its pins document (SSM, ``<prefix>/client/<name>/pins``): ``identity``;
- a notebook instance for staging this client's data;
- the settings the kickoff step needs, as outputs and in SSM (``<prefix>/client/<name>/settings``).
"""

from __future__ import annotations

from aws_cdk import CfnOutput
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from constructs import Construct

from fl_runtime import defaults
from fl_runtime.aws.contract import PINS, ClientAccountSettings, ClientHandover, LaunchSettings
from fl_runtime.launch.fab import app_content_hash
from stacks.base import FederationStack
from stacks.bundle.builder import ENTRY_POINT, Bundle
from stacks.client_roles import (
    ARTIFACT_PREFIX,
    DATA_PREFIX,
    PUBLIC_KEYS,
    JobResources,
    kickoff_role,
    training_execution_role,
)
from stacks.code_bundle import CODE_PREFIX
from stacks.compliance import acknowledge, acknowledge_cdk_functions, objects_finding
from stacks.config import ClientAccount, FederationConfig
from stacks.handover import OUTPUT, OUTPUT_DESCRIPTION
from stacks.identity import IdentitySettings, MemberIdentity
from stacks.job_launcher import JobLauncher, LauncherSettings
from stacks.network import CrossAccountCall
from stacks.notebook import FederationNotebook, NotebookSettings, network_reads
from stacks.outputs import publish
from stacks.peering import PeeringAccepter
from stacks.peering_separate import PeeringAcceptance
from stacks.privatelink import FleetEndpoint

TRAINING_VOLUME_GB = 30  # a job's EBS volume: the staged CSVs, the code bundle's wheels, the model


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
            zones=client.availability_zones,
        )
        self.client = client
        identity = _identity_settings(config, client)
        private_names = (config.superlink_dns_name,) if config.privatelink else ()
        self.build_foundation(
            client.vpc_cidr,
            bundle,
            cross_account_calls=_identity_calls(identity),
            uses_kms=True,
            private_names=private_names,
        )
        self.identity = MemberIdentity(self, "Identity", identity)
        self.data = self.bucket("Data")
        self.artifacts = self.bucket("Artifacts")
        self.training_security_group = self._training_security_group()
        self.fleet = self._fleet_endpoint()
        resources = JobResources(
            self.code,
            self.data,
            self.artifacts,
            self.key,
            self.network.subnets,
            self.training_security_group,
            self.network.vpc,
        )
        self.execution_role = training_execution_role(self, config, client, resources, self.identity)
        self.launch_settings = self._launch_settings()
        self.launcher = JobLauncher(
            self,
            "Launcher",
            LauncherSettings(self.launch_settings, resources, self.execution_role, self.network, config.retain_data),
        )
        self.kickoff_role = kickoff_role(self, config, client, self.launcher.function)
        self._peering()
        self.notebook = self._staging_notebook()
        self.settings = self._settings()
        self._publish_settings()
        if config.separate_organisations:
            CfnOutput(
                self, OUTPUT, value=self.to_json_string(self.handover().to_dict()), description=OUTPUT_DESCRIPTION
            )
        acknowledge_cdk_functions(self)

    def _publish_settings(self) -> None:
        """The settings in SSM (and as outputs); the notebook reads them and the pins, and the identity's public key
        (doctor prints the member's fingerprint from it; the notebook cannot sign)."""
        client = self.client
        parameter = publish(
            self,
            self.config.client_parameter(client),
            self.settings.to_dict(),
            f"Federation settings of client {client.name}",
        )
        self.notebook.policy.add_statements(
            iam.PolicyStatement(
                sid="ReadSettingsAndPins",
                actions=["ssm:GetParameter"],
                resources=[parameter.parameter_arn, *self.identity.pins_arns()],
            ),
            iam.PolicyStatement(
                sid="ReadTheIdentityPublicKey", actions=["kms:GetPublicKey"], resources=[self.identity.key.key_arn]
            ),
        )

    def _peering(self) -> None:
        """One organisation: roles through which the server's deployment peers and routes. Separate organisations:
        this account accepts the server's request itself, once its id is in the config, and routes back."""
        config, client, network = self.config, self.client, self.network
        if config.privatelink:
            return
        if not config.separate_organisations:
            PeeringAccepter(
                self, "Peering", config=config, client=client, vpc=network.vpc, subnets=network.subnets,
                training_group=self.training_security_group,
            )  # fmt: skip
        elif client.peering_connection_id:
            PeeringAcceptance(
                self, "Peering", peering_id=client.peering_connection_id, server_account=config.server_account,
                server_cidr=config.server_vpc_cidr,
                vpc=network.vpc, subnets=network.subnets, operator=self.custom_resources,
            )  # fmt: skip

    def handover(self) -> ClientHandover:
        """What the server party needs from this deployment (separate organisations): public ids only."""
        client, network = self.client, self.network
        return ClientHandover(
            client=client.name,
            account=client.account,
            region=self.config.region,
            vpc_id=network.vpc.vpc_id,
            vpc_cidr=client.vpc_cidr,
            route_table_ids=tuple(s.route_table.route_table_id for s in network.subnets.subnets),
            training_security_group_id=self.training_security_group.security_group_id,
            kickoff_role_arn=self.kickoff_role.role_arn,
            launcher_arn=self.launcher.function.function_arn,
            approved_app_hashes=self.launch_settings.approved_app_hashes,
            peering_connection_id=client.peering_connection_id,
            identity_key_arn=self.identity.key.key_arn,
        )

    def _training_security_group(self) -> ec2.SecurityGroup:
        """Out to the server's Flower port (peering: its VPC; privatelink: this VPC's Fleet endpoint) and this VPC's
        endpoints, nothing else; nothing in."""
        group = ec2.SecurityGroup(
            self,
            "TrainingSecurityGroup",
            vpc=self.network.vpc,
            allow_all_outbound=False,
            description="Client training jobs: the server Flower port and this VPC endpoints, nothing else",
        )
        if not self.config.privatelink:
            group.add_egress_rule(
                ec2.Peer.ipv4(self.config.server_vpc_cidr),
                ec2.Port.tcp(self.config.flower_port),
                "Flower Fleet API on the server (TLS)",
            )
        self.network.allow_endpoint_access(group)
        return group

    def _fleet_endpoint(self) -> FleetEndpoint | None:
        """privatelink, once the server's service exists: this VPC's endpoint to it, and the name the jobs dial."""
        config = self.config
        if not (config.privatelink and config.fleet_endpoint_service):
            return None
        return FleetEndpoint(
            self, "Fleet", vpc=self.network.vpc, subnets=self.network.subnets,
            training_group=self.training_security_group, service_name=config.fleet_endpoint_service,
            port=config.flower_port, dns_name=config.superlink_dns_name,
        )  # fmt: skip

    def _staging_notebook(self) -> FederationNotebook:
        """The client's own notebook: it stages this account's data under data_prep/, nothing more."""
        security_group = ec2.SecurityGroup(
            self,
            "NotebookSecurityGroup",
            vpc=self.network.vpc,
            allow_all_outbound=False,
            description="Client notebook: this VPC endpoints only",
        )
        self.network.allow_endpoint_access(security_group)
        notebook = FederationNotebook(
            self,
            "Notebook",
            NotebookSettings(
                name=f"fl-client-{self.client.name}",
                instance_type=self.config.notebook_instance_type,
                subnet=self.network.subnets.subnets[0],
                security_group=security_group,
                key=self.key,
                code_bucket=self.code,
                code_prefix=CODE_PREFIX,
                network_reads=network_reads(self.config.privatelink),
                idle_minutes=self.config.notebook_idle_minutes,
            ),
        )
        notebook.policy.add_statements(
            iam.PolicyStatement(
                sid="StageData",
                actions=["s3:PutObject", "s3:GetObject"],
                resources=[self.data.arn_for_objects(f"{DATA_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="ListStagedData",
                actions=["s3:ListBucket"],
                resources=[self.data.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{DATA_PREFIX}*"]}},
            ),
        )
        acknowledge(
            notebook.policy,
            objects_finding(self.data, f"{DATA_PREFIX}*"),
            "stage-data writes the train and validation CSVs under data_prep/ and checks what is there",
        )
        return notebook

    def _launch_settings(self) -> LaunchSettings:
        """What this account's jobs are made of: its launcher builds every job from these alone."""
        config, client = self.config, self.client
        return LaunchSettings(
            client=client.name,
            region=config.region,
            training_job_prefix=config.training_job_prefix,
            training_image=config.training_image.uri,
            source_uri=self.code_bundle.uri,
            entry_point=ENTRY_POINT,
            execution_role_arn=self.execution_role.role_arn,
            subnet_ids=tuple(s.subnet_id for s in self.network.subnets.subnets),
            training_security_group_id=self.training_security_group.security_group_id,
            training_instance_type=config.training_instance_type,
            volume_size_gb=TRAINING_VOLUME_GB,
            data_key_arn=self.key.key_arn,
            data_uri=f"s3://{self.data.bucket_name}/{DATA_PREFIX}",
            output_uri=f"s3://{self.artifacts.bucket_name}/{ARTIFACT_PREFIX}",
            max_training_seconds=config.max_training_seconds,
            max_jobs_per_day=client.max_jobs_per_day,
            connect_seconds=int(defaults.CONNECT_TIMEOUT),
            public_key_parameter_prefix=config.client_parameter(client, PUBLIC_KEYS),
            server_vpc_cidr=config.server_vpc_cidr,
            flower_port=config.flower_port,
            approved_app_hashes=(app_content_hash(), *client.also_approved_app_hashes),
            pins_parameter=self.identity.parameter.parameter_name,
            superlink_dns_name=config.superlink_dns_name,
        )

    def _settings(self) -> ClientAccountSettings:
        """What this stack publishes for the server's kickoff step and this client's stage-data."""
        client = self.client
        return ClientAccountSettings(
            client=client.name,
            account=client.account,
            kickoff_role_arn=self.kickoff_role.role_arn,
            external_id=client.external_id,
            launcher_arn=self.launcher.function.function_arn,
            code_bucket=self.code.bucket_name,
            data_bucket=self.data.bucket_name,
            data_prefix=DATA_PREFIX,
            artifact_bucket=self.artifacts.bucket_name,
            artifact_prefix=ARTIFACT_PREFIX,
            notebook=self.notebook.name,
            vpc_id=self.network.vpc.vpc_id,
            route_table_ids=tuple(s.route_table.route_table_id for s in self.network.subnets.subnets),
            launch=self.launch_settings,
            fleet_endpoint_id=self.fleet.endpoint_id if self.fleet else "",
        )


def _identity_settings(config: FederationConfig, client: ClientAccount) -> IdentitySettings:
    """This member's identity: one organisation resolves the members' keys at job start, separate ones pin them."""
    return IdentitySettings(
        client,
        config.clients,
        config.region,
        config.client_parameter(client, PINS),
        config.retain_data,
        resolve_members=not config.separate_organisations,
    )


def _identity_calls(identity: IdentitySettings) -> tuple[CrossAccountCall, ...]:
    """One organisation: this account's training jobs read the other members' identity public keys through its KMS
    endpoint (``identity``)."""
    if not identity.peers_to_read:
        return ()
    keys = tuple(identity.peer_key_pattern(peer) for peer in identity.peers_to_read)
    return (CrossAccountCall("Kms", identity.client.training_role_arn, ("kms:GetPublicKey",), keys),)
