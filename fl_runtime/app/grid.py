"""The ServerApp's side of Flower's Grid: fast replies, bounded waits, and replies that cannot fail a run.

- ``PollingGrid``: the Grid the ServerApp receives polls for replies every 3 s; this wrapper does the
  same through the public Grid API (push_messages / pull_messages) every 50 ms (run config
  ``reply-poll-seconds``), so a round does not wait for the server's next poll. Flower itself is not
  patched.
- ``wait_for_clients``: Flower's node sampling waits forever for the minimum number of nodes; every
  wait here has a deadline, waits for all the clients expected (not just the minimum) while it can,
  and fails with a message that says how many came.
- a reply that cannot be pulled (its sender died while sending it: Flower's ObjectPullError, or any
  transport error of one message) is that node's failure, never the run's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from flwr.app import Message
from flwr.serverapp import Grid

from fl_runtime import defaults
from fl_runtime.errors import FederationError


@dataclass(frozen=True)
class Exchange:
    """One round trip of messages: when they left, who answered (member, its timing, arrival) and who failed."""

    stage: str
    round: int
    pushed_at: float
    replies: list[tuple[str, dict[str, float], float]]
    failures: list[tuple[str, str]]


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
        self.unreceived: dict[int, str] = {}  # node -> why its reply could not be pulled
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
        self.pushed_at, self.arrivals, self.unreceived = time.time(), {}, {}
        message_ids = list(self.push_messages(messages))
        self.destinations = {mid: m.metadata.dst_node_id for mid, m in zip(message_ids, messages) if mid}
        pending = set(self.destinations)
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while pending and (deadline is None or time.monotonic() < deadline):
            received = self._pull(pending)
            now = time.time()
            self.arrivals.update({reply.metadata.reply_to_message_id: now for reply in received})
            replies.extend(received)
            pending.difference_update(reply.metadata.reply_to_message_id for reply in received)
            if pending:
                time.sleep(self.poll_seconds)
        self.unanswered = [self.destinations[mid] for mid in pending]
        return replies

    def _pull(self, pending: set[str]) -> list[Message]:
        """The replies that arrived. A reply whose pull raises (its sender died while sending it) is that node's
        failure (``unreceived``), never the run's: the others are pulled one by one."""
        try:
            return list(self.pull_messages(pending))
        except Exception:  # any transport error of one reply
            replies: list[Message] = []
            for message_id in list(pending):
                try:
                    replies.extend(self.pull_messages([message_id]))
                except Exception as error:
                    pending.discard(message_id)
                    self.unreceived[self.destinations[message_id]] = (
                        f"its reply could not be received ({type(error).__name__}: {error})"
                    )
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
