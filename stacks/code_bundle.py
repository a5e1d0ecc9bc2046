"""Puts the synthesized code bundle (``source.tar.gz``) into a bucket, once per bundle content."""

from __future__ import annotations

from aws_cdk import AssetHashType, Size
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from stacks.bundle.builder import BUNDLE_NAME, Bundle
from stacks.compliance import acknowledge, objects_finding

CODE_PREFIX = "code/"


class CodeBundle(Construct):
    """``s3://<bucket>/code/source.tar.gz``; the asset is hashed by the bundle's digest, not re-read."""

    def __init__(
        self, scope: Construct, construct_id: str, bundle: Bundle, bucket: s3.IBucket, log_group: logs.ILogGroup
    ) -> None:
        super().__init__(scope, construct_id)
        self.deployment = s3deploy.BucketDeployment(
            self,
            "Deployment",
            sources=[
                s3deploy.Source.asset(
                    str(bundle.folder), asset_hash=bundle.digest, asset_hash_type=AssetHashType.CUSTOM
                )
            ],
            destination_bucket=bucket,
            destination_key_prefix=CODE_PREFIX,
            prune=False,
            retain_on_delete=False,
            memory_limit=2048,  # the bundle carries its wheels: a few hundred MB to unpack
            ephemeral_storage_size=Size.gibibytes(2),
            log_group=log_group,  # the stack's: removed with it
        )
        acknowledge(
            self.deployment.handler_role,
            objects_finding(bucket),
            "CDK's BucketDeployment handler writes the bundle into the code bucket, which holds nothing else",
        )
        self.bucket = bucket
        self.key = f"{CODE_PREFIX}{BUNDLE_NAME}"
        self.uri = f"s3://{bucket.bucket_name}/{self.key}"
