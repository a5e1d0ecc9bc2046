"""Cross-account VPC peering, in the two deployment modes, and the Flower port rule it carries.

One organisation (``PeeringAccepter`` and ``Peering``, here; separate organisations: ``peering_separate``): it
comes up with one ``cdk deploy`` and goes with one ``cdk destroy``.

Client side (``PeeringAccepter``, deployed first, in the client account):
- publishes its VPC id, training security group id and route-table ids in SSM;
- ``FL-peering-accepter``: trusted only by the server's CloudFormation execution role, may only accept a
  peering into this VPC that the server account requested (CloudFormation assumes it while creating the
  peering);
- ``FL-peering-routes``: trusted only by the server's ``FL-peering-operator`` role, may read those
  parameters and add, replace or delete routes in this VPC's route tables.

Server side (``Peering``, in the server account, one per client):
- reads the client's VPC and route-table ids through ``FL-peering-routes``;
- creates the peering connection (accepted automatically through ``FL-peering-accepter``);
- adds routes to the client CIDR in the server's route tables, and routes to the server CIDR in the
  client's route tables through ``FL-peering-routes``. Those client-side routes are custom resources
  with fixed physical ids, so an update replaces the route and a stack deletion deletes it.

Either way the server's Flower port admits the client's training security group (a reference across the
peering, which AWS allows within a region once the peering is active), not the client's whole CIDR.
"""

from __future__ import annotations

from aws_cdk import Duration, Fn, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.bundle.builder import content_digest
from stacks.compliance import AWS_SOLUTIONS, acknowledge
from stacks.config import PEERING_ACCEPTER_ROLE_NAME, PEERING_ROUTES_ROLE_NAME, ClientAccount, FederationConfig
from stacks.roles import CustomResourceRuntime, attach

# One parameter: "vpc-id,training-security-group-id,route-table-id,...", read by the server in one call.
PEERING_IDS = "peering/vpc-and-route-table-ids"
PEER_GONE = r"InvalidVpcPeeringConnectionID\.NotFound"  # a peering the other side already deleted


def admit_client_jobs(scope: Construct, group_id: str, client: ClientAccount, client_group_id: str, port: int):
    """The Flower port of the server's group ``group_id``, from the client's training security group only."""
    return ec2.CfnSecurityGroupIngress(
        scope,
        "FlowerPortFromClientJobs",
        group_id=group_id,
        ip_protocol="tcp",
        from_port=port,
        to_port=port,
        source_security_group_id=client_group_id,
        source_security_group_owner_id=client.account,
        description=f"Flower Fleet API from the training jobs of client {client.name}",
    )


def route_to_peer(scope: Construct, subnets: ec2.SelectedSubnets, cidr: str, peering_id: str) -> list[ec2.CfnRoute]:
    """A route to ``cidr`` through the peering in each route table of ``subnets``."""
    return [
        ec2.CfnRoute(
            scope,
            f"Route{index}",
            route_table_id=subnet.route_table.route_table_id,
            destination_cidr_block=cidr,
            vpc_peering_connection_id=peering_id,
        )
        for index, subnet in enumerate(subnets.subnets)
    ]


