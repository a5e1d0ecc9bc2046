"""What a client pins as a member, in the federation config: defaults, explicit values, and every refusal naming the
field of ``clients[i]``."""

from __future__ import annotations

import copy

import pytest

from fl_runtime import defaults
from fl_runtime.app.pins import SettingRanges
from stacks import client_config
from stacks.config import ConfigError, parse
from tests.stacks.cdk_helpers import THREE_CLIENTS, default_context

FINGERPRINT = "sha256:" + "0123456789abcdef" * 4


@pytest.fixture
def raw() -> dict:
    context = default_context()
    return {key.split(":", 1)[1]: value for key, value in context.items() if key.startswith("federation:")}


@pytest.fixture
def three(raw) -> dict:
    return dict(raw, clients=copy.deepcopy(THREE_CLIENTS))


def test_the_sample_config_pins_its_one_client_with_k_1_explicitly_and_the_runtimes_defaults_otherwise(raw):
    assert raw["clients"][0]["min_members"] == 1  # cdk.json says so: one client cannot take the default k of 3
    [client] = parse(raw).clients
    assert (client.min_members, client.min_rows, client.allow_reruns, client.seed) == (1, defaults.MIN_ROWS, True, 0)
    assert client.ranges == SettingRanges() and client.identity_fingerprint == ""
    assert client.identity_key_generation == 1
    assert client.identity_alias == "alias/fl-identity-client-a"
    assert client.identity_alias_arn("us-east-1") == "arn:aws:kms:us-east-1:222222222222:alias/fl-identity-client-a"
    assert client.training_role_arn == "arn:aws:iam::222222222222:role/FL-training-job"


def test_three_clients_take_the_default_k_and_each_its_own_explicit_pins(three):
    three["clients"][1].update(
        identity_fingerprint=FINGERPRINT,
        min_members=2,
        min_rows=25,
        allow_reruns=False,
        seed=7,
        identity_key_generation=3,
        ranges={"max_rounds": 20, "C": [0.01, 100], "penalties": ["l2"], "class_balances": ["none", "smote"],
                "families": ["gbdt"], "max_trees": 120, "depth": [2, 4], "min_rows_leaf": [50, 1000]},
    )  # fmt: skip
    first, second, _ = parse(three).clients
    assert first.min_members == defaults.MIN_MEMBERS and first.ranges == SettingRanges()
    assert (second.identity_fingerprint, second.min_members, second.min_rows) == (FINGERPRINT, 2, 25)
    assert (second.allow_reruns, second.seed, second.identity_key_generation) == (False, 7, 3)
    assert second.ranges == SettingRanges(
        families=("gbdt",),
        max_rounds=20,
        max_trees=120,
        depth=(2.0, 4.0),
        min_rows_leaf=(50.0, 1000.0),
        C=(0.01, 100.0),
        penalties=("l2",),
        class_balances=("none", "smote"),
        tolerance=SettingRanges().tolerance,
    )


def test_a_federation_smaller_than_the_default_k_must_set_it_and_is_told_what_two_members_means(raw, three):
    del raw["clients"][0]["min_members"]
    with pytest.raises(ConfigError, match=r"^clients\[0\]\.min_members: missing: the federation has 1 client, fewer"):
        parse(raw)
    two = dict(three, clients=three["clients"][:2])
    with pytest.raises(ConfigError) as error:
        parse(two)
    message = str(error.value)
    assert message.startswith("clients[0].min_members: missing: the federation has 2 clients, fewer than the default")
    assert "set it explicitly, from 1 to 2" in message
    assert "with two members each learns the other's sums" in message
    for client in two["clients"]:
        client["min_members"] = 2
    assert [c.min_members for c in parse(two).clients] == [2, 2]


