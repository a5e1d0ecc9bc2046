"""The AWS limits a deploy meets, checked on the synthesized templates, each reference at its longest form."""

from __future__ import annotations

import json
from types import SimpleNamespace

import aws_cdk as cdk
import pytest

from fl_runtime.errors import ConfigError
from stacks.bundle import builder
from stacks.client_stack import ClientStack
from stacks.config import from_context
from stacks.limits import Resolution, check, measure
from stacks.server_stack import ServerStack
from tests.stacks.cdk_helpers import PRIVATELINK, app_context, generated_members


def assembly(folder, *templates: tuple[str, dict]):
    """What ``app.synth()`` returns, as far as ``limits`` reads it: each stack's template, its file and account."""
    environment = SimpleNamespace(account="111111111111", region="us-east-1")
    stacks = []
    for name, template in templates:
        path = folder / f"{name}.template.json"
        path.write_text(json.dumps(template, separators=(",", ":")))
        stacks.append(SimpleNamespace(stack_name=name, template=template, environment=environment,
                                      template_full_path=str(path)))  # fmt: skip
    return SimpleNamespace(stacks=stacks)


def policy(actions: int) -> dict:
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": [f"s3:Action{i:04d}" for i in
            range(actions)], "Resource": {"Fn::GetAtt": ["Bucket", "Arn"]}}]}  # fmt: skip