class PeeringAccepter(Construct):
    """Client side: what the server needs to peer with this VPC and route back to the server."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FederationConfig,
        client: ClientAccount,
        vpc: ec2.Vpc,
        subnets: ec2.SelectedSubnets,
        training_group: ec2.ISecurityGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config, self.client, self.vpc, self.subnets = config, client, vpc, subnets
        route_tables = [s.route_table.route_table_id for s in subnets.subnets]
        ids = ssm.StringParameter(
            self,
            "Ids",
            parameter_name=config.client_parameter(client, PEERING_IDS),
            string_value=Fn.join(",", [vpc.vpc_id, training_group.security_group_id, *route_tables]),
            description="VPC id, training security group id and route-table ids, for the server's peering operator",
        )
        self.accepter_role = self._accepter_role()
        self.routes_role = self._routes_role(ids)

    def _accepter_role(self) -> iam.Role:
        """FL-peering-accepter: accept a peering the server account requests, into this VPC only."""
        config, stack = self.config, Stack.of(self)
        vpc_arn = stack.format_arn(service="ec2", resource="vpc", resource_name=self.vpc.vpc_id)
        # the connection the server requests: AWS authorises it under the requester's account; listing
        # this account's id too keeps the grant valid whichever owner the ARN carries
        peerings = [
            stack.format_arn(service="ec2", resource="vpc-peering-connection", resource_name="*", account=account)
            for account in (config.server_account, self.client.account)
        ]
        role = iam.Role(
            self,
            "AccepterRole",
            role_name=PEERING_ACCEPTER_ROLE_NAME,
            # the server's CloudFormation execution role accepts while it creates the peering; no one else
            assumed_by=iam.AccountPrincipal(config.server_account).with_conditions(
                {"ArnEquals": {"aws:PrincipalArn": config.server_deployment_role_arn}}
            ),
            description="Lets the federation server deployment peer its VPC with this one (accept only)",
        )
        # AcceptVpcPeeringConnection is authorised on two resources: the accepter VPC (this one, named) and
        # the connection. The AccepterVpc/RequesterVpc keys exist on the connection only, so they go there:
        # on the VPC statement they would be absent and the accept denied
        server_vpcs = f"arn:{stack.partition}:ec2:{config.region}:{config.server_account}:vpc/*"
        accept = attach(
            self,
            "AccepterPolicy",
            role,
            [
                iam.PolicyStatement(
                    sid="AcceptIntoThisVpcOnly", actions=["ec2:AcceptVpcPeeringConnection"], resources=[vpc_arn]
                ),
                iam.PolicyStatement(
                    sid="AcceptOnlyFromTheServerAccount",
                    actions=["ec2:AcceptVpcPeeringConnection"],
                    resources=peerings,
                    conditions={
                        "ArnEquals": {"ec2:AccepterVpc": vpc_arn},
                        "ArnLike": {"ec2:RequesterVpc": server_vpcs},
                    },
                ),
            ],
        )
        for peering in peerings:
            acknowledge(
                accept,
                f"{AWS_SOLUTIONS}IAM5[Resource::{peering}]",
                "The peering connection id does not exist before the server requests it; conditions pin the "
                "accepter VPC to this one and the requester to the server account",
            )
        return role

    def _routes_role(self, ids: ssm.StringParameter) -> iam.Role:
        """FL-peering-routes: the server's peering operator reads this VPC's ids and routes back to the server."""
        stack = Stack.of(self)
        role = iam.Role(
            self,
            "RoutesRole",
            role_name=PEERING_ROUTES_ROLE_NAME,
            assumed_by=iam.AccountPrincipal(self.config.server_account).with_conditions(
                {"ArnEquals": {"aws:PrincipalArn": self.config.peering_operator_role_arn}}
            ),
            description="Lets the server peering operator read this VPC ids and route back to the server VPC",
        )
        route_tables = [
            stack.format_arn(service="ec2", resource="route-table", resource_name=s.route_table.route_table_id)
            for s in self.subnets.subnets
        ]
        attach(
            self,
            "RoutesPolicy",
            role,
            [
                iam.PolicyStatement(
                    actions=["ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute"], resources=route_tables
                ),
                iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[ids.parameter_arn]),
            ],
        )
        return role


def allow_peering_operations(operator: CustomResourceRuntime, config: FederationConfig) -> None:
    """ServerStack's custom-resource role (named FL-peering-operator, so client accounts can trust exactly
    it) assumes each client's FL-peering-routes role to read VPC ids and manage the client-side routes."""
    arn_partition = Stack.of(operator.role).partition
    operator.policy.add_statements(
        iam.PolicyStatement(
            actions=["sts:AssumeRole"],
            resources=[f"arn:{arn_partition}:iam::{c.account}:role/{PEERING_ROUTES_ROLE_NAME}" for c in config.clients],
        )
    )


# a rollback after a failed createRoute, or a route removed by hand, must not block the delete
ROUTE_GONE = r"InvalidRoute\.NotFound"


