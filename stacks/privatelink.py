"""The privatelink network: each member reaches the SuperLink through an endpoint in its own VPC, one way.

Flower's traffic runs one way (every SuperNode dials the SuperLink), and so does PrivateLink: a member's endpoint
carries connections into the server's Fleet port and nothing back. No peering, no route between the VPCs, no role
of one account in another: their address blocks may overlap.

Server side (``FleetService``, ServerStack, deployed first):
- an internal Network Load Balancer in every zone of the server VPC (cross-zone), a TCP listener on the Flower port,
  forwarding to an IP target group: a notebook instance is not an EC2 instance of the account, so ``federate``
  registers the notebook's current address (and ``doctor`` checks it); the TLS of the Fleet API passes through;
- a VPC endpoint service in front of it, acceptance required, whose allowed principals are the member accounts:
  only they may create an endpoint to it, and ``federate`` accepts the pending connections of member accounts;
- the load balancer's security group reaches only the notebook's Flower port; the notebook admits only it. Every
  member's connection then arrives from the load balancer: what tells members apart is SuperNode authentication
  (each job's key, published in its own account) and the members' signatures, not the network.

Client side (``FleetEndpoint``, each client stack, once the server's service name is in the config):
- an interface endpoint to that service in this VPC's subnets (placed by zone id, like the server's), whose
  security group admits only this account's training jobs on the Flower port;
- a private hosted zone in this VPC answering ``superlink_dns_name`` with the endpoint: the jobs dial that name,
  which this account controls, the DNS firewall allows, and the SuperLink's certificate must carry.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as targets
from constructs import Construct

from fl_runtime.aws.contract import endpoint_service_name
from stacks.compliance import AWS_SOLUTIONS, HIPAA, acknowledge

REGISTER_TARGETS = ("elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets")
ACCEPT = ("ec2:AcceptVpcEndpointConnections",)
DESCRIBE_FLEET = (
    "elasticloadbalancing:DescribeTargetHealth",
    "ec2:DescribeVpcEndpointConnections",
    "ec2:DescribeVpcEndpointServiceConfigurations",
)
FLEET_OPERATIONS = REGISTER_TARGETS + ACCEPT + DESCRIBE_FLEET  # the server notebook's, besides PRIVATELINK_READS


class FleetService(Construct):
    """The server's load balancer and endpoint service in front of the notebook's Flower port."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SelectedSubnets,
        notebook_group: ec2.SecurityGroup,
        port: int,
        member_principals: list[str],
    ) -> None:
        super().__init__(scope, construct_id)
        self.load_balancer = self._load_balancer(vpc, subnets, notebook_group, port)
        self.target_group = elbv2.NetworkTargetGroup(
            self,
            "Notebook",
            vpc=vpc,
            port=port,
            protocol=elbv2.Protocol.TCP,
            target_type=elbv2.TargetType.IP,
            health_check=elbv2.HealthCheck(protocol=elbv2.Protocol.TCP, interval=Duration.seconds(10)),
            deregistration_delay=Duration.seconds(30),
        )
        listener = self.load_balancer.add_listener(
            "Fleet", port=port, protocol=elbv2.Protocol.TCP, default_target_groups=[self.target_group]
        )
        end_to_end = (
            "TLS passes through to the SuperLink, whose certificate each run's own CA signs and each member's job "
            "verifies (for the private name it dials): a certificate at the load balancer would decrypt the Fleet "
            "API there"
        )
        acknowledge(listener, f"{HIPAA}ELBv2ACMCertificateRequired", end_to_end)
        self.service = ec2.VpcEndpointService(
            self,
            "EndpointService",
            vpc_endpoint_service_load_balancers=[self.load_balancer],
            acceptance_required=True,
            allowed_principals=[iam.ArnPrincipal(arn) for arn in member_principals],
        )
        self.service_name = endpoint_service_name(Stack.of(self).region, self.service.vpc_endpoint_service_id)
        CfnOutput(
            self,
            "FleetEndpointServiceName",
            value=self.service_name,
            description="privatelink: each client's federation config, field fleet_endpoint_service",
        )

    def _load_balancer(
        self, vpc: ec2.IVpc, subnets: ec2.SelectedSubnets, notebook_group: ec2.SecurityGroup, port: int
    ) -> elbv2.NetworkLoadBalancer:
        """Internal, in every zone of the server VPC, cross-zone; its group reaches the notebook's Flower port only."""
        group = _fleet_hop(
            self, "LoadBalancerSecurityGroup", vpc, "Fleet load balancer: on to the notebook Flower port"
        )
        _admit(group, notebook_group, port, "Flower Fleet API from the member endpoints to the SuperLink gateway")
        load_balancer = elbv2.NetworkLoadBalancer(
            self,
            "LoadBalancer",
            vpc=vpc,
            internet_facing=False,
            vpc_subnets=ec2.SubnetSelection(subnets=subnets.subnets),
            cross_zone_enabled=True,
            security_groups=[group],
            # the endpoint's traffic is admitted by the service's allowed principals and acceptance, not by rules on
            # addresses the members choose (theirs may overlap)
            enforce_security_group_inbound_rules_on_private_link_traffic=False,
        )
        _acknowledge_pass_through(load_balancer)
        return load_balancer


