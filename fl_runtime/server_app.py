"""Flower ServerApp: global statistics, FedAvg rounds, evaluation on the server-only test set, outputs.

1. Wait (bounded) for ``min-clients`` SuperNodes.
2. Moments round: every client sends counts, sums and sums of squares of log1p(features) over its
   training part, and its column names; the server checks them against its test set and derives the
   global standardisation and class balance (``GlobalStats``).
3. ``num-server-rounds`` rounds of FedAvg (``strategy.FraudFedAvg``), each global model scored on the
   test set; the final model is also scored by every client on its validation part, which fixes the
   decision threshold.
4. ``model.joblib``, ``metrics.json``, ``report.md`` and plots, written atomically into ``out-dir``.

Run config (pyproject.toml ``[tool.flwr.app.config]``, overridable with ``flwr run --run-config``):
see ``ServerSettings``. ``test-data`` and ``out-dir`` are absolute paths on the SuperLink's machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fl_runtime import records
from fl_runtime.data import LabelledData, column_difference, read_csv
from fl_runtime.history import History
from fl_runtime.model import Weights, build_pipeline
from fl_runtime.stats import GlobalStats, pooled_size
from fl_runtime.errors import FederationError
from fl_runtime.strategy import FraudFedAvg, PollingGrid, wait_for_clients
from fl_runtime.task import TrainConfig

app = ServerApp()

EVENTS_FILE = "events.jsonl"


def _positive_number(config, key: str, kind=float):
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or kind(value) != value or value <= 0:
        raise ValueError(f"run config '{key}' must be a positive {'whole number' if kind is int else 'number'}, got {value!r}")
    return kind(value)


def _absolute_path(config, key: str) -> Path:
    value = str(config[key])
    if not value or not Path(value).is_absolute():
        raise ValueError(f"run config '{key}' must be an absolute path on the SuperLink's machine, got {value!r}")
    return Path(value)


def check_launch_options(rounds: int, min_clients: int | None, timeouts: dict[str, float]) -> None:
    """The launchers' flags that become run config (``local`` and ``federate`` alike), checked before
    anything starts; ``timeouts`` maps each flag to its value."""
    if rounds < 1:
        raise ValueError(f"--rounds must be at least 1, got {rounds}")
    if min_clients is not None and min_clients < 1:
        raise ValueError(f"--min-clients must be at least 1, got {min_clients}")
    for flag, value in timeouts.items():
        if value <= 0:
            raise ValueError(f"{flag} must be positive, got {value}")


NODE_NAMES_FILE = "node-names.json"


def write_node_names(path: Path, names: dict[int, str]) -> None:
    """Which client each registered SuperNode is, as the launcher knows it: so a node that never
    answers (and so never says its name) is still reported by its client's name."""
    from fl_runtime.files import write_text_atomic

    write_text_atomic(path, json.dumps({str(node): name for node, name in names.items()}, indent=2))


def read_node_names(path: Path | None) -> dict[int, str]:
    if path is None or not path.exists():
        return {}
    return {int(node): str(name) for node, name in json.loads(path.read_text()).items()}


def node_label(node: int, known: dict[int, str]) -> str:
    return known.get(node, f"node {node}")


@dataclass(frozen=True)
class ServerSettings:
    """The run config, validated once."""

    rounds: int
    train: TrainConfig
    share_curvature: bool
    min_clients: int
    expected_clients: int  # how many were started: the run waits for all of them while it can
    node_wait_timeout: float
    round_timeout: float
    seed: int
    test_data: Path
    out_dir: Path
    data_description: str
    reply_poll_seconds: float
    node_names: Path | None = None  # see write_node_names

    @classmethod
    def from_run_config(cls, config) -> ServerSettings:
        return cls(
            rounds=_positive_number(config, "num-server-rounds", int),
            train=TrainConfig(int(config["local-iterations"]), float(config["C"]), str(config["penalty"])),
            share_curvature=bool(config["share-curvature"]),
            min_clients=_positive_number(config, "min-clients", int),
            expected_clients=int(config.get("expected-clients", 0)),
            node_wait_timeout=_positive_number(config, "node-wait-timeout"),
            round_timeout=_positive_number(config, "round-timeout"),
            seed=int(config["seed"]),
            test_data=_absolute_path(config, "test-data"),
            out_dir=_absolute_path(config, "out-dir"),
            data_description=str(config.get("data-description", "")),
            reply_poll_seconds=_positive_number(config, "reply-poll-seconds"),
            node_names=_absolute_path(config, "node-names") if config.get("node-names") else None,
        )

    def to_run_config(self) -> dict:
        """What a launcher passes to ``flwr run --run-config``: the inverse of ``from_run_config``."""
        return {
            "num-server-rounds": self.rounds,
            "local-iterations": self.train.local_iterations,
            "C": float(self.train.C),
            "penalty": self.train.penalty,
            "share-curvature": self.share_curvature,
            "min-clients": self.min_clients,
            "expected-clients": self.expected_clients,
            "node-wait-timeout": float(self.node_wait_timeout),
            "round-timeout": float(self.round_timeout),
            "seed": self.seed,
            "test-data": str(self.test_data),
            "out-dir": str(self.out_dir),
            "data-description": self.data_description,
            "reply-poll-seconds": float(self.reply_poll_seconds),
            "node-names": str(self.node_names or ""),
        }

    def summary(self) -> dict:
        return {
            "num-server-rounds": self.rounds,
            **records.train_config(self.train),
            "share-curvature": self.share_curvature,
            "min-clients": self.min_clients,
            "expected-clients": self.expected_clients,
            "node-wait-timeout": self.node_wait_timeout,
            "round-timeout": self.round_timeout,
            "seed": self.seed,
            "test-data": str(self.test_data),
            "data": self.data_description,
        }


