"""The moments round on its own: who takes part when a client fails or stays silent."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest
from flwr.app import RecordDict

from fl_runtime.app import records
from fl_runtime.app.run_settings import RunSettings, read_node_names, write_node_names
from fl_runtime.app.server_app import collect_moments
from fl_runtime.errors import FederationError
from fl_runtime.learning.stats import FeatureMoments, GlobalStats, resampled_size
from fl_runtime.learning.task import TrainConfig, TrainingPlan


@pytest.fixture(autouse=True)
def in_a_run(monkeypatch):
    """Messages are created inside a ServerApp's run; this stands in for the run's identity."""
    from flwr.supercore.task_identity import TaskIdentity

    for field, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, field, value)


def settings(min_clients: int = 2) -> RunSettings:
    return RunSettings(
        TrainingPlan(),
        min_clients=min_clients,
        expected_clients=4,
        node_wait_timeout=5.0,
        round_timeout=1.0,
        test_data=Path("/test.csv"),
        out_dir=Path("/out"),
    )


class MomentsGrid:
    """Answers the moments query like the nodes would: a reply, an error reply, or silence."""

    def __init__(self, answers: dict[int, object]) -> None:
        self.answers = answers  # node -> LabelledData (a reply), str (an error reason) or None (no answer)
        self.unanswered: list[int] = []

    def send_and_receive(self, messages, *, timeout):
        replies = []
        for message in messages:
            node, answer = message.metadata.dst_node_id, self.answers[message.metadata.dst_node_id]
            if answer is None:
                self.unanswered.append(node)
            elif isinstance(answer, str):
                replies.append(SimpleNamespace(node=node, has_error=lambda: True, error=SimpleNamespace(reason=answer)))
            else:
                content = RecordDict(
                    records.moments_records(f"client-{node}", answer.features, FeatureMoments.of(answer))
                )
                replies.append(SimpleNamespace(node=node, has_error=lambda: False, content=content))
        return replies

    def node_of(self, reply) -> int:
        return reply.node


def test_a_client_that_fails_or_stays_silent_is_left_out_while_the_minimum_remains(synthetic):
    part = synthetic.subset(range(400))
    grid = MomentsGrid({1: part, 2: "MemoryError", 3: None, 4: part})
    membership = collect_moments(grid, [1, 2, 3, 4], synthetic, settings(), dict)
    assert membership.names == {1: "client-1", 4: "client-4"}
    assert membership.dropouts == {
        2: "failed to compute its statistics: MemoryError",
        3: "no answer to the moments query within 1 s",
    }
    assert membership.rows == {"client-1": 400, "client-4": 400}


def test_fewer_answers_than_the_minimum_stop_the_run_with_every_reason(synthetic):
    grid = MomentsGrid({1: synthetic.subset(range(400)), 2: "MemoryError", 3: None})
    with pytest.raises(
        FederationError,
        match=r"only 1 clients answered the moments query, fewer than min-clients 2 \(node 2: failed .*MemoryError; "
        r"node 3: no answer",
    ):
        collect_moments(grid, [1, 2, 3], synthetic, settings(), dict)


def test_a_node_that_never_answered_is_named_by_the_client_the_launcher_registered_it_for(synthetic, tmp_path):
    write_node_names(tmp_path / "node-names.json", {2: "insurer-b", 3: "hospital-c"})
    known = read_node_names(tmp_path / "node-names.json")
    assert known == {2: "insurer-b", 3: "hospital-c"} and read_node_names(tmp_path / "absent.json") == {}
    grid = MomentsGrid({1: synthetic.subset(range(400)), 2: "MemoryError", 3: None})
    with pytest.raises(FederationError, match=r"\(insurer-b: failed .*MemoryError; hospital-c: no answer"):
        collect_moments(grid, [1, 2, 3], synthetic, settings(), lambda: known)


def test_a_node_its_launcher_names_while_the_moments_round_runs_is_named_by_its_client(synthetic, tmp_path):
    """A launcher writes a node's name just after registering its key; the node may connect, and the round
    start, before that: the names are read when the round is over."""
    path = tmp_path / "node-names.json"

    class NamedDuringTheRound(MomentsGrid):
        def send_and_receive(self, messages, *, timeout):
            replies = super().send_and_receive(messages, timeout=timeout)
            write_node_names(path, {2: "insurer-b", 3: "hospital-c"})
            return replies

    grid = NamedDuringTheRound({1: synthetic.subset(range(400)), 2: "not approved", 3: None})
    with pytest.raises(FederationError, match=r"\(insurer-b: failed .*not approved; hospital-c: no answer"):
        collect_moments(grid, [1, 2, 3], synthetic, settings(), lambda: read_node_names(path))


def test_the_pooled_example_count_follows_the_members_left_so_the_ridge_matches_their_pooled_objective(synthetic):
    parts = {
        1: synthetic.subset(range(400)),
        2: synthetic.subset(range(400, 1000)),
        3: synthetic.subset(range(1000, 1300)),
    }
    smote = dataclasses.replace(settings(), plan=TrainingPlan(train=TrainConfig(class_balance="smote")))
    membership = collect_moments(MomentsGrid(parts), [1, 2, 3], synthetic, smote, dict)
    everyone = membership.pooled_examples(membership.names.values())
    assert everyone == membership.stats.pooled_examples
    left = membership.pooled_examples(["client-1", "client-3"])
    ratio = membership.stats.negatives_per_positive
    assert left == sum(resampled_size(p.n_rows, p.n_positive, ratio) for p in (parts[1], parts[3])) < everyone
    moments = [FeatureMoments.of(parts[n]) for n in (1, 2, 3)]
    assert GlobalStats.from_moments(moments, "smote").pooled_examples == everyone
    # without oversampling (class weights, none) the pooled objective's N is the members' rows
    plain = collect_moments(MomentsGrid(parts), [1, 2, 3], synthetic, settings(), dict)
    assert plain.stats.class_balance == settings().plan.train.class_balance != "smote"
    assert plain.pooled_examples(["client-1", "client-3"]) == parts[1].n_rows + parts[3].n_rows
