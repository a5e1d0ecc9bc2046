"""The relay in one process, honest: the real ServerApp relay and the real ClientApps reach the in-process replay's
model from the very same integers, and every party's transcript verifies."""

from __future__ import annotations

import numpy as np
import pytest

from fl_runtime.app.verify import verify_file
from fl_runtime.learning import fixed_point
from fl_runtime.learning.baselines import exact_totals, federated, split_clients
from fl_runtime.learning.families import family
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.task import ClientRows, TrainingPlan
from tests.relay_harness import Federation, in_a_run  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("in_a_run")


@pytest.fixture
def members(synthetic):
    test, clients = partition(synthetic, PartitionSpec(3, "non-iid", "label", 1.0, test_fraction=0.2, seed=5))
    return test, dict(zip(("clinic-a", "insurer-b", "insurer-c"), clients))


def test_the_relayed_run_lands_on_the_in_process_replays_model_from_the_same_integers(members, tmp_path):
    test, clients = members
    federation = Federation.start(tmp_path, clients, test)
    relay, final, dropouts = federation.run()
    assert dropouts == []
    replay = federated(split_clients([clients[n] for n in sorted(clients)], 0), test, TrainingPlan())
    np.testing.assert_array_equal(final.weights.vector, replay.state.weights.vector)  # bit for bit
    # and every total the relay recorded is the in-process integers' total
    machine = family("logistic")
    rows = [ClientRows(c, 0) for c in split_clients([clients[n] for n in sorted(clients)], 0)]
    state = machine.start(TrainingPlan(), test.features)
    for line in relay.transcript.lines:
        if b'"entry":"step"' not in line:
            continue
        layout = machine.layout(state)
        encoded = [layout.encode(machine.answer(state, member, 1)) for member in rows]
        expected = fixed_point.to_bytes(fixed_point.add(encoded))
        import base64
        import json

        assert base64.b64decode(json.loads(line)["total"]) == expected
        state, _ = machine.advance(state, exact_totals(machine, state, rows), 3)


def test_every_members_transcript_and_the_servers_verify_offline(members, tmp_path):
    test, clients = members
    federation = Federation.start(tmp_path, clients, test)
    relay, _, _ = federation.run()
    (tmp_path / "server.jsonl").write_bytes(relay.transcript.closed(None))
    assert verify_file(tmp_path / "server.jsonl").writer == "server"
    for name in clients:
        verified = verify_file(tmp_path / "views" / name / "transcript.jsonl")
        assert verified.signed and verified.writer == name and verified.members == tuple(sorted(clients))


def test_a_member_that_does_not_answer_the_keys_query_is_named_and_the_run_does_not_start(members, tmp_path):
    from fl_runtime.errors import FederationError

    test, clients = members
    federation = Federation.start(tmp_path, clients, test)
    federation.grid.tamper = lambda member, message: None if member == "insurer-c" else message
    with pytest.raises(FederationError, match=r"not every one announced its keys \(insurer-c: no answer within 5 s\)"):
        federation.run()
