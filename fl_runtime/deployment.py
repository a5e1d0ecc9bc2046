"""Flower's deployment engine driven from Python: SuperLink, SuperNodes and the ``flwr`` CLI.

Shared by the local launcher (everything on 127.0.0.1) and the server-account orchestrator (SuperLink
on the notebook, SuperNodes in SageMaker training jobs). Every process is started in its own session
and tracked by a ``Supervisor``, which stops whole process groups (a SuperNode's ClientApps) and
every other descendant (the SuperLink's SuperExec and ServerApp, which Flower starts in sessions of
their own) on exit, on Ctrl-C and on failure: SuperNodes never exit by themselves.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from fl_runtime.pki import NodeKey, TlsFiles

# The SuperExec inside SuperLink and SuperNode polls for work once a second by default; this
# supported setting makes a new message start its ClientApp without that wait.
FAST_TASK_POLL = {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.05"}
QUIET = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1"}
# One BLAS thread per process: three clients on two cores must not oversubscribe them.
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
PROC = Path("/proc")  # Linux's process table; macOS has none
CONNECTION = "federation"
FINISHED = "finished"
COMPLETED = "finished:completed"


class DeploymentError(RuntimeError):
    """A Flower process or CLI call failed; the message says which and why."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def script_dirs() -> list[str]:
    """Where this interpreter's console scripts live: beside it in a virtualenv, or the install
    scheme's scripts folder (e.g. /usr/local/bin for a system Python, as in SageMaker images)."""
    return list(dict.fromkeys([str(Path(sys.executable).parent), sysconfig.get_path("scripts")]))


def tool(name: str) -> str:
    """A Flower executable of this interpreter (Flower's processes also start each other by name)."""
    found = shutil.which(name, path=os.pathsep.join([*script_dirs(), os.environ.get("PATH", "")]))
    if found is None:
        raise DeploymentError(f"{name} not found next to {sys.executable}: is flwr installed in this environment?")
    return found


def flower_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLWR_")}
    env.update(QUIET)
    env["FLWR_HOME"] = str(home)
    env["PATH"] = os.pathsep.join([*script_dirs(), env.get("PATH", "")])
    # helper processes (`python -m fl_runtime...`) import this copy of fl_runtime, wherever it lives
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


class ProcessStatus(NamedTuple):
    state: str  # "R", "S", ... or "Z": dead, waiting to be reaped
    parent: int
    started: str  # when it started (opaque): a pid reused by a new process has another value