def test_a_reference_counts_as_the_longest_form_it_resolves_to():
    resources = {
        "Bucket": {"Type": "AWS::S3::Bucket"},
        "Key": {"Type": "AWS::KMS::Key"},
        "Fn": {"Type": "AWS::Lambda::Function"},
        "Logs": {"Type": "AWS::Logs::LogGroup"},
        "Named": {"Type": "AWS::Logs::LogGroup", "Properties": {"LogGroupName": "/fl/jobs"}},
        "Pins": {"Type": "AWS::SSM::Parameter", "Properties": {"Name": {"Fn::Join": ["", ["/fl/", "pins"]]}}},
        "Queue": {"Type": "AWS::SQS::Queue"},
    }
    resolution = Resolution("ClientStack-a", "222222222222", "us-gov-west-1", resources)
    assert resolution.bound({"Ref": "AWS::AccountId"}) == 12 and resolution.bound({"Ref": "AWS::Partition"}) == 10
    assert resolution.bound({"Ref": "Bucket"}) == 63 and resolution.bound({"Ref": "Key"}) == 36
    assert resolution.bound({"Fn::GetAtt": ["Bucket", "Arn"]}) == len("arn:aws-us-gov:s3:::") + 63
    key_arn = "arn:aws-us-gov:kms:us-gov-west-1:222222222222:key/" + "0" * 36
    assert resolution.bound({"Fn::GetAtt": ["Key", "Arn"]}) == len(key_arn)
    assert (
        resolution.bound({"Fn::GetAtt": ["Fn", "Arn"]})
        == len("arn:aws-us-gov:lambda:us-gov-west-1:222222222222:function:") + 64
    )
    # a log group CloudFormation names: <stack>-<logical id>-<13>; a named one: its name
    log_arn = "arn:aws-us-gov:logs:us-gov-west-1:222222222222:log-group:"
    assert resolution.bound({"Fn::GetAtt": ["Logs", "Arn"]}) == len(log_arn) + len("ClientStack-a-Logs-") + 13 + 2
    assert resolution.bound({"Fn::GetAtt": ["Named", "Arn"]}) == len(log_arn) + len("/fl/jobs") + 2
    assert resolution.bound({"Ref": "Pins"}) == 2048  # a name that is not a literal: SSM's longest
    assert resolution.bound({"Fn::GetAtt": ["Queue", "Arn"]}) == 2048  # an ARN of a type it has no form for
    assert resolution.bound({"Fn::If": ["Cond", "short", {"Ref": "Bucket"}]}) == 63
    assert resolution.bound({"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":s3:::", {"Ref": "Bucket"}]]}) == (
        4 + 10 + 6 + 63
    )
    document = {"Resource": {"Ref": "Bucket"}, "Action": ["s3:GetObject"]}
    literal = json.dumps({"Resource": "x" * 63, "Action": ["s3:GetObject"]}, separators=(",", ":"))
    assert resolution.size(document) == len(literal)


def test_stacks_within_the_limits_pass_and_each_one_over_is_named_with_its_size_and_limit(tmp_path):
    fine = {
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket"},
            "Policy": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": policy(10)}},
        }
    }
    check(assembly(tmp_path, ("ServerStack", fine)))
    crowded = {"Resources": {f"Vpc{i}": {"Type": "AWS::EC2::VPC"} for i in range(498)}}
    crowded["Resources"]["Bucket"] = {"Type": "AWS::S3::Bucket"}
    crowded["Resources"]["Policy"] = {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument": policy(400)}}
    value = {"Fn::Join": ["", ["x" * 4080, {"Ref": "Vpc1"}]]}  # 4,080 + a VPC id (24 at most)
    crowded["Resources"]["Settings"] = {"Type": "AWS::SSM::Parameter", "Properties": {"Value": value}}
    with pytest.raises(ConfigError) as error:
        check(assembly(tmp_path, ("ServerStack", fine), ("ClientStack-a", crowded)))
    message = str(error.value)
    assert message.startswith("the synthesized stacks would exceed AWS limits at deploy: ClientStack-a: ")
    assert "ClientStack-a: resources: 501, over the limit of 500" in message
    assert "ClientStack-a: managed policy Policy: " in message
    assert "characters at most, over the limit of 6,144" in message
    parameter = "ClientStack-a: Standard SSM parameter Settings: 4,104 characters at most, over the limit of 4,096"
    assert parameter in message
    assert "ServerStack" not in message  # within every limit


def test_a_templates_size_is_the_file_the_cdk_wrote_and_security_group_rules_are_counted_per_group(tmp_path):
    big = {"Resources": {f"Vpc{i}": {"Type": "AWS::EC2::VPC", "Properties": {"CidrBlock": "10.0.0.0/16"}}
                         for i in range(15000)}}  # fmt: skip
    with pytest.raises(ConfigError, match=r"ServerStack: template: 1,\d{3},\d{3} bytes, over the limit of 1,000,000"):
        check(assembly(tmp_path, ("ServerStack", big)))
    rules = {"Group": {"Type": "AWS::EC2::SecurityGroup", "Properties": {"SecurityGroupIngress": [{}] * 10}}}
    rules.update(
        {
            f"Rule{i}": {
                "Type": "AWS::EC2::SecurityGroupIngress",
                "Properties": {"GroupId": {"Fn::GetAtt": ["Group", "GroupId"]}},
            }
            for i in range(51)
        }
    )
    expected = "ServerStack: inbound rules of security group Group: 61, over the limit of 60"
    with pytest.raises(ConfigError, match=expected):
        check(assembly(tmp_path, ("ServerStack", {"Resources": rules})))


def _server_and_one_client(outdir, members: list[dict], **overrides):
    """One organisation: ServerStack and the first member's stack, as the whole app builds them (every client
    stack is the same size; building 50 would only repeat the first)."""
    app = cdk.App(context=app_context(clients=members, **overrides), outdir=str(outdir))
    config = from_context(app.node)
    bundle = builder.configured()
    ClientStack(app, f"ClientStack-{config.clients[0].name}", config=config, client=config.clients[0], bundle=bundle)
    ServerStack(app, "ServerStack", config=config, bundle=bundle)
    return app.synth()


def test_fifty_peering_members_the_default_quota_synthesize_within_every_limit(tmp_path):
    assembly = _server_and_one_client(tmp_path, generated_members(50))
    check(assembly)
    figures = measure(assembly)
    assert 450 < figures["server_resources"] < 500  # eight resources a peering member: the quota's 50 fit
    assert int(str(figures["largest_parameter"]).split()[0].replace(",", "")) <= 8192


@pytest.mark.parametrize("members", [100, 300])
def test_a_hundred_and_three_hundred_privatelink_members_synthesize_within_every_limit(tmp_path, members):
    """What grew with the members is restructured: one parameter per client entry, pins in 4 KB parts, the members'
    keys read through one statement of account ids (its own policy) and admitted by one key-policy statement, the
    kickoff roles 90 to a policy; no peering, so no eight resources a member in ServerStack."""
    assembly = _server_and_one_client(tmp_path, generated_members(members), **PRIVATELINK)
    check(assembly)
    figures = measure(assembly)
    assert members < figures["server_resources"] < members + 80  # a client entry a member: about 430 fit in 500
    assert figures["client_resources"] < 100 + members // 40  # a pins part per 40 members or so
