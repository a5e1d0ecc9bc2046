"""Separate organisations: each party synthesizes its own stack, the server's from handover files, the peering is
requested by the server and accepted by the client's own deployment; and the handover command."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest

from fl_runtime.aws.contract import ClientHandover
from fl_runtime.errors import ConfigError
from stacks.handover import main as handover_main
from tests.stacks.cdk_helpers import (
    SEPARATE,
    THREE_CLIENTS,
    default_context,
    handover_document,
    resources,
    statements,
    write_handovers,
)

pytestmark = pytest.mark.slow


def _custom_calls(template, action: str) -> list[dict]:
    return [r["Properties"] for r in resources(template, "Custom::AWS").values() if action in json.dumps(r)]


def test_each_party_synthesizes_only_its_own_stack(separate_three):
    assert list(separate_three.client_synth.clients) == ["ClientStack-insurer-a"]
    assert separate_three.client_synth.server is None
    assert separate_three.server_synth.clients == {}


def test_a_client_stack_gives_the_server_account_no_role_but_the_kickoff_and_no_peering_before_the_request(
    separate_one,
):
    [client] = separate_one.clients.values()
    names = {r["Properties"].get("RoleName") for r in resources(client, "AWS::IAM::Role").values()}
    assert "FL-peering-accepter" not in names and "FL-peering-routes" not in names
    assert _custom_calls(client, "acceptVpcPeeringConnection") == []
    assert resources(client, "AWS::EC2::Route") == {}
    handover = client.find_outputs("Handover")["Handover"]["Value"]
    text = json.dumps(handover)
    for field in ("vpc_id", "route_table_ids", "training_security_group_id", "kickoff_role_arn", "launcher_arn"):
        assert field in text
    assert "external_id" not in text  # agreed out of band, never in a file that is handed over


def test_the_server_requests_each_peering_with_the_handover_vpc_and_routes_the_client_cidr_to_it(separate_three):
    server = separate_three.server
    assert resources(server, "AWS::EC2::VPCPeeringConnection") == {}  # it would need a role in the client account
    requests = _custom_calls(server, "createVpcPeeringConnection")
    assert len(requests) == 3
    for index, spec in enumerate(THREE_CLIENTS, start=1):
        vpc = handover_document(spec, index, accepted=True)["vpc_id"]
        [request] = [r for r in requests if vpc in json.dumps(r["Create"])]
        assert spec["account"] in json.dumps(request["Create"]) and "deleteVpcPeeringConnection" in json.dumps(
            request["Delete"]
        )
        routes = [r for r in resources(server, "AWS::EC2::Route").values() if r["Properties"]["DestinationCidrBlock"]
                  == spec["vpc_cidr"]]  # fmt: skip
        assert len(routes) == 2
    # no role in any client account is assumed to peer or route
    assert not [s for s in statements(server) if "FL-peering-routes" in json.dumps(s.get("Resource"))]


def test_the_server_admits_a_clients_jobs_only_once_the_client_has_accepted(separate_one, separate_three):
    assert [
        lid for lid in resources(separate_one.server, "AWS::EC2::SecurityGroupIngress") if "FlowerPort" in lid
    ] == []
    rules = [
        r["Properties"]
        for lid, r in resources(separate_three.server, "AWS::EC2::SecurityGroupIngress").items()
        if "FlowerPort" in lid
    ]
    expected = {
        (handover_document(spec, index, True)["training_security_group_id"], spec["account"])
        for index, spec in enumerate(THREE_CLIENTS, start=1)
    }
    assert {(r["SourceSecurityGroupId"], r["SourceSecurityGroupOwnerId"]) for r in rules} == expected
    assert all((r["FromPort"], r["ToPort"]) == (9092, 9092) and "CidrIp" not in r for r in rules)


def test_a_client_accepts_the_request_with_its_own_deployment_routes_back_and_leaves_by_deleting_it(separate_three):
    [client] = separate_three.clients.values()
    peering = handover_document(THREE_CLIENTS[0], 1, accepted=True)["peering_connection_id"]
    [accept] = _custom_calls(client, "acceptVpcPeeringConnection")
    assert peering in json.dumps(accept["Create"])
    assert "deleteVpcPeeringConnection" in json.dumps(accept["Delete"])  # the client leaves on its own
    routes = resources(client, "AWS::EC2::Route")
    assert len(routes) == 2
    for route in routes.values():
        assert route["Properties"]["DestinationCidrBlock"] == "10.0.0.0/16"
        assert route["Properties"]["VpcPeeringConnectionId"] == peering
        assert any("Accept" in dependency for dependency in route["DependsOn"])


def _build(tmp_path, invocation: dict, **overrides):
    from app import build_app

    context = default_context()
    context.update({f"federation:{key}": value for key, value in overrides.items()})
    context.update(invocation)
    return build_app(cdk.App(context=context, outdir=str(tmp_path / "out")))


def test_separate_organisations_need_the_deploying_party_named(tmp_path):
    with pytest.raises(ConfigError, match=r"party: None: separate organisations deploy one party's stack.*client-a"):
        _build(tmp_path, {}, deployment_mode=SEPARATE)


def test_the_server_refuses_a_missing_handover_file_or_one_that_disagrees_with_the_config(tmp_path):
    folder = tmp_path / "handover"
    invocation = {"party": "server", "handover": str(folder)}
    with pytest.raises(ConfigError, match=r"insurer-a.json: cannot read client 'insurer-a''s handover file"):
        _build(tmp_path, invocation, deployment_mode=SEPARATE, clients=THREE_CLIENTS)
    write_handovers(folder, THREE_CLIENTS, accepted=False)
    document = json.loads((folder / "insurer-b.json").read_text())
    (folder / "insurer-b.json").write_text(json.dumps(dict(document, account="999999999999")))
    with pytest.raises(ConfigError, match=r"insurer-b.json: field 'account' is '999999999999', but the federation"):
        _build(tmp_path, invocation, deployment_mode=SEPARATE, clients=THREE_CLIENTS)
    other_launcher = dict(document, launcher_arn=document["launcher_arn"].replace("FL-job-launcher", "other"))
    (folder / "insurer-b.json").write_text(json.dumps(other_launcher))
    with pytest.raises(ConfigError, match=r"insurer-b.json: field 'launcher_arn' is .*:function:other'"):
        _build(tmp_path, invocation, deployment_mode=SEPARATE, clients=THREE_CLIENTS)


def test_the_handover_command_writes_each_clients_file_from_the_deploy_outputs(tmp_path, capsys):
    document = handover_document(THREE_CLIENTS[0], 1, accepted=False)
    outputs = tmp_path / "outputs.json"
    outputs.write_text(json.dumps({"ClientStack-insurer-a": {"Handover": json.dumps(document), "Other": "x"}}))
    assert handover_main([str(outputs), str(tmp_path / "handover")]) == 0
    written = (tmp_path / "handover" / "insurer-a.json").read_text()
    assert ClientHandover.from_json(written, "file").to_dict() == document


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "cannot read the deploy outputs"),
        (json.dumps({"ClientStack": {"Other": "x"}}), "no stack output 'Handover'"),
        (json.dumps({"ClientStack": {"Handover": json.dumps({"client": "a"})}}), "field 'account' is missing"),
    ],
)
def test_the_handover_command_refuses_bad_outputs_naming_the_problem_and_writes_nothing(
    tmp_path, capsys, content, message
):
    outputs = tmp_path / "outputs.json"
    outputs.write_text(content)
    assert handover_main([str(outputs), str(tmp_path / "handover")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "handover").exists()
