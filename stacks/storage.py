"""Encrypted, private, versioned, access-logged S3 buckets and the account's data key.

Every data bucket uses the stack's customer-managed KMS key (rotated yearly), blocks public access,
refuses plain HTTP, keeps versions, and logs access to a separate log bucket. ``cdk destroy`` removes
buckets with their objects unless the config says to retain data.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from stacks.compliance import AWS_SOLUTIONS, acknowledge


def data_key(scope: Construct, construct_id: str, retain: bool) -> kms.Key:
    """The account's key for buckets, notebook volumes and log groups (CloudWatch Logs may use it)."""
    key = kms.Key(
        scope,
        construct_id,
        enable_key_rotation=True,
        description="Federated fraud detection: buckets, notebook volumes, logs",
        removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        pending_window=Duration.days(30),  # the longest: a deletion can be cancelled for a month
    )
    stack = Stack.of(scope)
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="CloudWatchLogsOfThisAccount",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:*"
                }
            },
        )
    )
    return key


def encrypted_log_group(scope: Construct, construct_id: str, key: kms.IKey, retain: bool) -> logs.LogGroup:
    """A log group of the stack under the account's data key, kept a year, and kept by ``cdk destroy`` when the
    config retains data (the flow logs, DNS query logs and function logs are the account's audit trail)."""
    return logs.LogGroup(
        scope,
        construct_id,
        encryption_key=key,
        retention=logs.RetentionDays.ONE_YEAR,
        removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
    )


def _removal(retain: bool) -> dict:
    return {
        "removal_policy": RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        "auto_delete_objects": not retain,
    }


def access_log_bucket(scope: Construct, construct_id: str) -> s3.Bucket:
    """Target of the data buckets' server access logs (S3 delivers access logs to SSE-S3 buckets only).

    Always retained by ``cdk destroy``: it is the audit trail of who read the claims data, which must
    outlive the federation; and S3 delivers access logs late (hours), so emptying it during the
    destroy races with the logs of that very destroy and fails the stack deletion. Delete it by
    hand once your retention period has passed.
    """
    bucket = s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=Duration.days(90))],
        removal_policy=RemovalPolicy.RETAIN,
    )
    acknowledge(
        bucket, f"{AWS_SOLUTIONS}S1", "This is the access-log bucket itself; logging its own access would recurse"
    )
    acknowledge(
        bucket,
        "HIPAA.Security::HIPAA.Security-S3BucketLoggingEnabled",
        "This is the access-log bucket itself; logging its own access would recurse",
    )
    acknowledge(
        bucket,
        "HIPAA.Security::HIPAA.Security-S3DefaultEncryptionKMS",
        "S3 server access log delivery only supports SSE-S3 (AES256) on the target bucket; it holds access logs, not "
        "claims data",
    )
    acknowledge(
        bucket,
        "HIPAA.Security::HIPAA.Security-S3BucketReplicationEnabled",
        "Access logs stay in the account's region by design; cross-region copies are each party's own compliance "
        "decision",
    )
    return bucket


def secure_bucket(
    scope: Construct,
    construct_id: str,
    *,
    key: kms.IKey,
    logs: s3.IBucket,
    retain: bool,
    noncurrent_days: int | None = None,
) -> s3.Bucket:
    """``noncurrent_days``: expire replaced versions after this many days (None: keep them, as for data
    whose history the party may need to show)."""
    expiry = (
        [s3.LifecycleRule(noncurrent_version_expiration=Duration.days(noncurrent_days))]
        if noncurrent_days is not None
        else None
    )
    bucket = s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        enforce_ssl=True,
        versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        server_access_logs_bucket=logs,
        server_access_logs_prefix=f"{construct_id}/",
        lifecycle_rules=expiry,
        **_removal(retain),
    )
    acknowledge(
        bucket,
        "HIPAA.Security::HIPAA.Security-S3BucketReplicationEnabled",
        "Claims data must not leave the party's chosen region; versioning and KMS protect it in place",
    )
    return bucket
