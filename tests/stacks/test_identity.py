"""A member's identity in its client stack: the KMS identity key, its alias and rotation, the pins document in SSM,
who may sign and read with them, and what one organisation adds so that jobs read the members' keys at start."""

from __future__ import annotations

import json
import re

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from fl_runtime.app.pins import ClientPins, Member
from fl_runtime.aws.contract import ClientHandover, part_parameter, read_document
from fl_runtime.errors import ConfigError
from stacks.client_config import ClientAccount
from stacks.config import from_cdk_json
from stacks.handover import check
from stacks.identity import IdentitySettings, MemberIdentity
from tests.helpers import PROJECT
from tests.stacks.cdk_helpers import (
    CLIENT_ACCOUNT,
    HOSPITAL_C_FINGERPRINT,
    THREE_CLIENTS,
    default_context,
    handover_document,
    resources,
    statements,
    synthesize,
)

pytestmark = pytest.mark.slow
TRAINING_ROLE = "arn:aws:iam::{}:role/FL-training-job"


def _identity_key(template) -> tuple[str, dict]:
    [(lid, key)] = [
        (lid, key)
        for lid, key in resources(template, "AWS::KMS::Key").items()
        if key["Properties"].get("KeySpec") == "ECC_NIST_P256"
    ]
    return lid, key


def _pins_parameter(template) -> tuple[str, dict]:
    [(lid, parameter)] = [
        (lid, p)
        for lid, p in resources(template, "AWS::SSM::Parameter").items()
        if p["Properties"]["Name"].endswith("/pins")
    ]
    return lid, parameter["Properties"]


