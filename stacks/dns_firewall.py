"""Route 53 Resolver DNS Firewall on a VPC: the resolver answers only the AWS names the stack needs.

A private-only VPC still resolves any name through the Amazon-provided resolver, and no security group
filters those queries: code next to the data could encode rows into names (``<rows>.attacker.example``)
and the resolver would carry them out. The firewall allows the names of this VPC's endpoints, S3 and the
VPC's own host names, and answers every other query with NXDOMAIN. Resolver's default for a VPC with a rule
group is to fail closed (CloudFormation offers no FirewallConfig to change it). Every query, allowed or
blocked, is logged to an encrypted log group of the stack.
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53resolver as resolver
from constructs import Construct

from stacks.storage import encrypted_log_group

ALLOW_PRIORITY, BLOCK_PRIORITY = 100, 200  # rules run in priority order: the allow list first
ASSOCIATION_PRIORITY = 101  # the lowest a customer rule group may take (Resolver reserves 100 and 9900)


def aws_names(region: str, endpoint_names: list[str]) -> list[str]:
    """The names a federation VPC resolves: its interface endpoints, S3 (path and virtual-host style, the
    regional and the us-east-1 global name boto3 uses), the Amazon Linux 2023 repository bucket the notebooks
    install Python from, and the VPC's own instance host names."""
    internal = "ec2.internal" if region == "us-east-1" else f"{region}.compute.internal"
    return [
        *endpoint_names,
        f"s3.{region}.amazonaws.com",
        f"*.s3.{region}.amazonaws.com",
        "s3.amazonaws.com",
        "*.s3.amazonaws.com",
        f"*.s3.dualstack.{region}.amazonaws.com",
        internal,
        f"*.{internal}",
    ]


class DnsFirewall(Construct):
    """An allow list, a block-everything-else rule, the association with ``vpc``, and query logging."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        allowed_names: list[str],
        log_key: kms.IKey,
        retain_logs: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        allowed = resolver.CfnFirewallDomainList(self, "Allowed", domains=allowed_names)
        everything = resolver.CfnFirewallDomainList(self, "Everything", domains=["*"])
        self.rule_group = resolver.CfnFirewallRuleGroup(
            self,
            "Rules",
            firewall_rules=[
                resolver.CfnFirewallRuleGroup.FirewallRuleProperty(
                    action="ALLOW",
                    firewall_domain_list_id=allowed.attr_id,
                    priority=ALLOW_PRIORITY,
                    # an allowed AWS name answers through AWS's own CNAMEs (S3 does): follow those, not others
                    firewall_domain_redirection_action="TRUST_REDIRECTION_DOMAIN",
                ),
                resolver.CfnFirewallRuleGroup.FirewallRuleProperty(
                    action="BLOCK",
                    block_response="NXDOMAIN",
                    firewall_domain_list_id=everything.attr_id,
                    priority=BLOCK_PRIORITY,
                ),
            ],
        )
        resolver.CfnFirewallRuleGroupAssociation(
            self,
            "Association",
            firewall_rule_group_id=self.rule_group.attr_id,
            vpc_id=vpc.vpc_id,
            priority=ASSOCIATION_PRIORITY,
            # CloudFormation cannot delete a protected association (cdk destroy, a client leaving): IAM, not this
            # flag, decides who may change it
            mutation_protection="DISABLED",
        )
        self.log_group = self._query_logging(vpc, log_key, retain_logs)

    def _query_logging(self, vpc: ec2.IVpc, key: kms.IKey, retain: bool) -> logs.LogGroup:
        log_group = encrypted_log_group(self, "QueryLogs", key, retain)
        stack = Stack.of(self)
        # Resolver delivers query logs as a vended log source: the log group's resource policy admits the
        # delivery service on behalf of this account's log deliveries only
        log_group.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("delivery.logs.amazonaws.com")],
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="route53resolver", resource="resolver-query-log-config/*"
                        )
                    },
                },
            )
        )
        destination = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=log_group.log_group_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        config = resolver.CfnResolverQueryLoggingConfig(self, "QueryLogging", destination_arn=destination)
        config.node.add_dependency(log_group)
        resolver.CfnResolverQueryLoggingConfigAssociation(
            self, "QueryLoggingAssociation", resolver_query_log_config_id=config.attr_id, resource_id=vpc.vpc_id
        )
        return log_group
