"""The CDK app: one server stack and one stack per client account, deployed in order, and the settings they publish."""

from __future__ import annotations

import dataclasses
import json

import pytest
from aws_cdk.assertions import Template

from fl_runtime.aws.contract import ClientAccountSettings, ServerAccountSettings
from stacks.limits import check as check_limits
from stacks.limits import measure
from tests.stacks.cdk_helpers import CLIENT_ACCOUNT, SERVER_ACCOUNT, THREE_CLIENTS, resources, statements

pytestmark = pytest.mark.slow


def test_one_client_gives_server_stack_and_client_stack(default):
    assert sorted(default.clients) == ["ClientStack"]
    assert (
        default.server_stack.account == SERVER_ACCOUNT
        and default.clients
        and default.client_stacks["ClientStack"].account == CLIENT_ACCOUNT
    )


def test_several_clients_give_one_stack_each_and_the_server_deploys_after_all(three):
    assert sorted(three.clients) == ["ClientStack-hospital-c", "ClientStack-insurer-a", "ClientStack-insurer-b"]
    dependencies = {d.node.id for d in three.server_stack.dependencies}
    assert dependencies == set(three.clients)
    accounts = {name: stack.account for name, stack in three.client_stacks.items()}
    assert accounts == {
        "ClientStack-insurer-a": "222222222222",
        "ClientStack-insurer-b": "333333333333",
        "ClientStack-hospital-c": "444444444444",
    }


def test_client_settings_are_published_as_outputs_and_in_ssm(client):
    parameter = next(
        p["Properties"]
        for p in resources(client, "AWS::SSM::Parameter").values()
        if p["Properties"]["Name"] == "/fl-fraud/client/client-a/settings"
    )
    document = json.dumps(parameter["Value"])
    for key in (
        "kickoff_role_arn",
        "external_id",
        "execution_role_arn",
        "subnet_ids",
        "training_security_group_id",
        "code_bucket",
        "source_uri",
        "data_bucket",
        "artifact_bucket",
        "training_image",
        "training_instance_type",
    ):
        assert f'\\"{key}\\"' in document, key
    outputs = client.to_json()["Outputs"]
    assert {"KickoffRoleArn", "ExternalId", "LauncherArn", "Launch"} <= {k[len("Published") : -8] for k in outputs}


def test_server_settings_count_the_clients_and_each_clients_entry_is_a_parameter_of_its_own(three):
    """The settings document does not grow with the members: each entry (its kickoff role and external id) sits
    in its own parameter under <prefix>/server/client/, which the notebook may read by path."""
    found = resources(three.server, "AWS::SSM::Parameter").values()
    parameters = {p["Properties"]["Name"]: p["Properties"] for p in found}
    settings = json.dumps(parameters["/fl-fraud/server/settings"]["Value"])
    assert '\\"flower_port\\":9092' in settings and '\\"client_count\\":3' in settings
    for spec in THREE_CLIENTS:
        entry = json.dumps(parameters[f"/fl-fraud/server/client/{spec['name']}"]["Value"])
        assert f"arn:aws:iam::{spec['account']}:role/FL-kickoff-client-job" in entry and spec["external_id"] in entry
        assert spec["external_id"] not in settings
    [read] = [s for s in statements(three.server) if s.get("Sid") == "ReadClientEntries"]
    path = "arn:aws:ssm:us-east-1:111111111111:parameter/fl-fraud/server/client"
    assert read["Action"] == "ssm:GetParametersByPath" and read["Resource"] == [path, f"{path}/*"]


def test_each_stack_publishes_every_field_of_the_settings_contract_and_nothing_else(default):
    """The runtime reads these documents with the same dataclasses; a field the stack forgot fails here, not in AWS."""
    for stack, settings in (
        (default.client_stacks["ClientStack"], ClientAccountSettings),
        (default.server_stack, ServerAccountSettings),
    ):
        outputs = Template.from_stack(stack).to_json()["Outputs"]
        published = {o["Description"] for name, o in outputs.items() if name.startswith("Published")}
        # the server's client entries are parameters of their own, not outputs (200 per stack)
        assert published == {f.name for f in dataclasses.fields(settings)} - {"clients"}
        assert stack.settings == settings.from_dict(stack.settings.to_dict(), "synthesized")


def test_the_stacks_templates_are_written_without_indentation_for_the_1_mb_limit(three):
    text = (three.outdir / "ServerStack.template.json").read_text()
    assert "\n" not in text.strip() and len(text) == len(json.dumps(json.loads(text), separators=(",", ":")))


def test_the_three_member_federation_is_within_every_limit_and_measured(three):
    """app.py runs stacks.limits after every synth (tests/stacks/test_limits.py: the limits themselves)."""
    check_limits(three.assembly)
    figures = measure(three.assembly)
    assert figures["server_resources"] < 500 and figures["client_resources"] < 500
    assert "limit" in figures["largest_policy"] and "limit" in figures["largest_parameter"]
