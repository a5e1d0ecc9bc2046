"""A federation in one process: the real ServerApp relay and the real ClientApp of each member, messages handed
from one to the other in memory, and a hook through which a test plays a hostile server.

``Federation.start`` writes each member's CSV, identity key and pins (``launch.local.member_pins``, as ``local``
does); ``InProcessGrid`` stands in for Flower's Grid: it calls ``client_app.app`` with each message and the
member's own context, after ``tamper`` (if given) has had its way with the message. Messages are created inside a
run: the fixture ``in_a_run`` sets Flower's task identity, as a ServerApp's process has it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from flwr.app import Context, Message, RecordDict

from fl_runtime.app import client_app
from fl_runtime.app.pins import ClientPins
from fl_runtime.app.relay import Relay, RelayHooks
from fl_runtime.app.run_settings import RunSettings
from fl_runtime.launch.local import member_pins
from fl_runtime.learning.data import LabelledData, write_csv
from fl_runtime.learning.task import TrainingPlan

Tamper = Callable[[str, Message], Message | None]  # (member, message) -> the message it gets, or None: lost


@contextmanager
def run_identity() -> Iterator[None]:
    """Messages are created inside a ServerApp's run; this stands in for the run's identity."""
    from flwr.supercore.task_identity import TaskIdentity

    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("_run_id", 1), ("_node_id", 0), ("_task_id", 1)):
            patch.setattr(TaskIdentity, name, value)
        yield


@pytest.fixture
def in_a_run():
    with run_identity():
        yield


@dataclass
class InProcessGrid:
    """What ``relay.Relay`` asks of a ``grid.PollingGrid``, answered by calling each member's real ClientApp."""

    configs: dict[int, dict]  # node -> its node config
    names: dict[int, str]
    run_id: int = 7
    tamper: Tamper | None = None
    sent: list[tuple[str, Message]] = field(default_factory=list)  # every message as the member received it
    unanswered: list[int] = field(default_factory=list)
    unreceived: dict[int, str] = field(default_factory=dict)
    arrivals: dict[str, float] = field(default_factory=dict)
    pushed_at: float = 0.0
    _nodes: dict[int, int] = field(default_factory=dict)  # id(reply) -> node

    def get_node_ids(self):
        return list(self.configs)

    def context(self, node: int) -> Context:
        return Context(run_id=self.run_id, node_id=node, node_config=self.configs[node], state=RecordDict(),
                       run_config={})  # fmt: skip

    def send_and_receive(self, messages, *, timeout=None):
        self.pushed_at, self.unanswered, self.unreceived = time.time(), [], {}
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            delivered = self.tamper(self.names[node], message) if self.tamper else message
            if delivered is None:
                self.unanswered.append(node)
                continue
            self.sent.append((self.names[node], delivered))
            reply = client_app.app(message=delivered, context=self.context(node))
            self._nodes[id(reply)] = node
            replies.append(reply)
        return replies

    def node_of(self, reply: Message) -> int:
        return self._nodes[id(reply)]

    def call(self, member: str, message: Message) -> Message:
        """One message straight to one member's ClientApp (a hostile server speaking to it alone)."""
        node = next(node for node, name in self.names.items() if name == member)
        return client_app.app(message=message, context=self.context(node))


@dataclass
class Federation:
    """Members' data, keys and pins on disk, and the grid that reaches their ClientApps."""

    folder: Path
    grid: InProcessGrid
    pins: dict[str, Path]
    test: LabelledData

    @classmethod
    def start(
        cls, folder: Path, members: dict[str, LabelledData], test: LabelledData, min_members: int = 3, **pins
    ) -> Federation:
        paths = member_pins(sorted(members), folder / "members", min_members, seed=0)
        configs, names = {}, {}
        for node, (name, data) in enumerate(sorted(members.items()), start=101):
            write_csv(folder / f"{name}.csv", data)
            if pins:
                edit_pins(paths[name], **pins)
            configs[node] = {
                "data-path": str(folder / f"{name}.csv"),
                "pins-file": str(paths[name]),
                "view-dir": str(folder / "views" / name),
            }
            names[node] = name
        client_app._sessions.clear()
        return cls(folder, InProcessGrid(configs, names), paths, test)

    def settings(self, plan: TrainingPlan | None = None, min_clients: int = 2) -> RunSettings:
        return RunSettings(
            plan or TrainingPlan(),
            min_clients=min_clients,
            expected_clients=len(self.grid.names),
            node_wait_timeout=5.0,
            round_timeout=5.0,
            test_data=self.folder / "test.csv",
            out_dir=self.folder / "out",
        )

    def relay(self, plan: TrainingPlan | None = None, min_clients: int = 2) -> Relay:
        return Relay(self.grid, self.settings(plan, min_clients), str(self.grid.run_id), lambda: dict(self.grid.names))  # type: ignore[arg-type]

    def run(self, plan: TrainingPlan | None = None, min_clients: int = 2, hooks: RelayHooks | None = None):
        """The real relay over the real ClientApps: (relay, final state, drop-outs)."""
        relay = self.relay(plan, min_clients)
        dropouts = []
        relay.exchange_keys(list(self.grid.configs), self.test.features)
        final = relay.run(self.test.features, hooks or RelayHooks(lambda *args: None, dropouts.append))
        return relay, final, dropouts


def edit_pins(path: Path, **changes) -> ClientPins:
    """Change a member's pinned settings on disk (its stack's update)."""
    import dataclasses

    pins = dataclasses.replace(ClientPins.read(path), **changes)
    path.write_text(pins.to_json())
    return pins


@dataclass
class Scripted:
    """A hostile server that speaks to members one message at a time, in any order it likes."""

    grid: InProcessGrid

    def keys(self, member: str, settings: dict | None = None) -> Message:
        from fl_runtime.app import protocol

        content = protocol.keys_request(settings if settings is not None else TrainingPlan().to_config())
        return self.grid.call(member, Message(content, dst_node_id=self.node(member), message_type=protocol.KEYS))

    def announce_all(self, settings: dict | None = None) -> list[bytes]:
        from fl_runtime.app import protocol

        members = sorted(self.grid.names.values())
        return [protocol.read_keys_reply(self.keys(member, settings).content) for member in members]

    def node(self, member: str) -> int:
        return next(node for node, name in self.grid.names.items() if name == member)

    def step(self, member: str, request) -> Message:
        from fl_runtime.app import protocol

        message = Message(request.to_content(), dst_node_id=self.node(member), message_type=protocol.STEP)
        return self.grid.call(member, message)

    def contributions(self, replies: dict[str, Message]) -> tuple[bytes, ...]:
        from fl_runtime.app import protocol

        return tuple(protocol.read_step_reply(replies[m].content)[0] for m in sorted(replies))
