"""A private-only VPC: isolated subnets, flow logs, the VPC endpoints notebooks and training jobs use, and a
DNS firewall.

There is no internet or NAT gateway. S3 is reached through a gateway endpoint whose policy admits only
this account's buckets (data cannot be copied out through it) and, read-only, the Amazon Linux 2023
package repository of the region (notebooks install Python 3.11 from it); SageMaker API, STS, CloudWatch Logs, SSM,
EC2 (and where a stack asks for them, Lambda and KMS) through interface endpoints with private DNS, behind a
security group that admits HTTPS only from the security groups registered with ``allow_endpoint_access``. Each
interface endpoint's policy admits this account's principals on this account's resources (STS: this account's
principals), plus exactly the cross-account calls a stack declares, each for its role (or, for many accounts, a
role name in each of those accounts), its actions and resources:
credentials of another account cannot carry data out through them. The VPC resolver answers only the names of
these endpoints and buckets (``dns_firewall``): no data leaves as DNS queries.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.compliance import AWS_SOLUTIONS, HIPAA, acknowledge
from stacks.config import SUBNET_PREFIX
from stacks.dns_firewall import DnsFirewall, aws_names
from stacks.roles import CustomResourceRuntime, service_principal
from stacks.storage import encrypted_log_group

# endpoint: (service, the host name its private DNS answers, with {region})
INTERFACE_ENDPOINTS = {
    "SageMakerApi": (ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API, "api.sagemaker.{region}.amazonaws.com"),
    "Sts": (ec2.InterfaceVpcEndpointAwsService.STS, "sts.{region}.amazonaws.com"),
    "Logs": (ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS, "logs.{region}.amazonaws.com"),
    "Ssm": (ec2.InterfaceVpcEndpointAwsService.SSM, "ssm.{region}.amazonaws.com"),
    # doctor reads the peering, route tables and security groups from the notebooks
    "Ec2": (ec2.InterfaceVpcEndpointAwsService.EC2, "ec2.{region}.amazonaws.com"),
}
# the server's notebook invokes the clients' launchers; nothing in a client VPC calls Lambda
LAMBDA_ENDPOINT = {"Lambda": (ec2.InterfaceVpcEndpointAwsService.LAMBDA_, "lambda.{region}.amazonaws.com")}
# a client's training jobs sign with its identity key (and read the members' public keys); doctor reads its own
KMS_ENDPOINT = {"Kms": (ec2.InterfaceVpcEndpointAwsService.KMS, "kms.{region}.amazonaws.com")}
# privatelink: the server's notebook registers itself as the Fleet load balancer's target (federate, doctor)
LOAD_BALANCING_ENDPOINT = {
    "LoadBalancing": (
        ec2.InterfaceVpcEndpointAwsService.ELASTIC_LOAD_BALANCING,
        "elasticloadbalancing.{region}.amazonaws.com",
    )
}
# STS calls have no resource of this account (GetCallerIdentity has none, AssumeRole's is the role assumed,
# whose own trust policy decides): its endpoint checks the caller's account only
PRINCIPAL_ONLY = {"Sts"}


@dataclass(frozen=True)
class CrossAccountCall:
    """A call across accounts through this VPC's ``endpoint``: another account's role on this account's resources
    (the server's notebook, holding a client's kickoff-role session, reads that client's settings and invokes its
    launcher), or this account's role on another account's (in one organisation, a client's training jobs read the
    other members' identity public keys)."""

    endpoint: str  # a key of INTERFACE_ENDPOINTS, LAMBDA_ENDPOINT or KMS_ENDPOINT
    principal_arn: str  # one role's ARN; or, with ``accounts``, a pattern that names the role in each of them
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    # the accounts of both the principal and the resources, when one statement holds the call for many accounts
    # (the server's kickoff calls: the policy grows by an account id per member, not by a statement)
    accounts: tuple[str, ...] = ()

    def conditions(self) -> dict:
        if not self.accounts:
            return {"ArnEquals": {"aws:PrincipalArn": self.principal_arn}}
        accounts = list(self.accounts)
        return {
            "ArnLike": {"aws:PrincipalArn": self.principal_arn},
            "StringEquals": {"aws:PrincipalAccount": accounts, "aws:ResourceAccount": accounts},
        }


@dataclass(frozen=True)
class NetworkSettings:
    cidr: str
    availability_zones: tuple[str, ...]
    retain_logs: bool
    log_key: kms.IKey
    invokes_lambda: bool = False  # a Lambda endpoint too
    uses_kms: bool = False  # a KMS endpoint too
    cross_account_calls: tuple[CrossAccountCall, ...] = ()
    registers_targets: bool = False  # an Elastic Load Balancing endpoint too
    private_names: tuple[str, ...] = ()  # names a private hosted zone of this VPC answers: the DNS firewall allows them


class PrivateNetwork(Construct):
    """VPC + flow logs + endpoints; see the module docstring."""

    def __init__(
        self, scope: Construct, construct_id: str, settings: NetworkSettings, custom_resources: CustomResourceRuntime
    ) -> None:
        """``custom_resources``: the role, policy and log group of the stack's AwsCustomResource Lambda."""
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            ip_addresses=ec2.IpAddresses.cidr(settings.cidr),
            availability_zones=list(settings.availability_zones),
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="private", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=SUBNET_PREFIX
                )
            ],
            restrict_default_security_group=True,
        )
        acknowledge(
            self.vpc,
            "CloudFormation-Validate::W3010",
            "Availability zones come from the federation config (pinned so synth needs no AWS lookup); "
            "set them per region in cdk.json",
        )
        self._flow_logs(settings)
        self.subnets = self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.s3_endpoint = self._s3_endpoint()
        endpoints = {
            **INTERFACE_ENDPOINTS,
            **(LAMBDA_ENDPOINT if settings.invokes_lambda else {}),
            **(KMS_ENDPOINT if settings.uses_kms else {}),
            **(LOAD_BALANCING_ENDPOINT if settings.registers_targets else {}),
        }
        self.endpoint_security_group = self._interface_endpoints(endpoints, settings.cross_account_calls)
        self.s3_prefix_list_id = self._s3_prefix_list_id(custom_resources)
        region = Stack.of(self).region
        self.dns_firewall = DnsFirewall(
            self,
            "DnsFirewall",
            vpc=self.vpc,
            allowed_names=aws_names(
                region, [*(name.format(region=region) for _, name in endpoints.values()), *settings.private_names]
            ),
            log_key=settings.log_key,
            retain_logs=settings.retain_logs,
        )

    def _flow_logs(self, settings: NetworkSettings) -> None:
        """All traffic, into an encrypted log group of this stack."""
        flow_logs = encrypted_log_group(self, "FlowLogs", settings.log_key, settings.retain_logs)
        delivery = iam.Role(
            self,
            "FlowLogRole",
            assumed_by=service_principal(
                self, "vpc-flow-logs.amazonaws.com", Stack.of(self).format_arn(service="ec2", resource="vpc-flow-log/*")
            ),
            description="VPC flow log delivery",
        )
        acknowledge(
            delivery,
            f"{HIPAA}IAMNoInlinePolicy",
            "CDK's flow-log construct grants its delivery role write access to exactly this log group, "
            "as an inline policy",
        )
        self.vpc.add_flow_log(
            "FlowLog",
            destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs, delivery),
            traffic_type=ec2.FlowLogTrafficType.ALL,
        )

    def _s3_endpoint(self) -> ec2.GatewayVpcEndpoint:
        """S3 for this account's buckets, and read-only the Amazon Linux package repository."""
        stack = Stack.of(self)
        endpoint = self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)
        endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="OnlyThisAccountsBuckets",
                principals=[iam.AnyPrincipal()],
                actions=["s3:*"],
                resources=["*"],
                conditions={"StringEquals": {"s3:ResourceAccount": stack.account}},
            )
        )
        # the notebooks install python3.11 from the Amazon Linux 2023 repository, an AWS-owned bucket
        endpoint.add_to_policy(
            iam.PolicyStatement(
                sid="AmazonLinux2023PackagesReadOnly",
                principals=[iam.AnyPrincipal()],
                actions=["s3:GetObject"],
                resources=[f"arn:{stack.partition}:s3:::al2023-repos-{stack.region}-de612dc2/*"],
            )
        )
        return endpoint

    def _interface_endpoints(
        self, services: dict[str, tuple[ec2.InterfaceVpcEndpointAwsService, str]], calls: tuple[CrossAccountCall, ...]
    ) -> ec2.SecurityGroup:
        """These endpoints, behind one security group, each with its policy; returns that group."""
        group = ec2.SecurityGroup(
            self,
            "EndpointSecurityGroup",
            vpc=self.vpc,
            allow_all_outbound=False,
            description="Interface endpoints: HTTPS from this VPC notebooks and training jobs only",
        )
        for name, (service, _) in services.items():
            endpoint = self.vpc.add_interface_endpoint(
                name,
                service=service,
                private_dns_enabled=True,
                open=False,
                security_groups=[group],
                subnets=ec2.SubnetSelection(subnets=self.subnets.subnets),
            )
            for statement in endpoint_statements(name, Stack.of(self).account, calls):
                endpoint.add_to_policy(statement)
        return group

    def _s3_prefix_list_id(self, runtime: CustomResourceRuntime) -> str:
        """The region's S3 prefix list, so security groups can allow S3 (gateway) and nothing else."""
        region = Stack.of(self).region
        lookup = cr.AwsCustomResource(
            self,
            "S3PrefixList",
            on_update=cr.AwsSdkCall(
                service="EC2",
                action="describeManagedPrefixLists",
                parameters={"Filters": [{"Name": "prefix-list-name", "Values": [f"com.amazonaws.{region}.s3"]}]},
                physical_resource_id=cr.PhysicalResourceId.of(f"s3-prefix-list-{region}"),
                output_paths=["PrefixLists.0.PrefixListId"],
            ),
            role=runtime.role,
            log_group=runtime.log_group,
            install_latest_aws_sdk=False,
            timeout=Duration.minutes(2),
        )
        lookup.node.add_dependency(runtime.policy)
        runtime.policy.add_statements(iam.PolicyStatement(actions=["ec2:DescribeManagedPrefixLists"], resources=["*"]))
        acknowledge(
            runtime.policy,
            f"{AWS_SOLUTIONS}IAM5[Resource::*]",
            "ec2:DescribeManagedPrefixLists does not support resource-level permissions; it only reads AWS-managed "
            "prefix lists",
        )
        return lookup.get_response_field("PrefixLists.0.PrefixListId")

    def allow_endpoint_access(self, peer: ec2.SecurityGroup) -> None:
        """Let ``peer`` reach this VPC's interface endpoints and S3, and nothing else on 443."""
        self.endpoint_security_group.add_ingress_rule(peer, ec2.Port.tcp(443), "HTTPS to interface endpoints")
        peer.add_egress_rule(self.endpoint_security_group, ec2.Port.tcp(443), "HTTPS to this VPC interface endpoints")
        peer.add_egress_rule(
            ec2.Peer.prefix_list(self.s3_prefix_list_id), ec2.Port.tcp(443), "HTTPS to S3 via the gateway endpoint"
        )


def endpoint_statements(endpoint: str, account: str, calls: tuple[CrossAccountCall, ...]) -> list[iam.PolicyStatement]:
    """The policy of one interface endpoint: this account's principals on this account's resources (where a call
    has a resource), and the cross-account calls declared for this endpoint, each to its principal and resources."""
    own = {"aws:PrincipalAccount": account}
    conditions: dict = {"StringEquals": own}
    if endpoint not in PRINCIPAL_ONLY:
        conditions["StringEqualsIfExists"] = {"aws:ResourceAccount": account}
    statements = [
        iam.PolicyStatement(
            sid="ThisAccountsPrincipalsOnThisAccountsResources",
            principals=[iam.AnyPrincipal()],
            actions=["*"],
            resources=["*"],
            conditions=conditions,
        )
    ]
    for index, call in enumerate(c for c in calls if c.endpoint == endpoint):
        statements.append(
            iam.PolicyStatement(
                sid=f"CrossAccountCall{index}",
                principals=[iam.AnyPrincipal()],
                actions=list(call.actions),
                resources=list(call.resources),
                conditions=call.conditions(),
            )
        )
    return statements