class EventLog:
    """Progress as JSON lines in ``out-dir``: the launcher renders them live, the report keeps them."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def emit(self, event: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(event) + "\n")


@dataclass(frozen=True)
class Federation:
    names: dict[int, str]
    stats: GlobalStats
    rows: dict[str, int]
    positives: dict[str, int]
    dropouts: dict[int, str]  # node -> why it left in the moments round

    def pooled_examples(self, names) -> int:
        """Training examples after oversampling of these clients: the N of their pooled objective."""
        return pooled_size(((self.rows[name], self.positives[name]) for name in names), self.stats.negatives_per_positive)


def collect_moments(
    grid: PollingGrid, nodes: list[int], test: LabelledData, timeout: float, min_clients: int, known: dict[int, str] | None = None
) -> Federation:
    """The moments round: who takes part, and the global statistics of their training parts.

    A node that fails or does not answer within ``timeout`` is left out, as in the training rounds,
    while ``min_clients`` remain. A client whose columns differ from the test set is a data error,
    not a dropout: the run stops and names it.
    """
    messages = [Message(RecordDict({"config": ConfigRecord({})}), dst_node_id=node, message_type=records.QUERY_MOMENTS) for node in nodes]
    replies = list(grid.send_and_receive(messages, timeout=timeout))
    dropouts = {node: f"no answer to the moments query within {timeout:g} s" for node in grid.unanswered}
    names: dict[int, str] = {}
    moments, rows, positives = [], {}, {}
    for reply in sorted(replies, key=grid.node_of):
        node = grid.node_of(reply)
        if reply.has_error():
            dropouts[node] = f"failed to compute its statistics: {reply.error.reason}"
            continue
        name, features, client_moments = records.read_moments(reply.content)
        name = name if name not in names.values() else f"{name}-{node}"
        difference = column_difference(test.features, features)
        if difference:
            raise FederationError(f"client {name}: columns differ from the server's test set {test.source}: {difference}")
        names[node] = name
        moments.append(client_moments)
        rows[name], positives[name] = client_moments.n_rows, client_moments.n_positive
    if len(names) < min_clients:
        reasons = "; ".join(f"{node_label(node, known or {})}: {reason}" for node, reason in sorted(dropouts.items()))
        raise FederationError(f"only {len(names)} clients answered the moments query, fewer than min-clients {min_clients} ({reasons})")
    return Federation(names, GlobalStats.from_moments(moments), rows, positives, dropouts)


def run(grid: Grid, settings: ServerSettings, events: EventLog) -> None:
    from fl_runtime.report import write_outputs

    test = read_csv(settings.test_data)
    grid = PollingGrid(grid, settings.reply_poll_seconds)
    nodes = wait_for_clients(grid, settings.min_clients, settings.node_wait_timeout, expected=settings.expected_clients)
    known = read_node_names(settings.node_names)
    federation = collect_moments(grid, nodes, test, settings.round_timeout, settings.min_clients, known)
    events.emit({"event": "federation", "clients": list(federation.names.values()), "rows": federation.rows, "positives": federation.positives})
    history = History(test, federation.stats, federation.names, events.emit)
    for node, reason in federation.dropouts.items():
        history.drop(node_label(node, known), 0, "moments", reason)
    stats_config = records.stats_config(federation.stats)

    def round_config(server_round: int) -> dict:
        history.start_round(server_round)
        use_shared = settings.share_curvature and settings.train.penalty == "l2" and server_round > 1
        # the members left: after a dropout, FedAvg weighs the others only, so the ridge must too
        pooled = federation.pooled_examples(strategy.members.values())
        return {**stats_config, **records.train_config(settings.train), records.USE_SHARED_CURVATURE: use_shared, records.POOLED_EXAMPLES: pooled}

    strategy = FraudFedAvg(
        members=dict(federation.names),
        min_clients=settings.min_clients,
        num_rounds=settings.rounds,
        node_wait_timeout=settings.node_wait_timeout,
        round_config=round_config,
        on_replies=history.on_replies,
    )
    n_features = len(test.features)
    curvature = np.zeros((n_features + 1, n_features + 1)) if settings.share_curvature and settings.train.penalty == "l2" else None
    result = strategy.start(
        grid=grid,
        initial_arrays=records.weights_record(Weights.zeros(n_features), curvature),
        num_rounds=settings.rounds,
        timeout=settings.round_timeout,
        evaluate_fn=history.evaluate,
    )
    weights, _ = records.read_weights(result.arrays)
    stats = federation.stats
    model = build_pipeline(test.features, stats.mean, stats.scale, weights, stats.prior_logit)
    write_outputs(settings.out_dir, model=model, history=history, weights=weights, federation=federation, settings=settings.summary())
    events.emit({"event": "done", "out-dir": str(settings.out_dir)})


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = ServerSettings.from_run_config(context.run_config)
    events = EventLog(settings.out_dir / EVENTS_FILE)
    try:
        run(grid, settings, events)
    except Exception as error:
        events.emit({"event": "failed", "message": f"{type(error).__name__}: {error}" if not isinstance(error, FederationError) else str(error)})
        raise
