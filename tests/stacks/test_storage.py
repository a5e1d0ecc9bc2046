"""Buckets and keys: encrypted, private, versioned, logged, SSL-only; what a destroy removes and what it keeps."""

from __future__ import annotations

import json

import pytest

from tests.stacks.cdk_helpers import all_templates, resources, synthesize

pytestmark = pytest.mark.slow


def _buckets(template):
    return resources(template, "AWS::S3::Bucket")


def test_every_bucket_is_encrypted_private_versioned_logged_and_ssl_only(three):
    for template in all_templates(three):
        policies = {
            json.dumps(p["Properties"]["Bucket"]): p for p in resources(template, "AWS::S3::BucketPolicy").values()
        }
        for lid, bucket in _buckets(template).items():
            properties = bucket["Properties"]
            algorithm = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0][
                "ServerSideEncryptionByDefault"
            ]["SSEAlgorithm"]
            assert algorithm == ("AES256" if lid.startswith("AccessLogs") else "aws:kms"), lid
            assert properties["PublicAccessBlockConfiguration"] == {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            }
            assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
            if not lid.startswith("AccessLogs"):
                assert properties["LoggingConfiguration"]["DestinationBucketName"]["Ref"].startswith("AccessLogs")
            document = json.dumps(policies[json.dumps({"Ref": lid})]["Properties"]["PolicyDocument"])
            assert '"aws:SecureTransport": "false"' in document and '"Effect": "Deny"' in document


def test_client_account_has_code_data_and_artifact_buckets_server_has_code_and_results(default):
    assert sorted(lid[:-8] for lid in _buckets(default.clients["ClientStack"])) == [
        "AccessLogs",
        "Artifacts",
        "Code",
        "Data",
    ]
    assert sorted(lid[:-8] for lid in _buckets(default.server)) == ["AccessLogs", "Code", "Results"]


def test_replaced_code_bundles_and_access_logs_expire_while_data_versions_are_kept(default):
    for template in all_templates(default):
        for lid, bucket in _buckets(template).items():
            rules = bucket["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
            days = [r["NoncurrentVersionExpiration"]["NoncurrentDays"] for r in rules if r["Status"] == "Enabled"]
            assert days == ({"AccessLogs": [90], "Code": [30]}.get(lid[:-8], [])), lid


def test_claims_data_and_its_key_survive_a_stack_deletion_unless_a_config_says_otherwise(default, tmp_path):
    for template in all_templates(default):  # cdk.json leaves retain_data at its default: true
        assert all(b["DeletionPolicy"] == "Retain" for b in _buckets(template).values())
        assert resources(template, "Custom::S3AutoDeleteObjects") == {}
        for key in resources(template, "AWS::KMS::Key").values():
            # KMS rotates symmetric keys only; a client's identity key (ECC) rotates by its generation (test_identity)
            symmetric = key["Properties"].get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT"
            assert key["DeletionPolicy"] == "Retain" and key["Properties"].get("EnableKeyRotation", False) is symmetric
            assert key["Properties"]["PendingWindowInDays"] == 30  # a scheduled deletion can be cancelled for a month
    removed = synthesize(tmp_path / "demo", retain_data=False)  # a demo's config may say so
    for template in all_templates(removed):
        for lid, bucket in _buckets(template).items():
            # the access-log bucket is the audit trail, and S3 delivers its logs late: always kept
            assert bucket["DeletionPolicy"] == ("Retain" if lid.startswith("AccessLogs") else "Delete"), lid
        assert len(resources(template, "Custom::S3AutoDeleteObjects")) == len(_buckets(template)) - 1
        for key in resources(template, "AWS::KMS::Key").values():
            assert key["DeletionPolicy"] == "Delete" and key["Properties"]["PendingWindowInDays"] == 30