def _linux_status(pid: int) -> ProcessStatus | None:
    try:
        # pid (comm) state ppid ... starttime (22nd): comm may hold spaces, so split after its ")"
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return ProcessStatus(fields[0], int(fields[1]), fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _ps_table(*selection: str) -> dict[int, ProcessStatus]:
    """``ps`` (macOS and other systems without /proc): one call for all the processes selected."""
    out = subprocess.run(["ps", *selection, "-o", "pid=,stat=,ppid=,lstart="], capture_output=True, text=True, check=False).stdout
    table = {}
    for line in out.splitlines():
        pid, state, parent, started = line.split(maxsplit=3)
        table[int(pid)] = ProcessStatus(state[0], int(parent), started.strip())
    return table


def process_status(pid: int) -> ProcessStatus | None:
    """A process's state, parent and start time; None when there is no such process. Linux reads
    /proc; elsewhere (macOS) ``ps`` gives the same."""
    if (PROC / "self").exists():
        return _linux_status(pid)
    return _ps_table("-p", str(pid)).get(pid)


def process_table() -> dict[int, ProcessStatus]:
    """Every process's status, read once."""
    if (PROC / "self").exists():
        statuses = {int(entry.name): _linux_status(int(entry.name)) for entry in PROC.iterdir() if entry.name.isdigit()}
        return {pid: status for pid, status in statuses.items() if status is not None}
    return _ps_table("-A")


def descendants(pid: int) -> dict[int, str]:
    """Every process below ``pid`` (pid -> start time), through parent links: Flower's SuperLink
    starts its SuperExec in a session of its own, so killing the SuperLink's process group misses
    the SuperExec and its ServerApp."""
    children: dict[int, list[tuple[int, str]]] = {}
    for other, status in process_table().items():
        children.setdefault(status.parent, []).append((other, status.started))
    found, frontier = {}, [pid]
    while frontier:
        for child, started in children.get(frontier.pop(), []):
            found[child] = started
            frontier.append(child)
    return found


def _running(pid: int, started: str) -> bool:
    """Still the same process (not a new one with a reused pid), and not a zombie."""
    status = process_status(pid)
    return status is not None and status.started == started and status.state != "Z"


def _stop_strays(family: dict[int, str], grace: float) -> None:
    """SIGTERM, up to ``grace`` seconds to exit, then SIGKILL: for processes outside our groups."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        family = {pid: started for pid, started in family.items() if _running(pid, started)}
        for pid in family:
            try:
                os.kill(pid, sig)
            except OSError:  # gone meanwhile, or not ours to signal
                pass
        deadline = time.monotonic() + wait
        while any(_running(pid, started) for pid, started in family.items()) and time.monotonic() < deadline:
            time.sleep(0.05)


class Supervisor:
    """Starts processes in their own process groups and stops every group it started."""

    def __init__(self, log_dir: Path, grace: float = 5.0) -> None:
        """``grace``: seconds a process gets between SIGTERM and SIGKILL to clean up after itself."""
        self.log_dir = log_dir
        self.grace = grace
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        if name in self.processes and self.processes[name].poll() is None:
            raise DeploymentError(f"a process named {name} is already running: it would no longer be tracked")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd, start_new_session=True
        )
        log.close()
        self.processes[name] = process
        return process

    def exited(self) -> dict[str, int]:
        """Processes that have stopped, with their exit codes."""
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, name: str) -> None:
        process = self.processes.get(name)
        if process is None:
            return
        # found while the leader runs (a reaped leader's pid may be someone else's), before its
        # detached children go to init
        family = descendants(process.pid) if process.poll() is None else {}
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=self.grace)
                break
            except subprocess.TimeoutExpired:
                continue
        # the group may outlive its leader (a ClientApp mid-round): make sure nothing is left
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        _stop_strays(family, self.grace)  # the SuperLink's SuperExec and ServerApp run in sessions of their own

    def stop_all(self) -> None:
        for name in reversed(list(self.processes)):
            self.stop(name)


@contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. from a job scheduler) takes the same clean-up path as Ctrl-C."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class SuperLink:
    """A SuperLink with TLS and SuperNode authentication, and the CLI connection that reaches it."""

    supervisor: Supervisor
    workspace: Path
    tls: TlsFiles
    host: str
    port: int
    dial_address: str

    @property
    def address(self) -> str:
        return f"{self.dial_address}:{self.port}"

    @property
    def cli_home(self) -> Path:
        return self.workspace / "flwr-cli"

    def start(self, timeout: float = 60.0, fast_task_poll: bool = True) -> None:
        self.supervisor.start(
            "superlink",
            [
                tool("flower-superlink"),
                "--host", self.host,
                "--port", str(self.port),
                "--ssl-ca-certfile", str(self.tls.ca_certificate),
                "--ssl-certfile", str(self.tls.server_certificate),
                "--ssl-keyfile", str(self.tls.server_key),
                "--enable-supernode-auth",
                "--disable-runtime-dependency-installation",
            ],
            flower_env(self.workspace / "superlink-home", FAST_TASK_POLL if fast_task_poll else {}),
            self.workspace / "superlink",
        )
        self.cli_home.mkdir(parents=True, exist_ok=True)
        (self.cli_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\naddress = "{self.address}"\n'
            f'root-certificates = "{self.tls.ca_certificate}"\n'
        )
        wait_until_healthy(self.supervisor, "superlink", "the SuperLink", self.address, self.tls.ca_certificate, timeout)

    def cli(self, *args: str, timeout: float = 120.0) -> dict:
        """Run ``flwr ARGS... --format json`` against this SuperLink; raise unless it succeeded."""
        command = [tool("flwr"), *args, "--format", "json"]
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=flower_env(self.cli_home), timeout=timeout, cwd=self.workspace)
        except subprocess.TimeoutExpired:
            raise DeploymentError(f"`flwr {' '.join(args)}` did not finish within {timeout:g} s") from None
        try:
            answer = json.loads(done.stdout)
        except json.JSONDecodeError:
            answer = {"success": False, "error-message": (done.stdout + done.stderr).strip()[-2000:]}
        # with --format json the CLI exits 0 even on errors: the answer says whether it worked
        if done.returncode != 0 or not answer.get("success"):
            raise DeploymentError(f"`flwr {' '.join(args)}` failed: {answer.get('error-message') or done.stderr.strip()}")
        return answer

    def register(self, public_key: Path) -> int:
        """Admit the SuperNode holding the private half of ``public_key`` (OpenSSH format)."""
        return int(self.cli("supernode", "register", str(public_key), CONNECTION)["node-id"])

    def submit(self, app_dir: Path, run_config: dict) -> str:
        overrides = " ".join(f"{key}={json.dumps(value)}" for key, value in run_config.items())
        return str(self.cli("run", str(app_dir), CONNECTION, "--run-config", overrides)["run-id"])

    def status(self, run_id: str) -> str:
        return str(self.cli("ls", CONNECTION, "--run-id", run_id)["runs"][0]["status"])

    def stop_run(self, run_id: str) -> None:
        try:
            self.cli("stop", run_id, CONNECTION, timeout=20)
        except DeploymentError:
            pass  # already finished, or the SuperLink is gone: nothing left to stop

    def logs(self, run_id: str) -> str:
        done = subprocess.run(
            [tool("flwr"), "log", run_id, CONNECTION, "--show"],
            capture_output=True, text=True, env=flower_env(self.cli_home), timeout=60, cwd=self.workspace,
        )
        return done.stdout


def supernode_command(superlink_address: str, ca_certificate: Path, key: NodeKey, node_config: dict[str, str], runtime_port: int, max_wait_time: float) -> list[str]:
    """The ``flower-supernode`` command line for one client."""
    config = " ".join(f"{name}={json.dumps(value)}" for name, value in node_config.items())
    return [
        tool("flower-supernode"),
        "--superlink", superlink_address,
        "--root-certificates", str(ca_certificate),
        "--auth-supernode-private-key", str(key.private_key),
        "--node-config", config,
        "--port", str(runtime_port),  # each SuperNode on a machine needs its own Runtime API port
        "--max-wait-time", f"{max_wait_time:g}",
    ]


def wait_until_healthy(supervisor: Supervisor, process: str, what: str, address: str, ca: Path, timeout: float) -> None:
    """Until ``https://ADDRESS/health`` answers 200 over TLS; raise if ``process`` exits or time runs out."""
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process in supervisor.exited():
            raise DeploymentError(f"{what} exited at start-up:\n{supervisor.log_tail(process)}")
        try:
            with urllib.request.urlopen(f"https://{address}/health", context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise DeploymentError(f"{what} did not answer on {address} within {timeout:g} s")


def stage_app(destination: Path) -> Path:
    """The Flower app folder that ``flwr run`` packages into a FAB: pyproject.toml and fl_runtime/*.py.

    Staged rather than pointing ``flwr run`` at the project root, which would walk .venv and
    node_modules; the FAB carries exactly the runtime the clients will execute.
    """
    package = Path(__file__).resolve().parent
    shutil.rmtree(destination, ignore_errors=True)
    (destination / "fl_runtime").mkdir(parents=True)
    shutil.copy2(package.parent / "pyproject.toml", destination / "pyproject.toml")
    for source in sorted(package.glob("*.py")):
        shutil.copy2(source, destination / "fl_runtime" / source.name)
    return destination