def _fleet_hop(scope: Construct, construct_id: str, vpc: ec2.IVpc, description: str) -> ec2.SecurityGroup:
    """A group on the Flower port's way: nothing in or out but what ``_admit`` opens."""
    return ec2.SecurityGroup(scope, construct_id, vpc=vpc, allow_all_outbound=False, description=description)


def _admit(sender: ec2.SecurityGroup, receiver: ec2.SecurityGroup, port: int, what: str) -> None:
    """``sender`` may reach ``receiver`` on ``port`` (both rules: neither group allows anything by default)."""
    sender.add_egress_rule(receiver, ec2.Port.tcp(port), what)
    receiver.add_ingress_rule(sender, ec2.Port.tcp(port), what)


def _acknowledge_pass_through(load_balancer: elbv2.NetworkLoadBalancer) -> None:
    reason = (
        "A TCP pass-through listener: the Fleet API's TLS ends at the SuperLink, so the load balancer sees no request "
        "to log; connections are in the server VPC's flow logs, and the SuperLink logs each node"
    )
    acknowledge(load_balancer, f"{AWS_SOLUTIONS}ELB2", reason)
    acknowledge(load_balancer, f"{HIPAA}ELBLoggingEnabled", reason)
    deletion = "Created and removed with the stack (cdk destroy); it holds no data, the notebook re-registers on start"
    acknowledge(load_balancer, f"{HIPAA}ELBDeletionProtectionEnabled", deletion)


class FleetEndpoint(Construct):
    """A client's endpoint to the server's Fleet service and the private name its jobs dial."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        subnets: ec2.SelectedSubnets,
        training_group: ec2.SecurityGroup,
        service_name: str,
        port: int,
        dns_name: str,
    ) -> None:
        super().__init__(scope, construct_id)
        group = _fleet_hop(
            self, "SecurityGroup", vpc, "Fleet endpoint: the Flower port from this account training jobs only"
        )
        _admit(
            training_group,
            group,
            port,
            "Flower Fleet API from this account training jobs through the federation endpoint",
        )
        self.endpoint = ec2.InterfaceVpcEndpoint(
            self,
            "Endpoint",
            vpc=vpc,
            service=ec2.InterfaceVpcEndpointService(service_name, port),
            subnets=ec2.SubnetSelection(subnets=subnets.subnets),
            security_groups=[group],
            private_dns_enabled=False,
            open=False,
        )
        zone = route53.PrivateHostedZone(
            self,
            "Zone",
            zone_name=dns_name,
            vpc=vpc,
            comment="The federation's SuperLink, through this account's endpoint",
        )
        route53.ARecord(
            self,
            "SuperLink",
            zone=zone,
            record_name=dns_name,
            target=route53.RecordTarget.from_alias(targets.InterfaceVpcEndpointTarget(self.endpoint)),
        )
        self.endpoint_id = self.endpoint.vpc_endpoint_id


def allow_fleet_operations(policy: iam.ManagedPolicy, fleet: FleetService) -> None:
    """What federate and doctor do on the server's notebook: register its address as the load balancer's target,
    and accept the member accounts' endpoint connections (CloudFormation cannot: they exist only once each member
    has deployed)."""
    stack = Stack.of(policy)
    service_arn = stack.format_arn(
        service="ec2", resource="vpc-endpoint-service", resource_name=fleet.service.vpc_endpoint_service_id
    )
    policy.add_statements(
        iam.PolicyStatement(
            sid="RegisterTheNotebookAsTheFleetTarget", actions=list(REGISTER_TARGETS),
            resources=[fleet.target_group.target_group_arn],
        ),
        iam.PolicyStatement(sid="AcceptTheMembersEndpoints", actions=list(ACCEPT), resources=[service_arn]),
        iam.PolicyStatement(sid="DescribeTheFleetService", actions=list(DESCRIBE_FLEET), resources=["*"]),
    )  # fmt: skip
    acknowledge(
        policy,
        f"{AWS_SOLUTIONS}IAM5[Resource::*]",
        "DescribeTargetHealth, DescribeVpcEndpointConnections and DescribeVpcEndpointServiceConfigurations support "
        "no resource-level permissions; they only read",
    )