@pytest.mark.parametrize(
    "index, field, value, message",
    [
        (2, "min_members", 4, "clients[2].min_members: 4 is more than the 3 clients of the federation"),
        (0, "min_members", 0, "clients[0].min_members: 0 is not a whole number from 1 to"),
        (1, "min_members", "3", "clients[1].min_members: '3' is not a whole number"),
        (0, "identity_fingerprint", "sha256:" + "AB" * 32, "clients[0].identity_fingerprint: 'sha256:ABAB"),
        (0, "identity_fingerprint", "0123" * 16, "is not sha256:<64 lower-case hexadecimal digits>"),
        (1, "identity_fingerprint", FINGERPRINT[:-1], "clients[1].identity_fingerprint: "),
        (0, "min_rows", 0, "clients[0].min_rows: 0 is not a whole number from 1 to"),
        (0, "allow_reruns", "yes", "clients[0].allow_reruns: 'yes' is not true or false"),
        (0, "seed", -1, "clients[0].seed: -1 is not a whole number from 0 to 4294967295"),
        (0, "identity_key_generation", 0, "clients[0].identity_key_generation: 0 is not a whole number from 1"),
        (0, "identity_key_generation", 1.5, "clients[0].identity_key_generation: 1.5 is not a whole number"),
        (0, "ranges", ["logistic"], "clients[0].ranges: ['logistic'] is not an object with any of families,"),
        (0, "ranges", {"rounds": 5}, "clients[0].ranges.rounds: not a setting range; the ranges are families,"),
        (0, "ranges", {"families": ["forest"]}, "clients[0].ranges.families: ['forest'] is not a non-empty list"),
        (0, "ranges", {"families": []}, "clients[0].ranges.families: [] is not a non-empty list"),
        (0, "ranges", {"max_rounds": 0}, "clients[0].ranges.max_rounds: 0 is not a whole number from 1 to 1000"),
        (0, "ranges", {"max_rounds": 1001}, "clients[0].ranges.max_rounds: 1001 is not a whole number from 1 to 1000"),
        (0, "ranges", {"C": [0, 1]}, "clients[0].ranges.C: [0, 1] is not [lowest, highest] with 0 < lowest <= highest"),
        (0, "ranges", {"C": [10, 1]}, "clients[0].ranges.C: [10, 1] is not [lowest, highest]"),
        (0, "ranges", {"C": [1, "10"]}, "clients[0].ranges.C: [1, '10'] is not [lowest, highest]"),
        (0, "ranges", {"C": [1, 2, 3]}, "clients[0].ranges.C: [1, 2, 3] is not [lowest, highest]"),
        (0, "ranges", {"penalties": ["l2", "elasticnet"]}, "clients[0].ranges.penalties: ['l2', 'elasticnet'] is"),
        (0, "ranges", {"penalties": ["l2", "l2"]}, "clients[0].ranges.penalties: ['l2', 'l2'] is not a non-empty"),
        (0, "ranges", {"class_balances": ["oversample"]}, "clients[0].ranges.class_balances: ['oversample'] is not"),
        (
            0,
            "ranges",
            {"tolerance": [-0.1, 0.1]},
            "clients[0].ranges.tolerance: [-0.1, 0.1] is not [lowest, highest] with 0 <= lowest <= highest",
        ),
        (0, "ranges", {"tolerance": [0.2, 0.1]}, "clients[0].ranges.tolerance: [0.2, 0.1] is not [lowest, highest]"),
    ],
)
def test_a_bad_member_setting_is_refused_naming_the_clients_field(three, index, field, value, message):
    three["clients"][index][field] = value
    with pytest.raises(ConfigError) as error:
        parse(three)
    assert message in str(error.value)


def test_two_clients_pinned_to_the_same_identity_key_are_refused(three):
    three["clients"][0]["identity_fingerprint"] = three["clients"][2]["identity_fingerprint"] = FINGERPRINT
    with pytest.raises(ConfigError, match=r"clients\[2\]\.identity_fingerprint: .* is already clients\[0\]'s"):
        parse(three)


def test_a_tolerance_range_may_start_at_zero_and_c_may_be_one_value(three):
    three["clients"][0]["ranges"] = {"tolerance": [0, 0], "C": [1, 1]}
    ranges = parse(three).clients[0].ranges
    assert ranges.tolerance == (0.0, 0.0) and ranges.C == (1.0, 1.0)


def test_the_ranges_the_config_accepts_are_the_runtimes_own():
    """The CDK app does not load the learning code: its lists must stay what the ClientApp trains with."""
    from fl_runtime.learning.balance import METHODS
    from fl_runtime.learning.families import FAMILIES
    from fl_runtime.learning.task import PENALTIES

    assert set(client_config.FAMILIES) == set(FAMILIES)
    assert set(client_config.PENALTIES) == set(PENALTIES)
    assert set(client_config.CLASS_BALANCES) == set(METHODS)
    assert set(SettingRanges().families) <= set(FAMILIES) and set(SettingRanges().class_balances) == set(METHODS)