def _resolved(value, key_lid: str, key_arn: str) -> str:
    """The parameter's value as CloudFormation makes it, with ``key_arn`` for the identity key's Arn."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    assert all(isinstance(part, str) or part == {"Fn::GetAtt": [key_lid, "Arn"]} for part in parts)
    return "".join(part if isinstance(part, str) else key_arn for part in parts)


def _deployed_pins(template, account: str = CLIENT_ACCOUNT) -> tuple[ClientPins, str]:
    key_lid, _ = _identity_key(template)
    key_arn = f"arn:aws:kms:us-east-1:{account}:key/12345678-90ab-cdef-1234-567890abcdef"
    _, parameter = _pins_parameter(template)
    return ClientPins.from_json(_resolved(parameter["Value"], key_lid, key_arn), "the pins parameter"), key_arn


def _expected(clients: list[dict], name: str, key_arn: str, one_organisation: bool) -> ClientPins:
    """The pins the config describes for client ``name``, written out by hand."""
    own = next(client for client in clients if client["name"] == name)
    members = []
    for client in sorted(clients, key=lambda c: c["name"]):
        fingerprint = client.get("identity_fingerprint", "")
        alias = f"arn:aws:kms:us-east-1:{client['account']}:alias/fl-identity-{client['name']}"
        members.append(Member(client["name"], fingerprint, alias if one_organisation and not fingerprint else ""))
    return ClientPins(
        client=name,
        members=tuple(members),
        identity=f"kms:{key_arn}",
        min_members=own.get("min_members", 3),
    )


def test_the_identity_key_is_a_p256_signing_key_behind_the_clients_alias_and_kept_with_the_data(client):
    lid, key = _identity_key(client)
    assert lid.startswith("IdentityKeyGeneration1")
    properties = key["Properties"]
    assert (properties["KeySpec"], properties["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    assert "EnableKeyRotation" not in properties  # KMS rotates symmetric keys only: this one rotates by generation
    assert key["DeletionPolicy"] == "Retain" and properties["PendingWindowInDays"] == 30  # retain_data: true
    [alias] = resources(client, "AWS::KMS::Alias").values()
    assert alias["Properties"] == {
        "AliasName": "alias/fl-identity-client-a",
        "TargetKeyId": {"Fn::GetAtt": [lid, "Arn"]},
    }
    [output] = [o for o in client.to_json()["Outputs"].values() if o["Value"] == {"Fn::GetAtt": [lid, "Arn"]}]
    assert "fingerprint" in output["Description"]


def test_the_pins_parameter_holds_the_configs_pins_for_this_client(client, three):
    sample = default_context()["federation:clients"]
    pins, key_arn = _deployed_pins(client)
    assert pins == _expected(sample, "client-a", key_arn, one_organisation=True)
    for name in ("insurer-a", "insurer-b", "hospital-c"):
        template = three.clients[f"ClientStack-{name}"]
        account = next(c["account"] for c in THREE_CLIENTS if c["name"] == name)
        pins, key_arn = _deployed_pins(template, account)
        assert pins == _expected(THREE_CLIENTS, name, key_arn, one_organisation=True)
        _, parameter = _pins_parameter(template)
        assert parameter["Name"] == f"/fl-fraud/client/{name}/pins" and parameter["Tier"] == "Intelligent-Tiering"
        assert parameter["Type"] == "String"


def test_one_organisation_names_members_without_a_fingerprint_by_their_alias_arn(three):
    pins, _ = _deployed_pins(three.clients["ClientStack-insurer-a"])
    assert {m.name: (m.fingerprint, m.identity_key) for m in pins.members} == {
        "hospital-c": (HOSPITAL_C_FINGERPRINT, ""),  # agreed out of band: pinned, never read from KMS
        "insurer-a": ("", "arn:aws:kms:us-east-1:222222222222:alias/fl-identity-insurer-a"),
        "insurer-b": ("", "arn:aws:kms:us-east-1:333333333333:alias/fl-identity-insurer-b"),
    }


def test_separate_organisations_pin_the_configs_fingerprints_only_and_warn_of_the_missing_ones(separate_three):
    [template] = separate_three.clients.values()
    pins, key_arn = _deployed_pins(template)
    assert pins == _expected(THREE_CLIENTS, "insurer-a", key_arn, one_organisation=False)
    assert all(member.identity_key == "" for member in pins.members)
    metadata = (separate_three.client_synth.outdir / "ClientStack-insurer-a.metadata.json").read_text()
    [warning] = re.findall(r"no identity_fingerprint for [^\"]*", metadata)
    assert warning.startswith("no identity_fingerprint for insurer-a, insurer-b: every member refuses a run")


def test_only_this_accounts_training_jobs_may_sign_and_in_one_organisation_the_others_jobs_read_the_key(
    three, separate_three
):
    """hospital-c's fingerprint is in the config: in one organisation no other member reads its key; insurer-a's is
    not, so the other two members' jobs read it."""
    for template, account, others in (
        (three.clients["ClientStack-insurer-a"], CLIENT_ACCOUNT, ["333333333333", "444444444444"]),
        (three.clients["ClientStack-hospital-c"], "444444444444", []),
        (next(iter(separate_three.clients.values())), CLIENT_ACCOUNT, []),
    ):
        _, key = _identity_key(template)
        root, deny, *readers = key["Properties"]["KeyPolicy"]["Statement"]
        assert root["Principal"] == {"AWS": f"arn:aws:iam::{account}:root"} and root["Action"] == "kms:*"
        assert (deny["Effect"], deny["Action"], deny["Principal"]) == ("Deny", "kms:Sign", {"AWS": "*"})
        assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": TRAINING_ROLE.format(account)}}
        if not others:
            assert readers == []
            continue
        [reader] = readers  # one statement for every other member: a key policy holds 32 KB
        assert reader["Principal"] == {"AWS": [f"arn:aws:iam::{a}:root" for a in others]}
        assert reader["Effect"] == "Allow" and reader["Action"] == "kms:GetPublicKey"
        assert reader["Condition"] == {  # each of those accounts' training-job role, and no other principal
            "ArnLike": {"aws:PrincipalArn": TRAINING_ROLE.format("*")},
            "StringEquals": {"aws:PrincipalAccount": others},
        }


def _grants(template, action: str) -> list[dict]:
    return [
        s for s in statements(template) if action in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    ]


