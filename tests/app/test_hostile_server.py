"""A hostile server, speaking only Flower messages to the real, approved ClientApp: every question it chooses,
every forged, replayed or re-ordered contribution, every member set it invents is refused, naming what.

The attack that motivated the relay (crafted weights, statistics, seed, ridge, class weights, bins, thresholds
and histogram ranges turning the curvature a member returns into a picture of one training row) has no message
to ride on: the protocol carries none of those values, and a message that tries is refused by name.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, RecordDict

from fl_runtime.app import protocol
from fl_runtime.app.identity import FileIdentity, create_identity_key
from fl_runtime.app.pins import ClientPins, Member
from fl_runtime.app.signed import PROTOCOL, Contribution, RunKeys
from fl_runtime.errors import FederationError
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.task import TrainingPlan
from tests.relay_harness import Federation, Scripted, edit_pins, in_a_run  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("in_a_run")
MEMBERS = ("clinic-a", "insurer-b", "insurer-c")


@pytest.fixture
def federation(synthetic, tmp_path) -> Federation:
    test, clients = partition(synthetic, PartitionSpec(3, "iid", test_fraction=0.2, seed=1))
    return Federation.start(tmp_path, dict(zip(MEMBERS, clients)), test)


def refusal(reply: Message) -> str:
    assert reply.has_error() and not reply.has_content(), "a refusal carries no content"
    assert reply.error.code == protocol.REFUSED
    return str(reply.error.reason)


def rewrite(message: Message, **changes) -> Message:
    request = dataclasses.replace(protocol.read_step_request(message.content), **changes)
    return Message(request.to_content(), dst_node_id=message.metadata.dst_node_id, message_type=protocol.STEP)


def first_step(server: Scripted, announcements: list[bytes], members=MEMBERS) -> protocol.StepRequest:
    return protocol.StepRequest("moments", 0, 1, tuple(members), tuple(announcements), ())


# --- the original attack's values have no message to ride on --------------------------------------------------


def test_the_attacks_train_message_with_crafted_weights_and_statistics_is_refused_by_name(federation):
    crafted = RecordDict(
        {
            "arrays": ArrayRecord({"coef": Array(np.full((1, 49), 50.0)), "intercept": Array(np.array([-3.0]))}),
            "config": ConfigRecord({"feature-mean": [0.0] * 49, "feature-scale": [1.0] * 49, "seed": 3}),
        }
    )
    for message_type in ("train", "evaluate", "query.moments"):
        reply = federation.grid.call("clinic-a", Message(crafted, dst_node_id=101, message_type=message_type))
        assert f"message type '{message_type}' is not part of the relay protocol" in refusal(reply)


@pytest.mark.parametrize(
    "field",
    ["weights", "feature-mean", "feature-scale", "seed", "ridge", "class-weights", "bins", "threshold",
     "histogram-range", "prior-logit", "pooled-examples"],
)  # fmt: skip
def test_a_step_that_carries_any_server_chosen_value_is_refused_naming_the_field(federation, field):
    server = Scripted(federation.grid)
    announcements = server.announce_all()
    content = first_step(server, announcements).to_content()
    content.config_records["relay"][field] = 1.0
    message = Message(content, dst_node_id=101, message_type=protocol.STEP)
    assert refusal(federation.grid.call("clinic-a", message)) == f"field '{field}' is not part of the relay protocol"


def test_a_step_with_an_array_record_is_refused_before_anything_is_computed(federation):
    server = Scripted(federation.grid)
    content = first_step(server, server.announce_all()).to_content()
    content["arrays"] = ArrayRecord({"coef": Array(np.ones((1, 49)))})
    reply = federation.grid.call("clinic-a", Message(content, dst_node_id=101, message_type=protocol.STEP))
    assert "the message carries array records ['arrays']: the relay protocol carries none" in refusal(reply)


# --- settings outside a member's pinned ranges ----------------------------------------------------------------


@pytest.mark.parametrize(
    "change, named",
    [
        ({"num-server-rounds": 1000}, "setting 'num-server-rounds': 1000 is outside this member's range [1, 50]"),
        ({"C": 1e-9}, "setting 'C': 1e-09 is outside this member's range [0.0001, 10000]"),
        (
            {"convergence-tolerance": 0.5},
            "setting 'convergence-tolerance': 0.5 is outside this member's range [0, 0.1]",
        ),
        ({"penalty": "elasticnet"}, "setting 'penalty': 'elasticnet' is not one this member accepts (l2, l1)"),
        ({"class-balance": "oversample-10x"}, "setting 'class-balance': 'oversample-10x' is not one this member"),
        ({"family": "gbdt"}, "setting 'family': 'gbdt' is not one this member accepts (logistic)"),
        ({"trees": 301}, "setting 'trees': 301 is outside this member's range [1, 300]"),
        ({"depth": 7}, "setting 'depth': 7 is outside this member's range [1, 6]"),
        ({"depth": 2.5}, "setting 'depth': 2.5 is outside this member's range [1, 6]"),
        ({"learning-rate": 2.0}, "setting 'learning-rate': 2 is outside this member's range [0.01, 1]"),
        ({"min-hessian": -1.0}, "setting 'min-hessian': -1 is outside this member's range [0, 1000]"),
        ({"cell-rows": 0}, "setting 'cell-rows': 0 is outside this member's range [1, 1e+09]"),
        ({"seed": 3}, "setting 'seed' is not one a member takes from a run"),
        ({"ridge": 1e-12}, "setting 'ridge' is not one a member takes from a run"),
    ],
)
def test_a_setting_outside_the_members_pinned_ranges_is_refused_naming_it(federation, change, named):
    settings = {**TrainingPlan().to_config(), **change}
    assert named in refusal(Scripted(federation.grid).keys("clinic-a", settings))


def test_a_member_that_pinned_fewer_rounds_refuses_a_run_of_more(federation):
    edit_pins(
        federation.pins["insurer-b"],
        ranges=dataclasses.replace(ClientPins.read(federation.pins["insurer-b"]).ranges, max_rounds=5),
    )
    assert "range [1, 5]" in refusal(Scripted(federation.grid).keys("insurer-b"))
    with pytest.raises(
        FederationError,
        match=r"not every one announced its keys .*insurer-b: refused: setting 'num-server-rounds': 10 is outside",
    ):
        federation.run(TrainingPlan(rounds=10))


# --- members and keys ------------------------------------------------------------------------------------------


def test_a_run_that_does_not_start_with_exactly_the_pinned_members_is_refused(federation):
    server = Scripted(federation.grid)
    announcements = server.announce_all()
    reply = server.step("clinic-a", first_step(server, announcements[:2], MEMBERS[:2]))
    assert "a run must start with exactly the pinned members ['clinic-a', 'insurer-b', 'insurer-c']" in refusal(reply)


def test_an_announcement_from_an_unpinned_member_is_refused(federation, tmp_path):
    server = Scripted(federation.grid)
    announcements = server.announce_all()
    create_identity_key(tmp_path / "mallory.pem")
    mallory = RunKeys().announce("insurer-c", "7", TrainingPlan().to_config(), federation.test.features,
                                 FileIdentity(tmp_path / "mallory.pem"))  # fmt: skip
    swapped = [*announcements[:2], mallory.to_bytes()]
    reply = server.step("clinic-a", first_step(server, swapped))
    assert "member insurer-c's identity key sha256:" in refusal(reply)
    assert "is not its pinned one (revoked or swapped?)" in refusal(reply)


def test_a_rotated_key_is_refused_from_the_moment_its_fingerprint_leaves_the_pins(federation, tmp_path):
    """insurer-c rotates its identity key; clinic-a's stack update pins the new one: the old key is refused."""
    new = create_identity_key(tmp_path / "insurer-c-new.pem")
    pins = ClientPins.read(federation.pins["clinic-a"])
    members = tuple(Member(m.name, new if m.name == "insurer-c" else m.fingerprint) for m in pins.members)
    edit_pins(federation.pins["clinic-a"], members=members)
    with pytest.raises(
        FederationError,
        match=r"clinic-a, the moments query attempt 1: refused: member insurer-c's identity key .* \(revoked or swap",
    ):
        federation.run()


