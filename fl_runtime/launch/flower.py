"""Flower's deployment engine driven from Python: SuperLink, SuperNodes and the ``flwr`` CLI.

Shared by the local launcher (everything on 127.0.0.1), the server-account orchestrator (SuperLink on
the notebook) and the client's training job (its SuperNode). The processes are started and stopped by
a ``processes.Supervisor``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from fl_runtime import defaults
from fl_runtime.errors import ProcessError
from fl_runtime.launch.pki import NodeKey, TlsFiles, create_tls
from fl_runtime.launch.processes import Supervisor

IDLE_POLL_ENV = "FL_IDLE_POLL_SECONDS"


def idle_poll(default: float) -> float:
    """How often an idle process of a run asks for work or replies: ``default``, or the launcher's environment's
    ``FL_IDLE_POLL_SECONDS`` (the test suite sets 0.25 s, sparing the CPU that dozens of idle Flower processes spend
    on 50 ms polls). It is the launcher's setting, never the app's: the FAB and its hash do not change with it."""
    value = os.environ.get(IDLE_POLL_ENV, "")
    try:
        seconds = float(value) if value else default
    except ValueError:
        raise ProcessError(f"environment variable {IDLE_POLL_ENV}: {value!r} is not a number of seconds") from None
    if not 0 < seconds <= 5:
        raise ProcessError(f"environment variable {IDLE_POLL_ENV}: {value!r} is not from 0 to 5 seconds")
    return seconds


def task_poll_environment() -> dict[str, str]:
    """The SuperExec inside SuperLink and SuperNode polls for work once a second by default; this supported
    setting makes a new message start its ClientApp without that wait."""
    return {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": f"{idle_poll(defaults.TASK_POLL_SECONDS):g}"}


QUIET = {"FLWR_TELEMETRY_ENABLED": "0", "FLWR_DISABLE_UPDATE_CHECK": "1", "PYTHONUNBUFFERED": "1"}
# One BLAS thread per process: three clients on two cores must not oversubscribe them.
ONE_THREAD = dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1")
# the folder that holds this copy of fl_runtime
RUNTIME_ROOT = Path(__file__).resolve().parents[2]
CONNECTION = "federation"
FINISHED = "finished"
COMPLETED = "finished:completed"


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
        raise ProcessError(f"{name} not found next to {sys.executable}: is flwr installed in this environment?")
    return found


def flower_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLWR_")}
    env.update(QUIET)
    env["FLWR_HOME"] = str(home)
    env["PATH"] = os.pathsep.join([*script_dirs(), env.get("PATH", "")])
    # helper processes (`python -m fl_runtime...`) import this copy of fl_runtime, wherever it lives
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(RUNTIME_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


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
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--ssl-ca-certfile",
                str(self.tls.ca_certificate),
                "--ssl-certfile",
                str(self.tls.server_certificate),
                "--ssl-keyfile",
                str(self.tls.server_key),
                "--enable-supernode-auth",
                "--disable-runtime-dependency-installation",
            ],
            flower_env(self.workspace / "superlink-home", task_poll_environment() if fast_task_poll else {}),
            self.workspace / "superlink",
        )
        self.cli_home.mkdir(parents=True, exist_ok=True)
        (self.cli_home / "config.toml").write_text(
            f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\naddress = "{self.address}"\n'
            f'root-certificates = "{self.tls.ca_certificate}"\n'
        )
        wait_until_healthy(
            self.supervisor,
            "superlink",
            what="the SuperLink",
            address=self.address,
            ca=self.tls.ca_certificate,
            timeout=timeout,
        )

    def cli(self, *args: str, timeout: float = 120.0) -> dict:
        """Run ``flwr ARGS... --format json`` against this SuperLink; raise unless it succeeded."""
        command = [tool("flwr"), *args, "--format", "json"]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                env=flower_env(self.cli_home),
                timeout=timeout,
                cwd=self.workspace,
            )
        except subprocess.TimeoutExpired:
            raise ProcessError(f"`flwr {' '.join(args)}` did not finish within {timeout:g} s") from None
        try:
            answer = json.loads(done.stdout)
        except json.JSONDecodeError:
            answer = {"success": False, "error-message": (done.stdout + done.stderr).strip()[-2000:]}
        # with --format json the CLI exits 0 even on errors: the answer says whether it worked
        if done.returncode != 0 or not answer.get("success"):
            raise ProcessError(f"`flwr {' '.join(args)}` failed: {answer.get('error-message') or done.stderr.strip()}")
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
        with contextlib.suppress(ProcessError):  # already finished, or the SuperLink is gone: nothing left to stop
            self.cli("stop", run_id, CONNECTION, timeout=20)

    def logs(self, run_id: str) -> str:
        done = subprocess.run(
            [tool("flwr"), "log", run_id, CONNECTION, "--show"],
            capture_output=True,
            text=True,
            env=flower_env(self.cli_home),
            timeout=60,
            cwd=self.workspace,
        )
        return done.stdout


def start_superlink(
    supervisor: Supervisor, workspace: Path, addresses: list[str], fast_task_poll: bool = True
) -> SuperLink:
    """A SuperLink on 127.0.0.1 with a throwaway CA whose server certificate also names ``addresses``
    (what clients dial: 127.0.0.1 on one machine, the notebook's private address across accounts)."""
    tls = create_tls(workspace / "tls", addresses)
    link = SuperLink(supervisor, workspace, tls, host="127.0.0.1", port=free_port(), dial_address="127.0.0.1")
    link.start(fast_task_poll=fast_task_poll)
    return link


@dataclass(frozen=True)
class SuperNodeSpec:
    """One client's SuperNode: where it dials, whom it trusts, who it is, what it runs on."""

    superlink_address: str
    ca_certificate: Path
    key: NodeKey
    node_config: dict[str, str]
    max_wait_time: float  # seconds to keep trying to reach the SuperLink

    def command(self, runtime_port: int, superexec_secret: Path) -> list[str]:
        """The ``flower-supernode`` command line, in process isolation: it runs no ClientApp itself but hands
        each task to the executor that presents ``superexec_secret`` on its Runtime API, on 127.0.0.1 and
        ``runtime_port`` (each SuperNode on a machine needs a port of its own)."""
        config = " ".join(f"{name}={json.dumps(value)}" for name, value in self.node_config.items())
        return [
            tool("flower-supernode"),
            "--superlink", self.superlink_address,
            "--root-certificates", str(self.ca_certificate),
            "--auth-supernode-private-key", str(self.key.private_key),
            "--node-config", config,
            "--isolation", "process",
            "--port", str(runtime_port),
            "--superexec-auth-secret-file", str(superexec_secret),
            "--max-wait-time", f"{self.max_wait_time:g}",
        ]  # fmt: skip


def wait_until_healthy(
    supervisor: Supervisor, process: str, *, what: str, address: str, ca: Path, timeout: float
) -> None:
    """Until ``https://ADDRESS/health`` answers 200 over TLS; raise if ``process`` exits or time runs out."""
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process in supervisor.exited():
            raise ProcessError(f"{what} exited at start-up:\n{supervisor.log_tail(process)}")
        try:
            with urllib.request.urlopen(f"https://{address}/health", context=context, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise ProcessError(f"{what} did not answer on {address} within {timeout:g} s")
