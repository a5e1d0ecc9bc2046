"""What every stack of the federation shares: account, region, pinned zones, and its foundation.

The foundation of an account: a KMS data key, the access-log bucket, the runtime of the deployment-time
custom resources (role, policy, log group), the private network, the code bucket with the code bundle.
Each stack builds it first, then adds what is specific to its side.
"""

from __future__ import annotations

from aws_cdk import Environment, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.bootstrap_policy import BOUNDARY_NAME
from stacks.bundle.builder import Bundle
from stacks.code_bundle import CodeBundle
from stacks.config import FederationConfig
from stacks.network import CrossAccountCall, NetworkSettings, PrivateNetwork
from stacks.roles import custom_resource_runtime
from stacks.storage import access_log_bucket, data_key, secure_bucket

# every deploy replaces the ~250 MB code bundle: keep the replaced ones for a month of roll-back, not forever
CODE_VERSIONS_DAYS = 30


class FederationStack(Stack):
    """A stack whose availability zones come from the config, so synth needs no AWS lookup."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FederationConfig,
        account: str,
        description: str,
        zones: tuple[str, ...] = (),
    ) -> None:
        """``zones``: this account's names of the federation's zones (default: ``availability_zones``)."""
        self._zones = list(zones or config.availability_zones)
        super().__init__(
            scope, construct_id, env=Environment(account=account, region=config.region), description=description
        )
        self.config = config
        if not config.separate_organisations:  # deployed through bootstrap trust: every role within the boundary
            boundary = iam.ManagedPolicy.from_managed_policy_name(self, "DeploymentBoundary", BOUNDARY_NAME)
            iam.PermissionsBoundary.of(self).apply(boundary)

    @property
    def availability_zones(self) -> list[str]:
        return self._zones

    def build_foundation(
        self,
        vpc_cidr: str,
        bundle: Bundle,
        custom_resource_role_name: str | None = None,
        cross_account_calls: tuple[CrossAccountCall, ...] = (),
        uses_kms: bool = False,
        registers_targets: bool = False,
        private_names: tuple[str, ...] = (),
    ) -> None:
        """``custom_resource_role_name``: a fixed name when other accounts must trust that role;
        ``cross_account_calls``: what crosses accounts through this VPC's endpoints (the server's calls to the
        clients' launchers, which also give the VPC a Lambda endpoint); ``uses_kms``: a KMS endpoint too (a
        client's identity key); ``registers_targets``: an Elastic Load Balancing endpoint too (privatelink's server);
        ``private_names``: what a private hosted zone of this VPC answers (privatelink's clients)."""
        retain = self.config.retain_data
        self.key = data_key(self, "DataKey", retain)
        self.access_logs = access_log_bucket(self, "AccessLogs")
        self.custom_resources = custom_resource_runtime(self, self.key, retain, custom_resource_role_name)
        self.network = PrivateNetwork(
            self,
            "Network",
            NetworkSettings(
                vpc_cidr,
                tuple(self._zones),
                retain,
                self.key,
                invokes_lambda=any(call.endpoint == "Lambda" for call in cross_account_calls),
                uses_kms=uses_kms,
                cross_account_calls=cross_account_calls,
                registers_targets=registers_targets,
                private_names=private_names,
            ),
            self.custom_resources,
        )
        self.code = self.bucket("Code", noncurrent_days=CODE_VERSIONS_DAYS)
        self.code_bundle = CodeBundle(self, "CodeBundle", bundle, self.code, self.custom_resources.log_group)

    def bucket(self, construct_id: str, noncurrent_days: int | None = None) -> s3.Bucket:
        return secure_bucket(
            self,
            construct_id,
            key=self.key,
            logs=self.access_logs,
            retain=self.config.retain_data,
            noncurrent_days=noncurrent_days,
        )