def test_a_total_over_fewer_members_than_a_members_k_is_refused(federation):
    server = Scripted(federation.grid)
    announcements = server.announce_all()
    for member in MEMBERS:
        server.step(member, first_step(server, announcements))
    rerun = protocol.StepRequest("moments", 0, 2, MEMBERS[:2], tuple(announcements), ())
    assert "a total over 2 members is below this member's min_members (3)" in refusal(server.step("clinic-a", rerun))


def test_a_member_whose_pins_forbid_reruns_refuses_one(federation):
    for member in MEMBERS:
        edit_pins(federation.pins[member], min_members=2)
    edit_pins(federation.pins["clinic-a"], allow_reruns=False)
    server = Scripted(federation.grid)
    announcements = server.announce_all()
    for member in MEMBERS:
        server.step(member, first_step(server, announcements))
    rerun = protocol.StepRequest("moments", 0, 2, MEMBERS[:2], tuple(announcements), ())
    assert "this member's settings forbid answering a step again" in refusal(server.step("clinic-a", rerun))
    assert not server.step("insurer-b", rerun).has_error()  # its own pins allow it


@pytest.fixture
def k_two_moments_answered(federation):
    """Every member's k is 2 and the first step is answered by all three: (server, announcements, replies)."""
    for member in MEMBERS:
        edit_pins(federation.pins[member], min_members=2)
    server = Scripted(federation.grid)
    announcements = server.announce_all()
    return server, announcements, {m: server.step(m, first_step(server, announcements)) for m in MEMBERS}