def test_the_training_role_signs_with_this_key_reads_these_pins_and_the_notebook_only_reads_the_public_key(three):
    template = three.clients["ClientStack-insurer-a"]
    key_lid, _ = _identity_key(template)
    pins_lid, _ = _pins_parameter(template)
    this_key = {"Fn::GetAtt": [key_lid, "Arn"]}
    [sign] = _grants(template, "kms:Sign")
    assert sign["Sid"] == "SignWithThisMembersIdentityKey" and sign["Resource"] == this_key
    assert sorted(sign["Action"]) == ["kms:GetPublicKey", "kms:Sign"]
    readers = {s["Sid"]: s for s in _grants(template, "kms:GetPublicKey")}
    assert set(readers) == {
        "SignWithThisMembersIdentityKey",
        "ReadTheIdentityPublicKey",  # the notebook: doctor prints the fingerprint
        "ReadTheOtherMembersPublicKeys",  # insurer-b's; hospital-c's fingerprint is pinned, its key never read
    }
    assert readers["ReadTheIdentityPublicKey"]["Resource"] == this_key
    other = readers["ReadTheOtherMembersPublicKeys"]
    assert other["Action"] == "kms:GetPublicKey" and other["Resource"] == "arn:aws:kms:us-east-1:*:key/*"
    aliases = ["alias/fl-identity-*", "arn:aws:kms:us-east-1:*:alias/fl-identity-*"]  # requested by ARN; either form
    assert other["Condition"] == {  # of insurer-b's account only
        "StringLike": {"kms:RequestAlias": aliases},
        "StringEquals": {"aws:ResourceAccount": ["333333333333"]},
    }
    pins_reads = [s for s in _grants(template, "ssm:GetParameter") if f'"{pins_lid}"' in json.dumps(s["Resource"])]
    assert {s["Sid"] for s in pins_reads} == {"ReadThisMembersPins", "ReadSettingsAndPins"}  # the job; the notebook
    [job] = [s for s in pins_reads if s["Sid"] == "ReadThisMembersPins"]
    assert job["Action"] == "ssm:GetParameter" and f'"Ref": "{pins_lid}"' in json.dumps(job["Resource"])
    assert json.dumps(job["Resource"]).count("Ref") == 1  # this parameter and nothing else
    # the launcher puts that parameter's name in each job's environment (FL_MEMBER_PINS)
    [launcher] = [f for lid, f in resources(template, "AWS::Lambda::Function").items() if lid.startswith("Launcher")]
    [settings] = launcher["Properties"]["Environment"]["Variables"].values()
    parts = settings["Fn::Join"][1]
    assert parts[parts.index({"Ref": pins_lid}) - 1].endswith('"pins_parameter":"')


def test_the_client_vpc_has_a_kms_endpoint_and_resolves_its_name_and_the_server_vpc_neither(three):
    for template in three.clients.values():
        services = [
            json.dumps(e["Properties"]["ServiceName"]) for e in resources(template, "AWS::EC2::VPCEndpoint").values()
        ]
        assert sum(s.endswith('.kms"') for s in services) == 1
        domains = [
            d
            for r in resources(template, "AWS::Route53Resolver::FirewallDomainList").values()
            for d in r["Properties"]["Domains"]
        ]
        assert "kms.us-east-1.amazonaws.com" in domains
    server_domains = json.dumps(resources(three.server, "AWS::Route53Resolver::FirewallDomainList"))
    assert "kms." not in server_domains
    assert not [e for e in resources(three.server, "AWS::EC2::VPCEndpoint").values() if "kms" in json.dumps(e)]


def test_a_new_key_generation_is_a_new_key_the_alias_the_pins_and_the_grants_move_to(client, tmp_path):
    [sample] = default_context()["federation:clients"]
    rotated = synthesize(tmp_path / "rotated", clients=[dict(sample, identity_key_generation=2)])
    template = rotated.clients["ClientStack"]
    old_lid, _ = _identity_key(client)
    new_lid, _ = _identity_key(template)
    assert new_lid.startswith("IdentityKeyGeneration2") and new_lid != old_lid
    assert old_lid not in template.to_json()["Resources"]
    [alias] = resources(template, "AWS::KMS::Alias").values()
    assert alias["Properties"] == {
        "AliasName": "alias/fl-identity-client-a",
        "TargetKeyId": {"Fn::GetAtt": [new_lid, "Arn"]},
    }
    assert list(resources(template, "AWS::KMS::Alias")) == list(
        resources(client, "AWS::KMS::Alias")
    )  # updated in place
    [sign] = _grants(template, "kms:Sign")
    assert sign["Resource"] == {"Fn::GetAtt": [new_lid, "Arn"]}
    pins, key_arn = _deployed_pins(template)
    assert pins.identity == f"kms:{key_arn}"


