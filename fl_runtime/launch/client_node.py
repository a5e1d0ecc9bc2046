"""A client's node: its SuperNode, in process isolation, and the client-owned runner that executes the
ClientApp for it, only for the apps this client approves. The local federation and a client's training
job start it the same way, so the local run rehearses production."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fl_runtime import defaults
from fl_runtime.launch.flower import SuperNodeSpec, flower_env, free_port, idle_poll
from fl_runtime.launch.processes import Supervisor


@dataclass(frozen=True)
class ClientNode:
    """``name`` names its processes (``supernode-<name>``, ``runner-<name>``); ``workspace`` holds its
    SuperExec secret, Flower home and installed apps."""

    name: str
    spec: SuperNodeSpec
    approved: tuple[str, ...]  # app content hashes this client runs
    workspace: Path
    environment: dict[str, str] = field(default_factory=dict)
    runner_poll_seconds: float = field(default_factory=lambda: idle_poll(defaults.TASK_POLL_SECONDS))

    @property
    def supernode(self) -> str:
        return f"supernode-{self.name}"

    @property
    def runner(self) -> str:
        return f"runner-{self.name}"

    def start(self, supervisor: Supervisor) -> None:
        """Start both processes: a fresh Runtime API port and SuperExec secret each time."""
        self.workspace.mkdir(parents=True, exist_ok=True)
        secret = self.workspace / "superexec.secret"
        descriptor = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(secrets.token_bytes(32))
        port = free_port()
        env = flower_env(self.workspace / "flwr-home", self.environment)
        supernode = supervisor.start(self.supernode, self.spec.command(port, secret), env, self.workspace / "supernode")
        runner = [
            sys.executable, "-m", "fl_runtime.launch.runner", "--runtime-api", f"127.0.0.1:{port}",
            "--auth-secret-file", str(secret), "--apps", str(self.workspace / "apps"),
            "--poll-seconds", f"{self.runner_poll_seconds:g}",
            "--supernode-pid", str(supernode.pid), "--name", self.name,
            *(argument for approved in self.approved for argument in ("--approve", approved)),
        ]  # fmt: skip
        supervisor.start(self.runner, runner, env, self.workspace / "runner")

    def stop(self, supervisor: Supervisor) -> None:
        supervisor.stop(self.runner)
        supervisor.stop(self.supernode)

    def exited(self, supervisor: Supervisor) -> dict[str, int]:
        """Which of the node's processes have stopped, with their exit codes."""
        return {name: code for name, code in supervisor.exited().items() if name in (self.supernode, self.runner)}
