"""One organisation: a member's job fills in the fingerprints of the members its pins name by their identity keys'
alias ARNs, from KMS (moto), before the ClientApp reads the pins; separate organisations' pinned fingerprints are
never looked up.

moto keeps one KMS per account and reads an alias ARN's alias name in the caller's own account, so "another
account's" key is simulated here by a second alias in the same moto account: the pins name it by an alias ARN of
another account id, as a real one-organisation pins document does. What moto cannot show, KMS's key policies
admitting the other members' training-job roles across accounts, is checked on the synthesized templates
(tests/stacks/test_identity.py).
"""

from __future__ import annotations

import boto3
import pytest

from fl_runtime.app.identity import fingerprint
from fl_runtime.app.pins import ClientPins, Member
from fl_runtime.aws.member_keys import key_fingerprint, kms_clients, resolve
from fl_runtime.aws.sagemaker_client import fetch_pins
from fl_runtime.errors import ConfigError, FederationError

pytestmark = pytest.mark.slow
ACCOUNTS = {"insurer-a": "222222222222", "insurer-b": "333333333333", "hospital-c": "444444444444"}
PINNED = "sha256:" + "c0" * 32  # hospital-c's, agreed out of band


def alias_arn(name: str) -> str:
    return f"arn:aws:kms:us-east-1:{ACCOUNTS[name]}:alias/fl-identity-{name}"


@pytest.fixture
def identity_keys(local_aws) -> dict[str, str]:
    """An ECC_NIST_P256 signing key per member, each behind its fl-identity alias; their fingerprints by name."""
    kms = boto3.client("kms", region_name="us-east-1")
    fingerprints = {}
    for name in ("insurer-a", "insurer-b"):
        key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=f"alias/fl-identity-{name}", TargetKeyId=key)
        fingerprints[name] = fingerprint(bytes(kms.get_public_key(KeyId=key)["PublicKey"]))
    return fingerprints


def pins_of_insurer_a(*members: Member) -> ClientPins:
    """insurer-a's pins: by default as one organisation's stack writes them (two members named by their aliases, one
    with a fingerprint in the config)."""
    named = (Member(name, "", identity_key=alias_arn(name)) for name in ("insurer-a", "insurer-b"))
    return ClientPins(
        client="insurer-a",
        members=members or (*named, Member("hospital-c", PINNED)),
        identity=f"kms:{alias_arn('insurer-a')}",
        min_members=len(members or ACCOUNTS),
    )


def test_the_job_fills_in_each_alias_named_members_fingerprint_from_kms_and_leaves_pinned_ones(
    identity_keys, local_aws, tmp_path, capsys
):
    recorder, _ = local_aws
    source = tmp_path / "pins.json"
    source.write_text(pins_of_insurer_a().to_json())
    before = len(recorder.calls)
    written = fetch_pins(source.as_uri(), tmp_path / "out.json", "insurer-a")
    pins = ClientPins.read(written)
    assert pins.fingerprint_of("insurer-a") == identity_keys["insurer-a"]
    assert pins.fingerprint_of("insurer-b") == identity_keys["insurer-b"]
    assert pins.fingerprint_of("hospital-c") == PINNED  # separate organisations' way: from the config, never read
    asked = [c.body["KeyId"] for c in recorder.calls[before:] if c.operation == "TrentService.GetPublicKey"]
    assert sorted(asked) == [alias_arn("insurer-a"), alias_arn("insurer-b")]
    assert capsys.readouterr().err == ""


def test_pins_in_ssm_are_read_and_resolved_the_same_way(identity_keys, local_aws, tmp_path):
    parameter = "/fl-fraud/client/insurer-a/pins"
    document = pins_of_insurer_a().to_json()
    boto3.client("ssm", region_name="us-east-1").put_parameter(Name=parameter, Value=document, Type="String")
    pins = ClientPins.read(fetch_pins(f"ssm:{parameter}", tmp_path / "pins.json", "insurer-a"))
    assert {m.name: m.fingerprint for m in pins.members} == {**identity_keys, "hospital-c": PINNED}


