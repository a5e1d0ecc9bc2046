"""Cross-account VPC peering between separate organisations: no party holds a role in the other's account.

The server's stack requests the peering with the VPC named in the client's handover file (``PeeringRequest``) and
routes the client's CIDR to it; such a route is a blackhole until the client accepts. The client's stack, once given
the request's id, accepts it with its own deployment and routes the server's CIDR back (``PeeringAcceptance``).
The server admits the client's jobs to its Flower port once the client's handover says it accepted: a security
group reference across a peering is valid only while the peering is active. A client leaves by removing the id
from its config and redeploying (its stack deletes the peering and its routes), or by destroying its stack.
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from constructs import Construct

from fl_runtime.aws.contract import ClientHandover
from stacks.compliance import AWS_SOLUTIONS, acknowledge
from stacks.config import ClientAccount
from stacks.peering import PEER_GONE, admit_client_jobs, route_to_peer
from stacks.roles import CustomResourceRuntime, attach

CREATED = "VpcPeeringConnection.VpcPeeringConnectionId"  # where createVpcPeeringConnection answers with the id


class PeeringRequest(Construct):
    """Server side: request the peering with the client VPC of the handover, route the client's CIDR to it, and
    admit the client's jobs to the Flower port once the client's handover says it accepted."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handover: ClientHandover,
        client: ClientAccount,
        vpc: ec2.Vpc,
        subnets: ec2.SelectedSubnets,
        operator: CustomResourceRuntime,
        flower_group: ec2.ISecurityGroup,
        flower_port: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.peering_id = self._request(vpc, handover, operator)
        route_to_peer(Construct(self, "ServerRoutes"), subnets, handover.vpc_cidr, self.peering_id)
        self.client_security_group_id = handover.training_security_group_id
        if handover.peering_connection_id:  # accepted: the reference across the peering is valid now
            admit_client_jobs(self, flower_group.security_group_id, client, self.client_security_group_id, flower_port)

    def _request(self, vpc: ec2.Vpc, handover: ClientHandover, operator: CustomResourceRuntime) -> str:
        """The request (a new one when the client's VPC changes), deleted with this stack; returns its id."""
        request = {"VpcId": vpc.vpc_id, "PeerVpcId": handover.vpc_id, "PeerOwnerId": handover.account}
        create = cr.AwsSdkCall(
            service="EC2",
            action="createVpcPeeringConnection",
            parameters=request,
            physical_resource_id=cr.PhysicalResourceId.from_response(CREATED),
            output_paths=[CREATED],
        )
        delete = cr.AwsSdkCall(
            service="EC2",
            action="deleteVpcPeeringConnection",
            parameters={"VpcPeeringConnectionId": cr.PhysicalResourceIdReference()},
            ignore_error_codes_matching=PEER_GONE,
        )
        resource = cr.AwsCustomResource(
            self, "Request", on_create=create, on_update=create, on_delete=delete, role=operator.role,
            log_group=operator.log_group, install_latest_aws_sdk=False, timeout=Duration.minutes(2),
        )  # fmt: skip
        resource.node.add_dependency(operator.policy)
        self._grant(operator, vpc, handover)
        return resource.get_response_field(CREATED)

    def _grant(self, operator: CustomResourceRuntime, vpc: ec2.Vpc, handover: ClientHandover) -> None:
        stack = Stack.of(self)
        peer_vpc = f"arn:{stack.partition}:ec2:{stack.region}:{handover.account}:vpc/{handover.vpc_id}"
        this_vpc = stack.format_arn(service="ec2", resource="vpc", resource_name=vpc.vpc_id)
        peerings = stack.format_arn(service="ec2", resource="vpc-peering-connection", resource_name="*")
        operator.policy.add_statements(
            iam.PolicyStatement(actions=["ec2:CreateVpcPeeringConnection"], resources=[this_vpc, peer_vpc, peerings]),
            iam.PolicyStatement(
                actions=["ec2:DeleteVpcPeeringConnection"],
                resources=[peerings],
                conditions={"ArnEquals": {"ec2:RequesterVpc": this_vpc}},
            ),
        )
        acknowledge(
            operator.policy,
            f"{AWS_SOLUTIONS}IAM5[Resource::{peerings}]",
            "A peering connection's id exists only once requested; creation is also authorised on the two named VPCs, "
            "and deletion only of connections this server VPC requested (ec2:RequesterVpc)",
        )


class PeeringAcceptance(Construct):
    """Client side: accept the server's request ``peering_id`` into this VPC with this
    account's own deployment, and route the server's CIDR to it. Deleting this (the client leaves) deletes the
    peering, whichever side asked for it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        peering_id: str,
        server_account: str,
        server_cidr: str,
        vpc: ec2.Vpc,
        subnets: ec2.SelectedSubnets,
        operator: CustomResourceRuntime,
    ) -> None:
        super().__init__(scope, construct_id)
        connection = {"VpcPeeringConnectionId": peering_id}

        def call(action: str, ignore: str | None = None) -> cr.AwsSdkCall:
            return cr.AwsSdkCall(
                service="EC2",
                action=action,
                parameters=connection,
                physical_resource_id=cr.PhysicalResourceId.of(peering_id),
                ignore_error_codes_matching=ignore,
            )

        acceptance = cr.AwsCustomResource(
            self,
            "Accept",
            on_create=call("acceptVpcPeeringConnection"),
            on_update=call("acceptVpcPeeringConnection"),
            on_delete=call("deleteVpcPeeringConnection", PEER_GONE),
            role=operator.role,
            log_group=operator.log_group,
            install_latest_aws_sdk=False,
            timeout=Duration.minutes(2),
        )
        acceptance.node.add_dependency(operator.policy, self._grants(peering_id, server_account, vpc, operator))
        for route in route_to_peer(self, subnets, server_cidr, peering_id):
            route.node.add_dependency(acceptance)

    def _grants(
        self, peering_id: str, server_account: str, vpc: ec2.Vpc, operator: CustomResourceRuntime
    ) -> iam.ManagedPolicy:
        """Accept and delete this peering, in a policy of their own that the acceptance depends on: when a
        client leaves (the id removed from its config), CloudFormation deletes the acceptance, whose delete
        call needs these grants, before the policy. In the stack's shared policy they would be gone first."""
        stack = Stack.of(self)
        this_vpc = stack.format_arn(service="ec2", resource="vpc", resource_name=vpc.vpc_id)
        # the request's ARN carries the requester's account (the server's); this account's form is listed too
        peering = [
            f"arn:{stack.partition}:ec2:{stack.region}:{account}:vpc-peering-connection/{peering_id}"
            for account in (server_account, stack.account)
        ]
        return attach(
            self,
            "AcceptancePolicy",
            operator.role,
            [
                iam.PolicyStatement(actions=["ec2:AcceptVpcPeeringConnection"], resources=[this_vpc, *peering]),
                iam.PolicyStatement(actions=["ec2:DeleteVpcPeeringConnection"], resources=peering),
            ],
        )
