"""The client-owned ClientApp runner: one warm process that runs only the Flower app this client approved.

A client's SuperNode runs in process isolation (``--isolation process``): it launches nothing itself
and hands each message to whoever acquires the task on its Runtime API, with the node's SuperExec
secret. This runner is that executor, in place of Flower's ``flower-superexec``:

1. it acquires the next task and pulls its FAB and message (``flower_runtime``);
2. it computes the FAB's content hash (``fab.fab_content_hash``) and compares it with the hashes this
   client approved (``--approve``, from the client's own configuration, never from the server). A FAB
   that is not approved is never installed or imported: the server gets an error reply saying
   "app <hash> is not approved by this account (approved: <hashes>)", and the runner exits with code
   3 and the same line on stderr, so the client's job ends non-zero;
3. an approved FAB is installed once and its ClientApp loaded once (the FAB's own copy of
   ``fl_runtime``, not this runner's), then called for every message of the run in this same process:
   no process start-up per message, and the ClientApp keeps its prepared rows in memory between rounds;
4. a ClientApp that raises: the server's error reply names only the exception's type, as its message and
   traceback may quote the client's data; they go to this runner's log, in the client's account;
5. it never outlives its node: it exits (code 4) as soon as the SuperNode it serves (``--supernode-pid``) or the
   process that started it is gone, instead of polling a dead port.

    python -m fl_runtime.launch.runner --runtime-api 127.0.0.1:9094 --auth-secret-file secret \\
        --apps ./apps --approve <hash> [--approve <hash> ...]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import traceback
from pathlib import Path

from fl_runtime import defaults
from fl_runtime.app.run_settings import TASK_STARTED_ENV
from fl_runtime.errors import BundleError
from fl_runtime.launch import faults, flower_runtime
from fl_runtime.launch.fab import fab_content_hash, unpack_fab
from fl_runtime.launch.processes import process_status

EXIT_REFUSED = 3
EXIT_ORPHANED = 4


def refusal(app_hash: str, approved: tuple[str, ...]) -> str:
    return f"app {app_hash} is not approved by this account (approved: {', '.join(approved)})"


class Runner:
    """Acquire, check, run, reply; see the module docstring."""

    def __init__(
        self,
        address: str,
        secret: bytes,
        approved: tuple[str, ...],
        apps: Path,
        supernode_pid: int | None = None,
        name: str | None = None,
    ) -> None:
        self.address = address
        self.secret = secret
        self.approved = approved
        self.apps = apps
        self.supernode_pid = supernode_pid
        self.name = name  # the member it serves: names its test faults only
        self.parent = os.getppid()
        self._loaded: tuple[str, object] | None = None  # (content hash, ClientApp) of the app in this process

    def serve(self, poll_seconds: float = defaults.TASK_POLL_SECONDS) -> int:
        """Until a task brings an app that is not approved (then EXIT_REFUSED); a supervisor stops it otherwise."""
        source = flower_runtime.TaskSource(self.address, self.secret)
        try:
            while True:
                gone = self.orphaned()
                if gone:
                    print(f"error: {gone}: this runner stops with it", file=sys.stderr, flush=True)
                    return EXIT_ORPHANED
                token = source.acquire()
                if token is None:
                    time.sleep(poll_seconds)
                    continue
                refused = self.handle(token)
                if refused:
                    print(f"error: {refused}", file=sys.stderr, flush=True)
                    return EXIT_REFUSED
        finally:
            source.close()

    def orphaned(self) -> str | None:
        """Why this runner has no node left to serve, if it has none."""
        if os.getppid() != self.parent:
            return "the process that started it is gone"
        if self.supernode_pid is not None:
            status = process_status(self.supernode_pid)
            if status is None or status.state == "Z":
                return f"its SuperNode (pid {self.supernode_pid}) is gone"
        return None

    def handle(self, token: str) -> str | None:
        """Run one task; the reason if its app was refused."""
        task = flower_runtime.Task(self.address, token)
        incoming = None
        try:
            incoming = task.pull()
            app_hash = fab_content_hash(incoming.fab)
            if app_hash not in self.approved:
                reason = refusal(app_hash, self.approved)
                task.refuse(incoming, reason)
                task.finish(incoming.context, reason)
                return reason
            client_app = self._client_app(app_hash, incoming)
            os.environ[TASK_STARTED_ENV] = repr(task.started)
            reply = client_app(message=incoming.message, context=incoming.context)  # type: ignore[operator]
            task.reply(reply, incoming.context)
            self._fault_after_reply(incoming)
            task.finish(incoming.context)
        except BundleError as error:  # the FAB itself refused (past a read limit, or unsafe to unpack): no data in it
            reason = f"app not approved by this account: {error}"
            if incoming is not None:
                task.refuse(incoming, reason)
                task.finish(incoming.context, reason)
            return reason
        except Exception as error:  # its text may quote the data: it stays in this client's log
            print(f"task failed: {traceback.format_exc()}", file=sys.stderr, flush=True)
            reason = f"the ClientApp failed ({type(error).__name__}); the details stay in the client's own log"
            if incoming is not None:
                task.refuse(incoming, reason)
                task.finish(incoming.context, reason)
        finally:
            task.close()
        return None

    def _fault_after_reply(self, incoming: flower_runtime.TaskInput) -> None:
        """The test hook ``faults.killed_after_reply``: the SuperNode dies with this reply in flight, and so does this
        runner."""
        relay = incoming.message.content.config_records.get("relay") if incoming.message.has_content() else None
        if self.name is None or self.supernode_pid is None or relay is None or "kind" not in relay:
            return
        if faults.killed_after_reply(self.name, str(relay["kind"]), int(relay["round"])):  # type: ignore[arg-type]
            os.kill(self.supernode_pid, signal.SIGKILL)
            os._exit(EXIT_ORPHANED)

    def _client_app(self, app_hash: str, incoming: flower_runtime.TaskInput) -> object:
        """The approved app's ClientApp, loaded from its FAB once and kept warm."""
        if self._loaded is None or self._loaded[0] != app_hash:
            app_dir = unpack_fab(incoming.fab, self.apps)
            _forget_runtime_modules()
            client_app = flower_runtime.load_client_app(incoming.run, app_dir)
            loaded_from = Path(sys.modules["fl_runtime"].__file__ or "").resolve()
            if app_dir.resolve() not in loaded_from.parents:
                raise RuntimeError(f"the app's fl_runtime was imported from {loaded_from}, not from its FAB {app_dir}")
            self._loaded = (app_hash, client_app)
        return self._loaded[1]