def test_a_member_whose_key_cannot_be_read_keeps_no_fingerprint_and_the_job_says_why(
    identity_keys, local_aws, tmp_path, capsys
):
    """Its ClientApp then refuses every run naming that member (app/member.py, an empty pinned fingerprint)."""
    missing = "arn:aws:kms:us-east-1:333333333333:alias/fl-identity-not-deployed"
    kms = boto3.client("kms", region_name="us-east-1")
    rsa = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]  # not a P-256 key
    members = (
        Member("insurer-a", "", identity_key=alias_arn("insurer-a")),
        Member("insurer-b", "", identity_key=missing),
        Member("clinic-d", "", identity_key=rsa),
    )
    source = tmp_path / "pins.json"
    source.write_text(pins_of_insurer_a(*members).to_json())
    pins = ClientPins.read(fetch_pins(source.as_uri(), tmp_path / "out.json", "insurer-a"))
    assert pins.fingerprint_of("insurer-a") == identity_keys["insurer-a"]
    assert pins.fingerprint_of("insurer-b") == "" and pins.fingerprint_of("clinic-d") == ""
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith(f"warning: member insurer-b: kms:GetPublicKey on {missing} failed (NotFoundException")
    assert warnings[1].startswith(
        f"warning: member clinic-d: {rsa} is a RSA_2048 key for SIGN_VERIFY, not an identity key (ECC_NIST_P256"
    )
    assert all(line.endswith("without its fingerprint every member refuses a run with it") for line in warnings)


def test_separate_organisations_pins_are_handed_over_unchanged_without_asking_kms(local_aws, tmp_path):
    recorder, _ = local_aws
    members = (Member("insurer-a", "sha256:" + "a1" * 32), Member("insurer-b", ""), Member("hospital-c", PINNED))
    pins = pins_of_insurer_a(*members)
    source = tmp_path / "pins.json"
    source.write_text(pins.to_json())
    before = len(recorder.calls)
    assert ClientPins.read(fetch_pins(source.as_uri(), tmp_path / "out.json", "insurer-a")) == pins
    assert not [c for c in recorder.calls[before:] if c.operation.startswith("TrentService.")]


def test_a_key_fingerprint_is_the_sha256_of_the_der_public_key_and_an_unknown_key_is_named(identity_keys, local_aws):
    assert key_fingerprint(kms_clients(), alias_arn("insurer-b")) == identity_keys["insurer-b"]
    missing = "arn:aws:kms:us-east-1:222222222222:key/00000000-0000-0000-0000-000000000000"
    with pytest.raises(FederationError, match=f"kms:GetPublicKey on {missing} failed"):
        key_fingerprint(kms_clients(), missing)


def test_resolving_asks_each_key_once_in_the_region_its_arn_names():
    regions = []

    class FakeKms:
        def __init__(self, region: str) -> None:
            self.region = region

        def get_public_key(self, KeyId: str) -> dict:
            regions.append((self.region, KeyId))
            return {"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY", "PublicKey": KeyId.encode()}

    west = "arn:aws:kms:eu-west-1:333333333333:alias/fl-identity-insurer-b"
    pins = pins_of_insurer_a(
        Member("insurer-a", "", identity_key=alias_arn("insurer-a")),
        Member("insurer-b", "", identity_key=west),
    )
    resolved = resolve(pins, lambda key: FakeKms(key.split(":")[3]), warn=pytest.fail)
    assert regions == [("us-east-1", alias_arn("insurer-a")), ("eu-west-1", west)]
    assert resolved.fingerprint_of("insurer-b") == fingerprint(west.encode())


def test_a_member_named_by_its_key_round_trips_and_a_bad_key_arn_is_refused_naming_the_member():
    pins = pins_of_insurer_a()
    again = ClientPins.from_json(pins.to_json(), "pins.json")
    assert again == pins and again.members[1].identity_key == alias_arn("insurer-b")
    assert again.fingerprint_of("insurer-b") == "" and again.fingerprint_of("hospital-c") == PINNED
    with pytest.raises(ConfigError, match=r"member insurer-b: identity_key 'alias/fl-identity-insurer-b' is not a KMS"):
        Member("insurer-b", "", identity_key="alias/fl-identity-insurer-b")  # a name, not an ARN another account reads
