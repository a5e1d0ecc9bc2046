"""The moments round on its own: who takes part when a client fails or stays silent."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from flwr.app import RecordDict

from fl_runtime import records
from fl_runtime.server_app import collect_moments
from fl_runtime.stats import FeatureMoments
from fl_runtime.errors import FederationError


@pytest.fixture(autouse=True)
def in_a_run(monkeypatch):
    """Messages are created inside a ServerApp's run; this stands in for the run's identity."""
    from flwr.supercore.task_identity import TaskIdentity

    for field, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
        monkeypatch.setattr(TaskIdentity, field, value)


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
                content = RecordDict(records.moments_records(f"client-{node}", answer.features, FeatureMoments.of(answer)))
                replies.append(SimpleNamespace(node=node, has_error=lambda: False, content=content))
        return replies

    def node_of(self, reply) -> int:
        return reply.node


def test_a_client_that_fails_or_stays_silent_is_left_out_while_the_minimum_remains(synthetic):
    part = synthetic.subset(range(400))
    grid = MomentsGrid({1: part, 2: "MemoryError", 3: None, 4: part})
    federation = collect_moments(grid, [1, 2, 3, 4], synthetic, timeout=1.0, min_clients=2)
    assert federation.names == {1: "client-1", 4: "client-4"}
    assert federation.dropouts == {2: "failed to compute its statistics: MemoryError", 3: "no answer to the moments query within 1 s"}
    assert federation.rows == {"client-1": 400, "client-4": 400}


def test_fewer_answers_than_the_minimum_stop_the_run_with_every_reason(synthetic):
    grid = MomentsGrid({1: synthetic.subset(range(400)), 2: "MemoryError", 3: None})
    with pytest.raises(FederationError, match=r"only 1 clients answered the moments query, fewer than min-clients 2 \(node 2: failed .*MemoryError; node 3: no answer"):
        collect_moments(grid, [1, 2, 3], synthetic, timeout=1.0, min_clients=2)


def test_a_node_that_never_answered_is_named_by_the_client_the_launcher_registered_it_for(synthetic, tmp_path):
    from fl_runtime.server_app import read_node_names, write_node_names

    write_node_names(tmp_path / "node-names.json", {2: "insurer-b", 3: "hospital-c"})
    known = read_node_names(tmp_path / "node-names.json")
    assert known == {2: "insurer-b", 3: "hospital-c"} and read_node_names(tmp_path / "absent.json") == {}
    grid = MomentsGrid({1: synthetic.subset(range(400)), 2: "MemoryError", 3: None})
    with pytest.raises(FederationError, match=r"\(insurer-b: failed .*MemoryError; hospital-c: no answer"):
        collect_moments(grid, [1, 2, 3], synthetic, timeout=1.0, min_clients=2, known=known)


def test_the_pooled_example_count_follows_the_members_left_so_the_ridge_matches_their_pooled_objective(synthetic):
    from fl_runtime.stats import FeatureMoments, GlobalStats, resampled_size

    parts = {1: synthetic.subset(range(400)), 2: synthetic.subset(range(400, 1000)), 3: synthetic.subset(range(1000, 1300))}
    federation = collect_moments(MomentsGrid(parts), [1, 2, 3], synthetic, timeout=1.0, min_clients=2)
    everyone = federation.pooled_examples(federation.names.values())
    assert everyone == federation.stats.pooled_examples
    left = federation.pooled_examples(["client-1", "client-3"])
    ratio = federation.stats.negatives_per_positive
    assert left == sum(resampled_size(p.n_rows, p.n_positive, ratio) for p in (parts[1], parts[3])) < everyone
    assert GlobalStats.from_moments([FeatureMoments.of(parts[n]) for n in (1, 2, 3)]).pooled_examples == everyone


def test_the_run_config_a_launcher_sends_reads_back_as_the_same_settings(tmp_path):
    from pathlib import Path

    from fl_runtime.server_app import ServerSettings
    from fl_runtime.task import TrainConfig

    settings = ServerSettings(
        rounds=4, train=TrainConfig(2, 0.5, "l1"), share_curvature=False, min_clients=2, expected_clients=3, node_wait_timeout=60.0,
        round_timeout=30.0, seed=7, test_data=tmp_path / "test.csv", out_dir=tmp_path / "out", data_description="synthetic",
        reply_poll_seconds=0.05, node_names=tmp_path / "node-names.json",
    )
    assert ServerSettings.from_run_config(settings.to_run_config()) == settings
    without_names = ServerSettings(**{**settings.__dict__, "node_names": None})
    assert ServerSettings.from_run_config(without_names.to_run_config()) == without_names
    assert Path(settings.to_run_config()["test-data"]).is_absolute()
