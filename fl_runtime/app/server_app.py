"""Flower ServerApp: global statistics, FedAvg rounds, evaluation on the server-only test set, outputs.

1. Wait (bounded) for ``min-clients`` SuperNodes.
2. Moments round: every client sends counts, sums and sums of squares of log1p(features) over its
   training part, and its column names; the server checks them against its test set and derives the
   global standardisation and class balance (``GlobalStats``).
3. Rounds of FedAvg (``strategy.FraudFedAvg``) until the global model converges
   (``convergence-tolerance``) or ``num-server-rounds`` is reached, each global model scored on the
   test set; the final model is also scored by every client on its validation part, which fixes the
   decision threshold.
4. ``model.joblib``, ``metrics.json``, ``report.md`` and plots, written atomically into ``out-dir``.

Run config (``[tool.flwr.app.config]``, overridden by the launchers with ``flwr run --run-config``): see
``run_settings.RunSettings``. ``test-data`` and ``out-dir`` are absolute paths on the SuperLink's machine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fl_runtime.app import records
from fl_runtime.app.events import EVENTS_FILE, EventLog
from fl_runtime.app.history import History
from fl_runtime.app.run_settings import RunSettings, node_label, read_node_names
from fl_runtime.app.strategy import FraudFedAvg, PollingGrid, wait_for_clients
from fl_runtime.errors import FederationError, FlError
from fl_runtime.learning.data import LabelledData, column_difference, read_csv
from fl_runtime.learning.model import Weights, build_pipeline
from fl_runtime.learning.stats import FeatureMoments, GlobalStats, pooled_size

app = ServerApp()


@dataclass(frozen=True)
class Membership:
    """Who takes part after the moments round, their training counts and the global statistics."""

    names: dict[int, str]
    stats: GlobalStats
    rows: dict[str, int]
    positives: dict[str, int]
    dropouts: dict[int, str]  # node -> why it left in the moments round

    def pooled_examples(self, names: Iterable[str]) -> int:
        """Training examples of these clients (after oversampling, for SMOTE): the N of their pooled objective."""
        counts = ((self.rows[name], self.positives[name]) for name in names)
        return pooled_size(counts, self.stats.negatives_per_positive, self.stats.class_balance)


def collect_moments(
    grid: PollingGrid,
    nodes: list[int],
    test: LabelledData,
    settings: RunSettings,
    known: Callable[[], Mapping[int, str]],
) -> Membership:
    """The moments round: who takes part, and the global statistics of their training parts.

    A node that fails or does not answer within the round timeout is left out, as in the training
    rounds, while ``min-clients`` remain; ``known()`` names the nodes that never answered, read when the
    round is over (a launcher names a node just after it registered it, and it may connect at once). A client
    whose columns differ from the test set is a data error,
    not a dropout: the run stops and names it.
    """
    timeout, min_clients = settings.round_timeout, settings.min_clients
    messages = [
        Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=node, message_type=records.QUERY_MOMENTS)
        for node in nodes
    ]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    dropouts = dict.fromkeys(grid.unanswered, f"no answer to the moments query within {timeout:g} s")
    names: dict[int, str] = {}
    moments: list[FeatureMoments] = []
    rows: dict[str, int] = {}
    positives: dict[str, int] = {}
    for reply in sorted(replies, key=grid.node_of):
        node = grid.node_of(reply)
        if reply.has_error():
            dropouts[node] = f"failed to compute its statistics: {reply.error.reason}"
            continue
        name, features, client_moments = records.read_moments(reply.content)
        name = name if name not in names.values() else f"{name}-{node}"
        difference = column_difference(test.features, features)
        if difference:
            raise FederationError(
                f"client {name}: columns differ from the server's test set {test.source}: {difference}"
            )
        names[node] = name
        moments.append(client_moments)
        rows[name], positives[name] = client_moments.n_rows, client_moments.n_positive
    if len(names) < min_clients:
        labels = known()
        reasons = "; ".join(f"{node_label(node, labels)}: {reason}" for node, reason in sorted(dropouts.items()))
        raise FederationError(
            f"only {len(names)} clients answered the moments query, fewer than min-clients {min_clients} ({reasons})"
        )
    stats = GlobalStats.from_moments(moments, settings.plan.train.class_balance)
    return Membership(names, stats, rows, positives, dropouts)


def run(grid: Grid, settings: RunSettings, events: EventLog) -> None:
    """Membership, rounds, outputs (see the module docstring)."""
    from fl_runtime.app.report import write_outputs

    test = read_csv(settings.test_data)
    polling = PollingGrid(grid, settings.reply_poll_seconds)
    nodes = wait_for_clients(
        polling, settings.min_clients, settings.node_wait_timeout, expected=settings.expected_clients
    )
    membership = collect_moments(polling, nodes, test, settings, lambda: read_node_names(settings.node_names))
    known = read_node_names(settings.node_names)
    events.emit(
        {
            "event": "federation",
            "clients": list(membership.names.values()),
            "rows": membership.rows,
            "positives": membership.positives,
        }
    )
    history = History(test, membership.stats, membership.names, events.emit)
    for node, reason in membership.dropouts.items():
        history.drop(node_label(node, known), 0, "moments", reason)
    weights = train(polling, settings, membership, history)
    stats = membership.stats
    threshold = history.thresholds[max(history.rounds)]  # chosen on the clients' validation parts
    model = build_pipeline(test.features, stats.mean, stats.scale, weights, stats.prior_logit, threshold)
    write_outputs(
        settings.out_dir,
        model=model,
        history=history,
        weights=weights,
        membership=membership,
        settings=settings.summary(),
    )
    events.emit({"event": "done", "out-dir": str(settings.out_dir)})


def train(grid: PollingGrid, settings: RunSettings, membership: Membership, history: History) -> Weights:
    """FedAvg rounds from all-zero weights; returns the final global weights."""
    plan = settings.plan
    stats_config = records.stats_config(membership.stats)

    def round_config(server_round: int) -> dict:
        history.start_round(server_round)
        # the members left: after a dropout, FedAvg weighs the others only, so the ridge must too
        pooled = membership.pooled_examples(strategy.members.values())
        return {
            **stats_config,
            **plan.train.to_config(),
            records.USE_SHARED_CURVATURE: plan.uses_shared_curvature and server_round > 1,
            records.POOLED_EXAMPLES: pooled,
        }

    strategy = FraudFedAvg(
        members=dict(membership.names),
        min_clients=settings.min_clients,
        node_wait_timeout=settings.node_wait_timeout,
        round_config=round_config,
        on_replies=history.on_replies,
        stop_after=plan.stop_after,
        on_stop=history.stop,
    )
    n_features = len(history.test.features)
    curvature = np.zeros((n_features + 1, n_features + 1)) if plan.uses_shared_curvature else None
    result = strategy.start(
        grid=grid,
        initial_arrays=records.weights_record(Weights.zeros(n_features), curvature),
        num_rounds=plan.rounds,
        timeout=settings.round_timeout,
        evaluate_fn=history.evaluate,
    )
    weights, _ = records.read_weights(result.arrays)
    return weights


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = RunSettings.from_run_config(context.run_config)
    events = EventLog(settings.out_dir / EVENTS_FILE)
    try:
        run(grid, settings, events)
    except Exception as error:
        events.emit(
            {
                "event": "failed",
                "message": str(error) if isinstance(error, FlError) else f"{type(error).__name__}: {error}",
            }
        )
        raise
