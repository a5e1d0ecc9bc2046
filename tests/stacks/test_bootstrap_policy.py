"""One organisation's bootstrap: the generated CloudFormation execution policy and permissions boundary."""

from __future__ import annotations

import json
import shutil

import pytest

from fl_runtime.errors import ConfigError
from stacks.bootstrap_policy import BOUNDARY_NAME, account_templates, boundary_policy, execution_policy, main
from tests.stacks.cdk_helpers import CLIENT_ACCOUNT, SERVER_ACCOUNT, resources, statements

pytestmark = pytest.mark.slow
MANAGED_POLICY_LIMIT = 6144  # characters of a customer managed policy, without whitespace


def _size(document: dict) -> int:
    return len(json.dumps(document, separators=(",", ":")))


def _actions(statement: dict) -> list[str]:
    return [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]


@pytest.mark.parametrize("account", [SERVER_ACCOUNT, CLIENT_ACCOUNT])
def test_the_execution_policy_is_no_administrator_and_confines_iam_to_the_stacks_roles_within_the_boundary(
    default, account
):
    policy = execution_policy(account_templates(default.outdir, account), account)
    assert _size(policy) <= MANAGED_POLICY_LIMIT
    text = json.dumps(policy)
    assert "AdministratorAccess" not in text and "cdk-" not in text  # never the bootstrap's own roles
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    for statement in policy["Statement"]:
        assert "*" not in _actions(statement) and not any(a.endswith(":*") for a in _actions(statement))
        if statement["Effect"] == "Allow" and statement["Sid"] != "TheStacksResources":
            assert all(r.split(":")[5].split("/")[1] in ("ClientStack*", "ServerStack*", "FL-*") for r in
                       statement["Resource"])  # fmt: skip
    assert not [a for a in _actions(by_sid["TheStacksResources"]) if a.startswith("iam:")]
    boundary = f"arn:aws:iam::{account}:policy/{BOUNDARY_NAME}"
    assert by_sid["RolesOnlyWithinTheBoundary"]["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": boundary}}
    assert "iam:CreateRole" in _actions(by_sid["RolesOnlyWithinTheBoundary"])
    assert by_sid["TheBoundaryStays"]["Effect"] == "Deny" and by_sid["TheBoundaryStays"]["Resource"] == boundary
    assert by_sid["OnEveryRole"]["Action"] == "iam:DeleteRolePermissionsBoundary"


@pytest.mark.parametrize("account", [SERVER_ACCOUNT, CLIENT_ACCOUNT])
def test_the_boundary_holds_every_action_the_stacks_grant_and_nothing_of_iam_but_passing_a_role(default, account):
    templates = account_templates(default.outdir, account)
    [allowed] = boundary_policy(templates)["Statement"]
    assert _size(boundary_policy(templates)) <= MANAGED_POLICY_LIMIT
    assert [a for a in allowed["Action"] if a.startswith("iam:")] in ([], ["iam:PassRole"])
    template = default.server if account == SERVER_ACCOUNT else default.clients["ClientStack"]
    granted = {a for s in statements(template) for a in _actions(s)}
    assert granted <= set(allowed["Action"])


def test_in_one_organisation_every_role_carries_the_boundary_and_in_separate_ones_none_does(default, separate_three):
    for template in (default.server, *default.clients.values()):
        for role in resources(template, "AWS::IAM::Role").values():
            assert role["Properties"]["PermissionsBoundary"].endswith(f":policy/{BOUNDARY_NAME}")
    for template in (separate_three.server, *separate_three.clients.values()):
        for role in resources(template, "AWS::IAM::Role").values():
            assert "PermissionsBoundary" not in role["Properties"]


def test_a_resource_type_without_reviewed_actions_is_refused_by_name(default, tmp_path):
    assembly = tmp_path / "cdk.out"
    shutil.copytree(default.outdir, assembly)
    template_file = assembly / "ClientStack.template.json"
    template = json.loads(template_file.read_text())
    template["Resources"]["Queue"] = {"Type": "AWS::SQS::Queue", "Properties": {}}
    template_file.write_text(json.dumps(template))
    with pytest.raises(ConfigError, match=r"resource Queue: type AWS::SQS::Queue has no reviewed actions"):
        execution_policy(account_templates(assembly, CLIENT_ACCOUNT), CLIENT_ACCOUNT)


def test_the_command_writes_both_policies_and_refuses_an_unknown_account_writing_nothing(default, tmp_path, capsys):
    assert main([str(default.outdir), CLIENT_ACCOUNT, str(tmp_path / "ok")]) == 0
    written = {p.name: json.loads(p.read_text()) for p in (tmp_path / "ok").iterdir()}
    assert set(written) == {"execution-policy.json", "permissions-boundary.json"}
    assert main([str(default.outdir), "999999999999", str(tmp_path / "bad")]) == 2
    assert "no stack of account 999999999999" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
