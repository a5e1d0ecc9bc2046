"""The AWS limits a deploy meets, checked on the synthesized templates, each reference at its longest form."""

from __future__ import annotations

import json
from types import SimpleNamespace

import aws_cdk as cdk
import pytest

from fl_runtime.errors import ConfigError
from stacks.client_stack import ClientStack
from stacks.config import from_context
from stacks.limits import Resolution, check, measure
from stacks.server_stack import ServerStack
from tests.stacks.cdk_helpers import configured_bundle, default_context


def assembly(*templates: tuple[str, dict]):
    return SimpleNamespace(stacks=[SimpleNamespace(stack_name=name, template=t) for name, t in templates])


def policy(actions: int) -> dict:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": [f"s3:Action{i:04d}" for i in
            range(actions)], "Resource": {"Fn::GetAtt": ["Bucket", "Arn"]}}]}  # fmt: skip


def test_a_reference_counts_as_the_longest_form_it_resolves_to():
    resolution = Resolution({"Bucket": "AWS::S3::Bucket", "Key": "AWS::KMS::Key", "Fn": "AWS::Lambda::Function"})
    assert resolution.bound({"Ref": "AWS::AccountId"}) == 12
    assert resolution.bound({"Ref": "Bucket"}) == 63 and resolution.bound({"Ref": "Key"}) == 36
    assert resolution.bound({"Fn::GetAtt": ["Bucket", "Arn"]}) == 86  # arn:<partition>:s3:::<bucket>
    assert resolution.bound({"Fn::GetAtt": ["Fn", "Arn"]}) == 128
    assert resolution.bound({"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::", {"Ref": "Bucket"}]]}) == (
        4 + 10 + 6 + 63
    )
    document = {"Resource": {"Ref": "Bucket"}, "Action": ["s3:GetObject"]}
    literal = json.dumps({"Resource": "x" * 63, "Action": ["s3:GetObject"]}, separators=(",", ":"))
    assert resolution.size(document) == len(literal)


def test_stacks_within_the_limits_pass_and_each_one_over_is_named_with_its_size_and_limit():
    fine = {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "Policy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": policy(10)}},
        }
    }
    check(assembly(("ServerStack", fine)))
    crowded = {"Resources": {f"Vpc{i}": {"Type": "AWS::EC2::VPC"} for i in range(498)}}
    crowded["Resources"]["Bucket"] = {"Type": "AWS::S3::Bucket"}
    crowded["Resources"]["Policy"] = {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": policy(400)}}
    value = {"Fn::Join": ["", ["x" * 4080, {"Ref": "Vpc1"}]]}  # 4,080 + a VPC id (24 at most)
    crowded["Resources"]["Settings"] = {"Type": "AWS::SSM::Parameter", "Properties": {"Value": value}}
    with pytest.raises(ConfigError) as error:
        check(assembly(("ServerStack", fine), ("ClientStack-a", crowded)))
    message = str(error.value)
    assert message.startswith("the synthesized stacks would exceed AWS limits at deploy: ClientStack-a: ")
    assert "ClientStack-a: resources: 501, over the limit of 500" in message
    assert "ClientStack-a: managed policy Policy: " in message
    assert "characters at most, over the limit of 6,144" in message
    parameter = "ClientStack-a: Standard SSM parameter Settings: 4,104 characters at most, over the limit of 4,096"
    assert parameter in message
    assert "ServerStack" not in message  # within every limit


def test_the_three_member_federation_is_within_every_limit_and_measured(three):
    check(three.assembly)
    figures = measure(three.assembly)
    assert figures["server_resources"] < 500 and figures["client_resources"] < 500
    assert "limit" in figures["largest_policy"] and "limit" in figures["largest_parameter"]


def _members(count: int) -> list[dict]:
    """``count`` members, each its own account and VPC, with fingerprints unset (one organisation resolves them:
    the largest pins and training policies)."""
    return [
        {"name": f"member-{i:03d}", "account": f"{200000000000 + i}", "vpc_cidr": f"10.{i}.0.0/16",
         "external_id": f"fl-member-{i:03d}-external", "min_members": 3}
        for i in range(1, count + 1)
    ]  # fmt: skip


def _server_and_one_client(outdir, members: list[dict]):
    """One organisation: ServerStack and the first member's stack, as the whole app builds them (every client
    stack is the same size; building 50 would only repeat the first)."""
    context = default_context()
    context["federation:clients"] = members
    app = cdk.App(context=context, outdir=str(outdir))
    config = from_context(app.node)
    bundle = configured_bundle()
    ClientStack(app, f"ClientStack-{config.clients[0].name}", config=config, client=config.clients[0], bundle=bundle)
    ServerStack(app, "ServerStack", config=config, bundle=bundle)
    return app.synth()


def test_fifty_peering_members_the_default_quota_synthesize_within_every_limit(tmp_path):
    assembly = _server_and_one_client(tmp_path, _members(50))
    check(assembly)
    figures = measure(assembly)
    assert 450 < figures["server_resources"] < 500  # eight resources a peering member: the quota's 50 fit
    assert int(str(figures["largest_parameter"]).split()[0].replace(",", "")) <= 8192
