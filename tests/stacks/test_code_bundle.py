"""CodeBundle: the synthesized bundle lands in each account's code bucket, byte for byte."""

from __future__ import annotations

import tarfile

import pytest

from stacks.bundle import builder
from stacks.bundle.builder import BUNDLE_NAME, ENTRY_POINT
from tests.stacks.cdk_helpers import all_templates, resources

pytestmark = pytest.mark.slow


def test_the_code_bucket_receives_the_bundle_under_code(default):
    for template in all_templates(default):
        [deployment] = resources(template, "Custom::CDKBucketDeployment").values()
        properties = deployment["Properties"]
        assert properties["DestinationBucketKeyPrefix"] == "code/"
        assert properties["Prune"] is False
        assert properties["DestinationBucketName"]["Ref"].startswith("Code")


def test_the_synthesized_asset_is_the_deterministic_bundle(default):
    bundle = builder.configured()
    assets = list(default.outdir.glob(f"asset.*/{BUNDLE_NAME}"))
    assert assets, "no asset holds source.tar.gz"
    assert all(asset.read_bytes() == bundle.tarball.read_bytes() for asset in assets)
    with tarfile.open(bundle.tarball) as archive:
        names = archive.getnames()
        assert all(member.mtime == 0 and member.uid == 0 for member in archive.getmembers())
    assert ENTRY_POINT in names and "requirements.txt" in names and "fl_runtime/app/client_app.py" in names
    assert any(name.startswith("wheels/flwr-1.42.0") for name in names)