def _forget_runtime_modules() -> None:
    """Drop every ``fl_runtime`` module from the import cache, so the FAB's own copy is the one imported
    (this runner's functions keep the modules they were defined with)."""
    for name in [m for m in sys.modules if m == "fl_runtime" or m.startswith("fl_runtime.")]:
        del sys.modules[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fl_runtime.launch.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--runtime-api", required=True, help="HOST:PORT of the SuperNode's Runtime API (loopback)")
    parser.add_argument("--auth-secret-file", type=Path, required=True, help="the SuperNode's SuperExec secret")
    parser.add_argument("--apps", type=Path, required=True, help="where approved FABs are installed")
    parser.add_argument("--approve", action="append", required=True, help="an app content hash this client approves")
    parser.add_argument(
        "--poll-seconds", type=float, default=defaults.TASK_POLL_SECONDS, help="how often to ask for a task"
    )
    parser.add_argument("--supernode-pid", type=int, help="the SuperNode this runner serves: it exits when that does")
    parser.add_argument("--name", help="the member this runner serves (names it in test faults)")
    args = parser.parse_args(argv)
    secret = args.auth_secret_file.read_bytes()
    runner = Runner(args.runtime_api, secret, tuple(args.approve), args.apps, args.supernode_pid, args.name)
    return runner.serve(args.poll_seconds)


if __name__ == "__main__":
    sys.exit(main())