class Peering(Construct):
    """Server side of one client's peering: connection, routes on both sides (see the module docstring)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: FederationConfig,
        client: ClientAccount,
        vpc: ec2.Vpc,
        subnets: ec2.SelectedSubnets,
        operator: CustomResourceRuntime,
        flower_group: ec2.ISecurityGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self.config, self.client, self.operator = config, client, operator
        arn_partition = Stack.of(self).partition
        self.routes_role = f"arn:{arn_partition}:iam::{client.account}:role/{PEERING_ROUTES_ROLE_NAME}"
        ids = self._client_ids()
        self.connection = ec2.CfnVPCPeeringConnection(
            self,
            "Connection",
            vpc_id=vpc.vpc_id,
            peer_vpc_id=Fn.select(0, ids),
            peer_owner_id=client.account,
            peer_region=config.region,
            peer_role_arn=f"arn:{arn_partition}:iam::{client.account}:role/{PEERING_ACCEPTER_ROLE_NAME}",
            tags=[{"key": "Name", "value": f"fl-server-to-{client.name}"}],
        )
        self.peering_id = self.connection.ref
        route_to_peer(Construct(self, "ServerRoutes"), subnets, client.vpc_cidr, self.peering_id)
        for index in range(len(config.availability_zones)):
            self._client_route(index, Fn.select(index + 2, ids))
        self.client_security_group_id = Fn.select(1, ids)
        # a reference across the peering is valid once it is active: CloudFormation accepted it above
        admit_client_jobs(
            self, flower_group.security_group_id, client, self.client_security_group_id, config.flower_port
        ).node.add_dependency(self.connection)

    def _client_ids(self) -> list[str]:
        """The client's VPC id and route-table ids, read through its FL-peering-routes role."""
        config, client = self.config, self.client
        # changes with what the client VPC is made from: a replaced client VPC is read again
        vpc_shape = content_digest(
            *(part.encode() for part in (client.vpc_cidr, *(client.availability_zones or config.availability_zones)))
        )[:8]
        lookup = cr.AwsCustomResource(
            self,
            "ClientIds",
            on_update=cr.AwsSdkCall(
                service="SSM",
                action="getParameter",
                parameters={"Name": config.client_parameter(client, PEERING_IDS)},
                assumed_role_arn=self.routes_role,
                physical_resource_id=cr.PhysicalResourceId.of(f"fl-peering-ids-{client.name}-{vpc_shape}"),
                output_paths=["Parameter.Value"],
            ),
            role=self.operator.role,
            log_group=self.operator.log_group,
            install_latest_aws_sdk=False,
            timeout=Duration.minutes(2),
        )
        lookup.node.add_dependency(self.operator.policy)
        zones = len(config.availability_zones)
        return Fn.split(",", lookup.get_response_field("Parameter.Value"), assumed_length=zones + 2)

    def _client_route(self, index: int, route_table: str) -> None:
        """A route to the server VPC in one client route table, made, replaced and deleted with this stack."""
        route = {"RouteTableId": route_table, "DestinationCidrBlock": self.config.server_vpc_cidr}

        def call(action: str, parameters: dict, ignore: str | None = None) -> cr.AwsSdkCall:
            return cr.AwsSdkCall(
                service="EC2",
                action=action,
                parameters=parameters,
                assumed_role_arn=self.routes_role,
                # fixed: an update must not look like a new resource, or CloudFormation deletes the route it just made
                physical_resource_id=cr.PhysicalResourceId.of(f"fl-route-{self.client.name}-{index}"),
                ignore_error_codes_matching=ignore,
            )

        with_peering = {**route, "VpcPeeringConnectionId": self.connection.ref}
        client_route = cr.AwsCustomResource(
            self,
            f"ClientRoute{index}",
            on_create=call("createRoute", with_peering),
            on_update=call("replaceRoute", with_peering),
            on_delete=call("deleteRoute", route, ignore=ROUTE_GONE),
            role=self.operator.role,
            log_group=self.operator.log_group,
            install_latest_aws_sdk=False,
            timeout=Duration.minutes(2),
        )
        client_route.node.add_dependency(self.operator.policy)