def test_a_member_that_dropped_out_is_not_let_back_in(k_two_moments_answered):
    server, announcements, first = k_two_moments_answered
    pair = MEMBERS[:2]
    rerun = protocol.StepRequest("moments", 0, 2, pair, tuple(announcements), ())
    second = {m: server.step(m, rerun) for m in pair}
    back = protocol.StepRequest("round", 1, 1, MEMBERS, (), server.contributions(second))
    assert "members ['insurer-c'] dropped out earlier and stay out" in refusal(server.step("clinic-a", back))
    assert first  # the first attempt was answered by all three


# --- contributions: forged, replayed, re-ordered, other histories ----------------------------------------------


@pytest.fixture
def moments_done(federation):
    """The first step answered by every member: (server, announcements, their replies)."""
    server = Scripted(federation.grid)
    announcements = server.announce_all()
    replies = {m: server.step(m, first_step(server, announcements)) for m in MEMBERS}
    return server, announcements, replies


def _round_one(contributions) -> protocol.StepRequest:
    return protocol.StepRequest("round", 1, 1, MEMBERS, (), tuple(contributions))


def test_a_forged_contribution_is_refused_naming_its_member(moments_done):
    server, _, replies = moments_done
    wires = list(server.contributions(replies))
    genuine = Contribution.from_bytes(wires[1])
    forger = Ed25519PrivateKey.generate()
    forged = dataclasses.replace(genuine, signature=forger.sign(genuine.signed_bytes()))
    wires[1] = forged.to_bytes()
    reason = refusal(server.step("clinic-a", _round_one(wires)))
    assert "member insurer-b's contribution is not signed by its member's run key (forged?)" in reason


def test_a_contribution_whose_vector_was_changed_in_relay_is_refused(moments_done):
    server, _, replies = moments_done
    wires = list(server.contributions(replies))
    changed = bytearray(wires[2])
    changed[-1] ^= 1
    wires[2] = bytes(changed)
    assert "member insurer-c's vector is not the one its header names" in refusal(
        server.step("clinic-a", _round_one(wires))
    )


def test_re_ordered_contributions_are_refused(moments_done):
    server, _, replies = moments_done
    wires = tuple(reversed(server.contributions(replies)))
    assert "the contributions are re-ordered or repeated" in refusal(server.step("clinic-a", _round_one(wires)))


def test_a_contribution_replayed_from_another_round_is_refused(moments_done):
    server, _, replies = moments_done
    wires = server.contributions(replies)
    round_one = {m: server.step(m, _round_one(wires)) for m in MEMBERS}
    replayed = protocol.StepRequest("round", 2, 1, MEMBERS, (), wires)  # the moments' contributions again
    reason = refusal(server.step("clinic-a", replayed))
    assert "member clinic-a's contribution is for moments 0, attempt 1" in reason and "(replayed?)" in reason
    honest = protocol.StepRequest("round", 2, 1, MEMBERS, (), server.contributions(round_one))
    assert "this member left" in refusal(server.step("clinic-a", honest))  # one refusal and it is out of the run
    assert not server.step("insurer-b", honest).has_error()


