"""Server-side federation mechanics on top of Flower's FedAvg: bounded waits, membership, fast replies.

- ``PollingGrid``: the Grid the ServerApp receives polls for replies every 3 s; this wrapper does the
  same through the public Grid API (push_messages / pull_messages) every 50 ms (run config
  ``reply-poll-seconds``), so a round does not wait for the server's next poll. Flower itself is not
  patched.
- ``wait_for_clients``: Flower's node sampling waits forever for the minimum number of nodes; every
  wait here has a deadline, waits for all the clients expected (not just the minimum) while it can,
  and fails with a message that says how many came.
- ``FraudFedAvg``: FedAvg (example-weighted) restricted to the clients that took part in the moments
  round, with the per-round config; a client whose reply fails or times out is dropped for the rest of
  the run, which stops when fewer than ``min_clients`` remain; training stops at convergence
  (``TrainingPlan.stop_after``, the rule the in-process replay applies too) or after the most rounds
  allowed; and a federated evaluation of the final model only (earlier models are scored on validation
  inside the next round's training messages, which saves one message exchange per round).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from logging import INFO

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.common import log
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Result

from fl_runtime import defaults
from fl_runtime.app import records
from fl_runtime.errors import FederationError
from fl_runtime.learning.convergence import Stop
from fl_runtime.learning.model import Weights


@dataclass(frozen=True)
class Exchange:
    """One round trip of messages: when they left, what came back (node, reply, arrival) and who failed."""

    stage: str
    round: int
    pushed_at: float
    replies: list[tuple[int, Message, float]]
    failures: list[tuple[int, str]]


class PollingGrid(Grid):
    """A Grid that delegates to Flower's and polls for replies every ``poll_seconds``.

    It also remembers, for the last exchange, which node each message went to (message ids exist only
    once pushed; error replies come from the SuperLink, not from the node) and which nodes never
    answered.
    """

    def __init__(self, grid: Grid, poll_seconds: float = defaults.REPLY_POLL_SECONDS) -> None:
        self._grid = grid
        self.poll_seconds = poll_seconds
        self.destinations: dict[str, int] = {}
        self.unanswered: list[int] = []
        self.pushed_at = 0.0
        self.arrivals: dict[str, float] = {}

    def set_run(self, run) -> None:
        self._grid.set_run(run)

    @property
    def run(self):
        return self._grid.run

    def create_message(self, *args, **kwargs) -> Message:
        return self._grid.create_message(*args, **kwargs)

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def get_nodes(self):
        return self._grid.get_nodes()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        self.pushed_at, self.arrivals = time.time(), {}
        message_ids = list(self.push_messages(messages))
        self.destinations = {mid: m.metadata.dst_node_id for mid, m in zip(message_ids, messages) if mid}
        pending = set(self.destinations)
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending and (deadline is None or time.monotonic() < deadline):
            received = list(self.pull_messages(pending))
            now = time.time()
            self.arrivals.update({reply.metadata.reply_to_message_id: now for reply in received})
            replies.extend(received)
            pending.difference_update(reply.metadata.reply_to_message_id for reply in received)
            if pending:
                time.sleep(self.poll_seconds)
        self.unanswered = [self.destinations[mid] for mid in pending]
        return replies

    def node_of(self, reply: Message) -> int:
        """The node a reply is about."""
        return self.destinations.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)


def wait_for_clients(
    grid: Grid, minimum: int, timeout: float, among: set[int] | None = None, expected: int | None = None
) -> list[int]:
    """Connected node ids (of ``among``, if given).

    Returns as soon as ``expected`` (default: ``minimum``) are connected; when ``timeout`` runs out,
    returns those connected if they are at least ``minimum``, and raises otherwise.
    """
    expected = max(expected or minimum, minimum)
    deadline = time.monotonic() + timeout
    while True:
        connected = [node for node in grid.get_node_ids() if among is None or node in among]
        if len(connected) >= expected:
            return connected
        if time.monotonic() >= deadline:
            if len(connected) >= minimum:
                return connected
            raise FederationError(
                f"only {len(connected)} of the minimum {minimum} clients connected within {timeout:g} s "
                "(raise node-wait-timeout, lower min-clients, or check the clients' logs)"
            )
        time.sleep(0.2)


def sum_histograms_and_average(contents: list[RecordDict], weighting_key: str) -> MetricRecord:
    """Aggregate client metrics: histograms and counts add up, everything else is example-weighted."""
    metrics = [records.metrics_of(content) for content in contents]
    weights = [records.number(m, weighting_key) for m in metrics]
    total = sum(weights)
    aggregated: dict = {}
    for key in metrics[0]:
        if isinstance(metrics[0][key], list):
            aggregated[key] = [sum(column) for column in zip(*(m[key] for m in metrics))]
        elif key in (weighting_key, records.VALIDATION_ROWS):
            aggregated[key] = sum(records.whole(m, key) for m in metrics)
        else:
            aggregated[key] = sum(w * records.number(m, key) for w, m in zip(weights, metrics)) / total
    return MetricRecord(aggregated)


class FraudFedAvg(FedAvg):
    """FedAvg over a fixed membership with bounded waits; see the module docstring."""

    def __init__(
        self,
        *,
        members: dict[int, str],
        min_clients: int,
        node_wait_timeout: float,
        round_config: Callable[[int], dict],
        on_replies: Callable[[Exchange], None],
        stop_after: Callable[[int, Weights, Weights], Stop | None],
        on_stop: Callable[[Stop], None],
    ) -> None:
        super().__init__(
            fraction_train=1.0,
            fraction_evaluate=1.0,
            min_train_nodes=min_clients,
            min_evaluate_nodes=min_clients,
            min_available_nodes=min_clients,
            weighted_by_key=records.EXAMPLES,
            train_metrics_aggr_fn=sum_histograms_and_average,
            evaluate_metrics_aggr_fn=sum_histograms_and_average,
        )
        self.members = members
        self.min_clients = min_clients
        self.node_wait_timeout = node_wait_timeout
        self.round_config = round_config
        self.on_replies = on_replies
        self.stop_after = stop_after  # after round r, with the previous and the new global weights
        self.on_stop = on_stop
        self._grid: PollingGrid | None = None

    def start(
        self,
        grid: Grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: ConfigRecord | None = None,
        evaluate_config: ConfigRecord | None = None,
        evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None] | None = None,
    ) -> Result:
        """Flower's round loop (``Strategy.start``), but for two things: it ends after the round
        ``stop_after`` names (convergence, or ``num_rounds``), which Flower's fixed loop cannot, and the
        clients evaluate only that final model, once."""
        result = Result(arrays=initial_arrays)
        for server_round in range(1, num_rounds + 1):
            log(INFO, "[ROUND %s/%s at most]", server_round, num_rounds)
            previous = result.arrays
            self._train_round(grid, server_round, result, timeout, train_config or ConfigRecord())
            if evaluate_fn is not None and (scored := evaluate_fn(server_round, result.arrays)) is not None:
                result.evaluate_metrics_serverapp[server_round] = scored
            stop = self.stop_after(
                server_round, records.read_weights(previous)[0], records.read_weights(result.arrays)[0]
            )
            if stop is not None:
                log(INFO, "Training stopped: %s", stop.reason)
                self.on_stop(stop)
                break
        messages = self.configure_evaluate(server_round, result.arrays, evaluate_config or ConfigRecord(), grid)
        evaluated = self.aggregate_evaluate(server_round, grid.send_and_receive(messages, timeout=timeout))
        if evaluated is not None:
            result.evaluate_metrics_clientapp[server_round] = evaluated
        return result

    def _train_round(self, grid: Grid, server_round: int, result: Result, timeout: float, config: ConfigRecord) -> None:
        """One round of training: the clients' updates, averaged into ``result``."""
        replies = grid.send_and_receive(
            self.configure_train(server_round, result.arrays, config, grid), timeout=timeout
        )
        arrays, metrics = self.aggregate_train(server_round, replies)
        if arrays is None:
            raise FederationError(f"round {server_round}: no training reply could be averaged")
        result.arrays = arrays
        if metrics is not None:
            result.train_metrics_clientapp[server_round] = metrics

    def _to_members(self, messages: Iterable[Message]) -> list[Message]:
        return [m for m in messages if m.metadata.dst_node_id in self.members]

    def _wait(self, grid: Grid) -> None:
        if not isinstance(grid, PollingGrid):
            raise TypeError("FraudFedAvg needs a PollingGrid (it reports which node each reply is about)")
        self._grid = grid
        wait_for_clients(grid, self.min_clients, self.node_wait_timeout, among=set(self.members))

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._wait(grid)
        config = ConfigRecord({**config, **self.round_config(server_round)})
        return self._to_members(super().configure_train(server_round, arrays, config, grid))

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        self._wait(grid)
        config = ConfigRecord({**config, **self.round_config(server_round)})
        return self._to_members(super().configure_evaluate(server_round, arrays, config, grid))

    def _split(self, kind: str, server_round: int, replies: Iterable[Message]) -> list[Message]:
        """Report who answered and who failed; stop the run below ``min_clients`` answers."""
        replies = list(replies)
        grid = self._grid
        if grid is None:
            raise TypeError("replies aggregated before any message was configured")
        good = [reply for reply in replies if not reply.has_error()]
        failures = [(grid.node_of(reply), str(reply.error.reason)) for reply in replies if reply.has_error()]
        failures += [(node, "no reply within the round timeout") for node in grid.unanswered]
        arrivals = [grid.arrivals.get(reply.metadata.reply_to_message_id, time.time()) for reply in good]
        self.on_replies(
            Exchange(
                kind, server_round, grid.pushed_at, [(grid.node_of(r), r, t) for r, t in zip(good, arrivals)], failures
            )
        )
        for node, _ in failures:  # a client that failed a round is out of the federation for good
            self.members.pop(node, None)
        if len(good) < self.min_clients:
            raise FederationError(
                f"round {server_round}: only {len(good)} of the minimum {self.min_clients} clients replied to {kind}"
            )
        return good

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        return super().aggregate_train(server_round, self._split("train", server_round, replies))

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        return super().aggregate_evaluate(server_round, self._split("evaluate", server_round, replies))