def _identity_stack(members: list[ClientAccount], resolve: bool = True) -> Template:
    app = cdk.App()
    stack = cdk.Stack(app, "Identity", env=cdk.Environment(account=members[0].account, region="us-east-1"))
    settings = IdentitySettings(
        members[0], tuple(members), "us-east-1", f"/fl-fraud/client/{members[0].name}/pins", True, resolve
    )
    MemberIdentity(stack, "Identity", settings)
    return Template.from_stack(stack)


def _members(count: int) -> list[ClientAccount]:
    return [
        ClientAccount(
            f"member-{index:02d}-{'x' * 10}",
            f"{500000000000 + index}",
            f"10.{index}.0.0/16",
            "fl-x1",
            "aws",
            min_members=3,
        )
        for index in range(count)
    ]


def test_a_pins_document_over_8_kb_is_written_in_standard_parts_that_join_back_to_it():
    key_arn = "arn:aws:kms:us-east-1:500000000000:key/" + "0" * 36
    for count, tier in ((24, "Standard"), (36, "Advanced")):  # compact JSON: about 140 bytes a member here
        template = _identity_stack(_members(count))
        key_lid, _ = _identity_key(template)
        _, parameter = _pins_parameter(template)
        text = _resolved(parameter["Value"], key_lid, key_arn)
        assert parameter["Tier"] == "Intelligent-Tiering"  # SSM picks Standard or Advanced, and never moves back
        assert (len(text) <= 4096) == (tier == "Standard") and len(text) <= 8192
    template = _identity_stack(_members(300))  # about 42 KB: eleven parts
    key_lid, _ = _identity_key(template)
    values = {
        p["Properties"]["Name"]: _resolved(p["Properties"]["Value"], key_lid, key_arn)
        for p in resources(template, "AWS::SSM::Parameter").values()
    }
    name = "/fl-fraud/client/member-00-xxxxxxxxxx/pins"
    parts = int(json.loads(values[name])["parts"])
    assert parts > 8 and len(values) == parts + 1
    assert all(len(values[part_parameter(name, i)]) <= 4096 for i in range(1, parts + 1))
    tiers = {
        p["Properties"]["Name"]: p["Properties"].get("Tier", "Standard")
        for p in resources(template, "AWS::SSM::Parameter").values()
    }
    assert tiers.pop(name) == "Intelligent-Tiering" and set(tiers.values()) == {"Standard"}  # the parts: 4 KB each
    pins = ClientPins.from_json(read_document(name, values.__getitem__), name)
    assert len(pins.members) == 300 and pins.identity == f"kms:{key_arn}"


def test_the_server_checks_that_a_handovers_identity_key_is_of_that_clients_account():
    config = from_cdk_json(PROJECT / "cdk.json")
    [client] = config.clients
    document = handover_document({"name": "client-a", "account": CLIENT_ACCOUNT, "vpc_cidr": client.vpc_cidr}, 1, False)
    handover = ClientHandover.from_dict(document, "handover")
    assert check(handover, config, client, "client-a.json") == handover
    elsewhere = ClientHandover.from_dict(
        dict(document, identity_key_arn=document["identity_key_arn"].replace(CLIENT_ACCOUNT, "999999999999")), "h"
    )
    with pytest.raises(
        ConfigError, match=r"client-a.json: field 'identity_key_arn' is .* not a KMS key of client client-a's"
    ):
        check(elsewhere, config, client, "client-a.json")


def test_separate_organisations_hand_over_the_identity_key_arn(separate_one):
    [template] = separate_one.clients.values()
    key_lid, _ = _identity_key(template)
    parts = template.find_outputs("Handover")["Handover"]["Value"]["Fn::Join"][1]
    assert parts[parts.index({"Fn::GetAtt": [key_lid, "Arn"]}) - 1].endswith('"identity_key_arn":"')