def test_a_contribution_replayed_from_another_attempt_is_refused(k_two_moments_answered):
    server, announcements, attempt_one = k_two_moments_answered
    pair = MEMBERS[:2]
    attempt_two = {
        m: server.step(m, protocol.StepRequest("moments", 0, 2, pair, tuple(announcements), ())) for m in pair
    }
    stale = server.contributions({m: attempt_one[m] for m in pair})
    reason = refusal(server.step("insurer-b", protocol.StepRequest("round", 1, 1, pair, (), stale)))
    assert "is for moments 0, attempt 1, members ['clinic-a', 'insurer-b', 'insurer-c']" in reason
    assert "(replayed?)" in reason and attempt_two


def test_a_contribution_replayed_from_another_run_is_refused(federation):
    server = Scripted(federation.grid)
    announcements = server.announce_all()
    earlier = server.contributions({m: server.step(m, first_step(server, announcements)) for m in MEMBERS})
    federation.grid.run_id = 8  # a new run: new keys, a new transcript
    server = Scripted(federation.grid)
    announcements = server.announce_all()
    for member in MEMBERS:
        server.step(member, first_step(server, announcements))
    reason = refusal(server.step("clinic-a", _round_one(earlier)))
    assert "was changed in relay" in reason or "computed after another history" in reason or "forged" in reason


def test_a_server_that_shows_members_different_histories_is_caught_at_the_next_step(federation):
    """insurer-b is told that round 1 was re-run without clinic-a; clinic-a is told it was not. insurer-b's next
    contribution is signed after that other history, and clinic-a refuses it."""
    for member in MEMBERS:
        edit_pins(federation.pins[member], min_members=2)
    server = Scripted(federation.grid)
    announcements = server.announce_all()
    moments = server.contributions({m: server.step(m, first_step(server, announcements)) for m in MEMBERS})
    round_one = {m: server.step(m, _round_one(moments)) for m in MEMBERS}
    others = MEMBERS[1:]
    rerun = {m: server.step(m, protocol.StepRequest("round", 1, 2, others, (), moments)) for m in others}
    to_a = protocol.StepRequest("round", 2, 1, MEMBERS, (), server.contributions(round_one))
    to_others = protocol.StepRequest("round", 2, 1, others, (), server.contributions(rerun))
    a_answer = server.step("clinic-a", to_a)
    b_answer = server.step("insurer-b", to_others)
    c_answer = server.step("insurer-c", to_others)
    mixed = server.contributions({"clinic-a": a_answer, "insurer-b": b_answer, "insurer-c": c_answer})
    reason = refusal(server.step("clinic-a", protocol.StepRequest("round", 3, 1, MEMBERS, (), mixed)))
    assert "member insurer-b's contribution is for round 2, attempt 1, members ['insurer-b', 'insurer-c']" in reason


def _colluding(monkeypatch, craft) -> None:
    """insurer-c answers with ``craft(words)`` of its encoded values (masked and signed with its own keys)."""
    from fl_runtime.app import masking
    from fl_runtime.app import member as member_module
    from fl_runtime.learning import fixed_point

    original = member_module.MemberSession._answer

    def colluding(session, step):
        if session.name != "insurer-c":
            return original(session, step)
        layout = session.machine.layout(session.state)
        vector = craft(layout.encode(session.machine.answer(session.state, session._member_rows(), 1)))
        others = {p: session.pair_keys[p] for p in step.members if p != session.name}
        masked = masking.mask(vector, session.name, others, step.label)
        head = session.transcript.head
        return Contribution.sign(session.keys, session.name, step, head, fixed_point.to_bytes(masked))

    monkeypatch.setattr(member_module.MemberSession, "_answer", colluding)


def _refusal_after_moments(federation) -> str:
    server = Scripted(federation.grid)
    announcements = server.announce_all()
    moments = server.contributions({m: server.step(m, first_step(server, announcements)) for m in MEMBERS})
    return refusal(server.step("clinic-a", _round_one(moments)))


def test_a_total_no_members_in_range_can_add_up_to_is_refused_naming_the_quantity(federation, monkeypatch):
    """A colluding member sends a value far outside its range (signed with its own key): the honest members'
    total decodes out of range and they refuse it."""

    def beyond(vector):
        vector[0] = np.uint64(2**62)  # rows: far beyond what three members in range can add up to
        return vector

    _colluding(monkeypatch, beyond)
    assert "the sum's rows[0] exceeds what 3 members in range can add up to" in _refusal_after_moments(federation)


