"""``python -m fl_runtime federate``: a whole federation from the server notebook, in one command.

1. The SuperLink starts on 127.0.0.1 with TLS (a throwaway CA; the certificate names the notebook's
   private address) and SuperNode authentication; the Fleet gateway (``fleet_gateway``) listens on the
   private address and port the client CIDRs may reach and forwards the Fleet API only: run submission
   and node registration are never reachable from a client VPC.
2. For each client account: assume ``FL-kickoff-client-job`` with its external id, read its settings,
   ``CreateTrainingJob`` (``kickoff.training_job_request``). The server listens before any job starts.
3. As each job publishes its SuperNode's public key, register it; the job's SuperNode retries until
   then. Live progress: per-round metrics, and each job's status and elapsed time.
4. Success: the global model, metrics and report go to the server bucket (``model/<run>/``), each job
   saves the final model to SM_MODEL_DIR and exits 0. A client that fails mid-run is dropped while
   ``min-clients`` remain; the report names it. Failure or Ctrl-C: every job started is stopped, the
   SuperLink and gateway stop, the command exits non-zero with the reason.

Where settings, data and jobs come from is a ``Server``: ``AwsServer`` (SSM, S3, SageMaker through the
kickoff roles) on the notebook, or ``RehearsalServer`` (folders and local processes standing in for
buckets and jobs, same requests) for rehearsals and tests.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from fl_runtime.deployment import (
    COMPLETED,
    FINISHED,
    DeploymentError,
    SuperLink,
    Supervisor,
    flower_env,
    free_port,
    interrupts_as_keyboard_interrupt,
    stage_app,
    wait_until_healthy,
)
from fl_runtime.data import read_csv
from fl_runtime.files import publish_folder
from fl_runtime.kickoff import JobPlan, job_name, training_job_request
from fl_runtime.pki import create_tls
from fl_runtime.progress import EventReader, JobRow, ProgressView
from fl_runtime.report import OUTPUT_FILES
from fl_runtime.server_app import EVENTS_FILE, NODE_NAMES_FILE, ServerSettings, check_launch_options, write_node_names
from fl_runtime.errors import FederationError
from fl_runtime.strategy import REPLY_POLL_SECONDS
from fl_runtime.task import TrainConfig

JOB_POLL_SECONDS = 5.0  # DescribeTrainingJob, per client
KEY_POLL_SECONDS = 1.0  # a published public key is registered within a second: the job's SuperNode is retrying
JOB_FINISH_TIMEOUT = 300.0  # after the run: time for the jobs to save the model, upload it and exit
ENDED = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class FederateOptions:
    rounds: int = 10
    train: TrainConfig = TrainConfig()
    share_curvature: bool = True
    min_clients: int | None = None  # default: every client
    seed: int = 0
    address: str | None = None  # the notebook's private address; default: discovered
    connect_timeout: float = 900.0  # a job, from created to joined (SageMaker takes minutes to start one)
    round_timeout: float = 300.0
    run_name: str | None = None
    out: Path | None = None  # a local copy of the outputs (default: runs/federate-<run>)

    def __post_init__(self) -> None:
        check_launch_options(self.rounds, self.min_clients, {"--connect-timeout": self.connect_timeout, "--round-timeout": self.round_timeout})


@dataclass
class ClientHandle:
    """A client of this run: its settings, where its jobs run, and the job once started."""

    name: str
    settings: dict
    jobs: object  # SageMakerJobs or LocalJobs: start, status, stop, public_key_uri, read_public_key
    job: str | None = None
    key_uri: str | None = None
    node_id: int | None = None
    status: str = "not started"
    detail: str = ""
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None


def private_address(settings: dict) -> str:
    """This notebook's address toward the clients: the source address of its route to the first client VPC.

    Connecting a UDP socket picks a route and sends nothing. The address must lie in the server VPC: it
    is what the client jobs dial and what their security groups and peering routes admit.
    """
    client_cidrs = [entry["vpc_cidr"] for entry in settings.get("clients", []) if entry.get("vpc_cidr")]
    toward = str(ipaddress.ip_network(client_cidrs[0])[1]) if client_cidrs else "10.255.255.255"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((toward, 1))
        address = probe.getsockname()[0]
    server_vpc = settings.get("server_vpc_cidr")
    if server_vpc and ipaddress.ip_address(address) not in ipaddress.ip_network(server_vpc):
        raise FederationError(
            f"this machine reaches {toward} from {address}, outside the server VPC {server_vpc}: "
            "run federate on the server notebook, or pass --address with its private address"
        )
    return address


def run_tag(now: dt.datetime | None = None) -> str:
    return (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%d-%H%M%S")


class Federation:
    """The server side of one run: SuperLink, gateway, client jobs, registrations."""

    def __init__(self, server, options: FederateOptions, console: Console, workspace: Path, tag: str) -> None:
        self.server = server
        self.options = options
        self.console = console
        self.workspace = workspace
        self.tag = tag
        self.supervisor = Supervisor(workspace / "logs")
        self.address = options.address  # or discovered when the server starts
        self.port = int(server.settings["flower_port"])
        self.clients: list[ClientHandle] = []
        self.link: SuperLink | None = None

    # -- server side -------------------------------------------------------------------------------
    def start_superlink_and_gateway(self) -> None:
        self.address = self.address or private_address(self.server.settings)
        tls = create_tls(self.workspace / "tls", [self.address])
        self.link = SuperLink(self.supervisor, self.workspace, tls, host="127.0.0.1", port=free_port(), dial_address="127.0.0.1")
        self.link.start()
        self.supervisor.start(
            "fleet-gateway",
            [sys.executable, "-m", "fl_runtime.fleet_gateway", "--listen", f"{self.address}:{self.port}",
             "--upstream", f"127.0.0.1:{self.link.port}", "--certificate", str(tls.server_certificate), "--key", str(tls.server_key),
             "--ca", str(tls.ca_certificate)],
            flower_env(self.workspace / "gateway-home"),
            self.workspace / "gateway",
        )
        wait_until_healthy(self.supervisor, "fleet-gateway", "the Fleet gateway", f"{self.address}:{self.port}", tls.ca_certificate, 60.0)
        self.console.print(
            f"SuperLink on 127.0.0.1:{self.link.port} (TLS, SuperNode authentication); Fleet API only on {self.address}:{self.port}",
            highlight=False,
        )

    # -- clients -----------------------------------------------------------------------------------
    def start_jobs(self) -> None:
        plan = JobPlan(
            self.tag, f"{self.address}:{self.port}", self.link.tls.ca_certificate.read_bytes(), self.options.connect_timeout,
            self.options.connect_timeout + (self.options.rounds + 2) * self.options.round_timeout,
        )
        for handle in self.server.clients(session_name=f"fl-federate-{self.tag}"):
            name = job_name(handle.settings["training_job_prefix"], plan.run_tag, handle.settings["client"])
            handle.key_uri = handle.jobs.public_key_uri(handle.settings, name)
            request = training_job_request(handle.settings, plan, self.server.region, handle.key_uri)
            self.clients.append(handle)
            handle.job = handle.jobs.start(request)  # raises FederationError naming the client and the call
            handle.status, handle.started_at = "InProgress", time.monotonic()
            self.console.print(f"client {handle.name}: training job {handle.job} created", highlight=False)

    def register_new_keys(self) -> None:
        for handle in self.clients:
            if handle.node_id is None and handle.status == "InProgress":
                key = handle.jobs.read_public_key(handle.key_uri)
                if key:
                    path = self.workspace / "keys" / f"{handle.name}.pub"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(key)
                    handle.node_id = self.link.register(path)
                    write_node_names(self.workspace / NODE_NAMES_FILE, {h.node_id: h.name for h in self.clients if h.node_id is not None})
                    self.console.print(f"client {handle.name}: SuperNode key registered (node {handle.node_id})", highlight=False)

    def poll_jobs(self, view: ProgressView | None) -> None:
        for handle in self.clients:
            if handle.job is None or handle.status in ENDED:
                continue
            status, detail = handle.jobs.status(handle.job)
            shown = status + (f" ({detail})" if detail else "")
            if (status, detail) != (handle.status, handle.detail):
                handle.status, handle.detail = status, detail
                now = time.monotonic()
                handle.ended_at = now if status in ENDED else None
                (view.notice if view else self.console.print)(f"client {handle.name}: job {handle.job} {shown} after {now - handle.started_at:.0f} s")
            if view:
                view.job(handle.name, JobRow(handle.job, shown, handle.started_at, handle.ended_at))

    def stop_jobs(self) -> list[str]:
        problems = []
        for handle in self.clients:
            if handle.job is not None and handle.status not in ENDED:
                problem = handle.jobs.stop(handle.job)
                if problem:
                    problems.append(problem)
                else:
                    handle.status = "Stopped"
        return problems

    def wait_for_jobs(self, timeout: float = JOB_FINISH_TIMEOUT) -> None:
        """Let the jobs finish on their own; stop the ones still running after ``timeout`` (no idle billing)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(h.job and h.status not in ENDED for h in self.clients):
            self.poll_jobs(None)
            time.sleep(1.0)
        for handle in self.clients:
            if handle.job and handle.status not in ENDED:
                self.console.print(f"client {handle.name}: job {handle.job} still {handle.status} {timeout:g} s after the run; stopping it", highlight=False)
        for problem in self.stop_jobs():
            self.console.print(f"could not stop a job: {problem}", highlight=False)


def federate(server, options: FederateOptions, console: Console) -> Path:
    """Run one federation; return the local folder of its outputs. Raises on failure."""
    tag = options.run_name or run_tag()
    configured = len(server.settings["clients"])
    if (options.min_clients or 0) > configured:  # before any job is created (and billed)
        raise ValueError(f"--min-clients {options.min_clients} exceeds the {configured} clients configured")
    out = (options.out or Path("runs") / f"federate-{tag}").resolve()
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out}: already exists and is not empty; choose another --out")
    staging = out.parent / f".{out.name}.partial"
    workspace = Path(tempfile.mkdtemp(prefix="fl-federate-"))
    federation = Federation(server, options, console, workspace, tag)
    published = False
    try:
        test_path = server.fetch_test_set(workspace / "test.csv")
        test = read_csv(test_path)
        console.print(f"Server test set: {test.n_rows} providers, {test.n_positive} fraudulent ({test_path})", highlight=False)
        with interrupts_as_keyboard_interrupt():
            federation.start_superlink_and_gateway()
            federation.start_jobs()
            min_clients = options.min_clients or len(federation.clients)
            run_config = _run_config(options, min_clients, len(federation.clients), test_path, staging, workspace / NODE_NAMES_FILE)
            run_id = federation.link.submit(stage_app(workspace / "app"), run_config)
            console.print(f"Run {run_id} submitted; waiting for the clients' jobs to join", highlight=False)
            _follow_run(federation, run_id, staging, min_clients)
            federation.wait_for_jobs()
        # the local copy first: if the upload fails, the results are still there
        publish_folder(staging, out)
        shutil.copytree(workspace / "logs", out / "logs")
        published = True
        try:
            location = server.publish(out, federation.tag)
        except FederationError as error:
            raise FederationError(f"{error}; the outputs are kept locally in {out}") from None
        final = json.loads((out / "metrics.json").read_text())["final"]
        console.print(
            f"Done: final model ROC-AUC {final['roc-auc']:.4f}, PR-AUC {final['pr-auc']:.4f}, F1 {final['f1']:.3f}. "
            f"Outputs in {location} and {out}",
            highlight=False,
        )
        for handle in federation.clients:
            console.print(f"client {handle.name}: job {handle.job} {handle.status}", highlight=False)
        return out
    except BaseException:
        problems = federation.stop_jobs()
        for problem in problems:
            console.print(f"could not stop a job: {problem}", highlight=False)
        raise
    finally:
        federation.supervisor.stop_all()
        if not published:
            shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(workspace, ignore_errors=True)