def test_totals_that_give_no_next_model_are_refused_not_stepped_on(federation, monkeypatch):
    """Within its range, a colluder makes the positives total negative: no class balance follows from it."""

    def negative_positives(vector):
        vector[1] = np.int64(-(10**6)).astype(np.uint64)
        return vector

    _colluding(monkeypatch, negative_positives)
    assert "the moments query: its totals give no next model" in _refusal_after_moments(federation)


def test_the_protocol_version_is_checked(federation):
    content = protocol.keys_request(TrainingPlan().to_config())
    content.config_records["relay"]["protocol"] = "fl-relay/0"
    reply = federation.grid.call("clinic-a", Message(content, dst_node_id=101, message_type=protocol.KEYS))
    assert f"field 'protocol': 'fl-relay/0' is not {PROTOCOL}" in refusal(reply)


def test_after_the_first_step_a_tree_runs_steps_are_answered_only_by_the_members_of_the_step_before(federation):
    """A tree level's larger children are its parents' histograms minus the smaller ones', and the counts of the
    bins and of every root do not depend on the model: a server that re-runs a step with fewer members, or asks
    the next one of fewer members (a root included), would learn the one left out's counts by difference. Every
    such step is refused, whatever the member's allow_reruns; only the first step may be re-run."""
    from fl_runtime.app.pins import SettingRanges
    from fl_runtime.learning.trees import TreeSettings

    for member in MEMBERS:
        edit_pins(federation.pins[member], min_members=2, ranges=SettingRanges(families=("gbdt",)))
    settings = TrainingPlan(family="gbdt", trees=TreeSettings(trees=2, depth=3, min_rows_leaf=20)).to_config()
    server = Scripted(federation.grid)
    announcements = server.announce_all(settings)
    replies = {
        m: server.step(m, protocol.StepRequest("bins", 0, 1, MEMBERS, tuple(announcements), ())) for m in MEMBERS
    }
    for kind, number in (("bins", 1), ("level", 1)):  # the fine bins, the first root
        request = protocol.StepRequest(kind, number, 1, MEMBERS, (), server.contributions(replies))
        replies = {m: server.step(m, request) for m in MEMBERS}
        assert not any(reply.has_error() for reply in replies.values()), kind
    root = server.contributions(replies)
    level_2 = protocol.StepRequest("level", 2, 1, MEMBERS, (), root)
    replies = {m: server.step(m, level_2) for m in MEMBERS}
    assert not any(reply.has_error() for reply in replies.values())
    rerun = protocol.StepRequest("level", 2, 2, MEMBERS[:2], (), root)
    assert "tree exchange 2 must be answered by the members of the step before it" in refusal(
        server.step(MEMBERS[0], rerun)
    )
    fewer = protocol.StepRequest("level", 3, 1, MEMBERS[1:], (), server.contributions(replies))
    assert "tree exchange 3 must be answered by the members of the step before it" in refusal(
        server.step(MEMBERS[1], fewer)
    )


def test_the_tree_floors_bind_a_tree_run_only_a_logistic_run_is_not_refused_for_them(federation):
    """min-rows-leaf and cell-rows are held at or above a member's min_rows where trees grow; a logistic run
    carries the same keys at their defaults and is not refused for them by a member with a high min_rows."""
    from fl_runtime.app.pins import SettingRanges

    for member in ("clinic-a", "insurer-b"):
        edit_pins(federation.pins[member], min_rows=30, ranges=SettingRanges(families=("logistic", "gbdt")))
    server = Scripted(federation.grid)
    assert not server.keys("clinic-a", TrainingPlan().to_config()).has_error()  # min-rows-leaf 20 < 30: unused
    trees = {**TrainingPlan().to_config(), "family": "gbdt"}
    assert "setting 'min-rows-leaf': 20 is outside this member's range [30, 1e+09]" in refusal(
        server.keys("insurer-b", trees)
    )
    # every bin in every node (cell-rows 0, or below min_rows) would let a cell describe one row: refused
    edit_pins(federation.pins["insurer-c"], ranges=SettingRanges(families=("gbdt",)))
    assert "setting 'cell-rows': 5 is outside this member's range [10, 1e+09]" in refusal(
        server.keys("insurer-c", {**trees, "cell-rows": 5})
    )