def _run_config(options: FederateOptions, min_clients: int, expected_clients: int, test_path: Path, staging: Path, node_names: Path) -> dict:
    return ServerSettings(
        rounds=options.rounds, train=options.train, share_curvature=options.share_curvature, min_clients=min_clients,
        expected_clients=expected_clients, node_wait_timeout=options.connect_timeout, round_timeout=options.round_timeout,
        seed=options.seed, test_data=test_path, out_dir=staging,
        data_description="client data staged in each client account (never left it)", reply_poll_seconds=REPLY_POLL_SECONDS,
        node_names=node_names,
    ).to_run_config()


def _follow_run(federation: Federation, run_id: str, staging: Path, min_clients: int) -> None:
    options = federation.options
    deadline = time.monotonic() + options.connect_timeout + (options.rounds + 2) * options.round_timeout
    events = EventReader(staging / EVENTS_FILE)
    next_jobs, next_keys, next_status = 0.0, 0.0, 0.0
    with ProgressView(federation.console, f"Federated training, {len(federation.clients)} client accounts") as view:
        while True:
            for event in events.new():
                view.add(event)
            if "superlink" in federation.supervisor.exited() or "fleet-gateway" in federation.supervisor.exited():
                raise DeploymentError("the SuperLink or the Fleet gateway stopped unexpectedly")
            now = time.monotonic()
            if now >= next_keys:
                federation.register_new_keys()
                next_keys = now + KEY_POLL_SECONDS
            if now >= next_jobs:
                federation.poll_jobs(view)
                alive = [h for h in federation.clients if h.status not in ("Failed", "Stopped")]
                if len(alive) < min_clients:
                    failed = [f"{h.name} ({h.detail or h.status})" for h in federation.clients if h.status in ("Failed", "Stopped")]
                    raise FederationError(f"only {len(alive)} client jobs left, fewer than --min-clients {min_clients}; failed: {', '.join(failed)}")
                next_jobs = now + JOB_POLL_SECONDS
            if now >= next_status:
                status = federation.link.status(run_id)
                if status.startswith(FINISHED):
                    for event in events.new():
                        view.add(event)
                    break
                next_status = now + 2.0
            if now > deadline:
                federation.link.stop_run(run_id)
                raise FederationError("the run did not finish in time (connect-timeout + rounds x round-timeout)")
            time.sleep(0.25)
    failed = events.last("failed")
    if status != COMPLETED or failed or not events.last("done"):
        raise FederationError(f"the federation failed: {failed['message'] if failed else f'run ended with status {status}'}")
    missing = [name for name in OUTPUT_FILES if not (staging / name).is_file()]
    if missing:
        raise FederationError(f"the run completed but wrote no {', '.join(missing)}")
