"""``python -m fl_runtime federate``: a whole federation from the server notebook, in one command.

1. The SuperLink starts on 127.0.0.1 with TLS (a throwaway CA; the certificate names the notebook's
   private address, and through PrivateLink the members' private name) and SuperNode authentication; the Fleet
   gateway (``fleet_gateway``) listens on the private address and port the client CIDRs (or the Fleet load
   balancer, ``fleet_service``) may reach and forwards the Fleet API only: run submission and node registration
   are never reachable from a client VPC.
2. For each client account: assume ``FL-kickoff-client-job`` with its external id, read its settings,
   and ask its launcher to start the run's job, sending only the run name, this address and the run's
   CA certificate (``launcher``): the client account builds the job itself. The server listens before
   any job starts.
3. As each job publishes its SuperNode's public key, register it; the job's SuperNode retries until
   then. Live progress: per-round metrics, and each job's status and elapsed time.
4. Success: each job saves the final model to SM_MODEL_DIR and exits 0. The global model, metrics and report,
   with the model as SageMaker serves it (``model.tar.gz``) and the request that registers it
   (``model-package.json``, see ``model_package``), go to the local run folder, then to the server bucket
   (``model/<run>/``); then the run becomes the next version of the model package group, pending manual
   approval. A client that fails mid-run is dropped while ``min-clients`` remain; the report names it.
   Failure or Ctrl-C: every job started is stopped, the SuperLink and gateway stop, the command exits
   non-zero with the reason. A registration that fails loses nothing: the model is published, the command
   says so, names the group and how to register the same request later, and exits non-zero.

Where settings, data and jobs come from is a ``ServerAccount``: ``AwsServer`` (SSM, S3, the clients'
launchers through the kickoff roles) on the notebook, or ``RehearsalServer`` (folders and local processes
standing in for buckets and jobs, the launcher code in process) for rehearsals and tests.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Protocol

from rich.console import Console

from fl_runtime import defaults
from fl_runtime.app.run_settings import (
    DATA_DESCRIPTION_OF_ACCOUNTS,
    METRICS_FILE,
    MODEL_FILE,
    NODE_NAMES_FILE,
    write_node_names,
)
from fl_runtime.aws import fleet_gateway
from fl_runtime.aws.contract import RUN_NAME, RUN_NAME_MAX, ClientAccountSettings, ServerAccountSettings
from fl_runtime.aws.fleet_service import job_address, private_address, superlink_names
from fl_runtime.aws.kickoff import ClientLauncher
from fl_runtime.aws.model_package import (
    MODEL_ARCHIVE,
    REQUEST_FILE,
    Registered,
    model_archive,
    registration_request,
    run_prefix,
)
from fl_runtime.errors import FederationError, OptionsError
from fl_runtime.files import write_text_atomic
from fl_runtime.launch.fab import stage_app
from fl_runtime.launch.family_choice import FamilyChoice, run_each_family
from fl_runtime.launch.flower import SuperLink, start_superlink
from fl_runtime.launch.follow import RunWatch, follow_run
from fl_runtime.launch.options import RunOptions, timestamp
from fl_runtime.launch.processes import interrupts_as_keyboard_interrupt
from fl_runtime.launch.progress import JobRow, ProgressView
from fl_runtime.launch.run_folders import RunFolders, run_folders
from fl_runtime.learning.data import read_csv
from fl_runtime.learning.families import FAMILIES, family

JOB_POLL_SECONDS = 5.0  # a describe request per client
KEY_POLL_SECONDS = 1.0  # a published public key is registered within a second: the job's SuperNode is retrying
# Once too few jobs are left, how long the other jobs get to end before the run stops: what failed one job
# (an app its account did not approve, say) often fails the others a moment later, and the report names each.
FAILURE_GRACE_SECONDS = 15.0
JOB_FINISH_TIMEOUT = 300.0  # after the run: time for the jobs to save the model, upload it and exit
ENDED = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class FederateOptions(RunOptions):
    address: str | None = None  # the notebook's private address; default: discovered
    connect_timeout: float = defaults.CONNECT_TIMEOUT  # a job, from created to joined (SageMaker takes minutes)
    run_name: str | None = None  # default: a UTC timestamp
    # the app to submit: by default the one this runtime ships; another folder rehearses a server that sends
    # other code (each client runs only the apps its account approved)
    app_dir: Path | None = None

    WAIT_FLAG: ClassVar[str] = "--connect-timeout"

    @property
    def wait_timeout(self) -> float:
        return self.connect_timeout


@dataclass
class ClientHandle:
    """A client of this run: its settings, its launcher, and its job once started."""

    name: str
    settings: ClientAccountSettings
    launcher: ClientLauncher
    job: str | None = None
    key_uri: str | None = None
    node_id: int | None = None
    status: str = "not started"
    detail: str = ""
    started_at: float = field(default_factory=time.monotonic)
    ended_at: float | None = None


class ServerAccount(Protocol):
    """Where ``federate`` gets its settings, test set and clients, and puts its outputs (``server_account``)."""

    settings: ServerAccountSettings
    region: str

    def fetch_test_set(self, destination: Path) -> Path: ...
    def publish(self, folder: Path, run: str) -> str: ...
    def register(self, request: dict) -> Registered: ...
    def clients(self, session_name: str) -> list[ClientHandle]: ...
    def open_fleet(self, address: str, endpoints: dict[str, str]) -> list[str]: ...


def run_tag(now: dt.datetime | None = None) -> str:
    return timestamp(now or dt.datetime.now(dt.UTC))


class Federation:
    """The server side of one run: SuperLink, gateway, the clients' jobs, their registrations."""

    def __init__(
        self, server: ServerAccount, options: FederateOptions, console: Console, folders: RunFolders, tag: str
    ):
        self.server = server
        self.options = options
        self.console = console
        self.folders = folders
        self.workspace = folders.workspace
        self.supervisor = folders.supervisor
        self.tag = tag
        self.address = options.address  # or discovered when the server starts
        self.port = server.settings.flower_port
        self._next_keys = self._next_jobs = 0.0
        self._too_few_since: float | None = None
        self.clients: list[ClientHandle] = []
        self.link: SuperLink | None = None

    # -- server side -------------------------------------------------------------------------------
    def start_superlink_and_gateway(self) -> None:
        settings = self.server.settings
        self.address = self.address or private_address(settings)
        self.link = start_superlink(self.supervisor, self.workspace, superlink_names(settings, self.address))
        fleet_gateway.start(self.supervisor, self.link, f"{self.address}:{self.port}", self.workspace)
        self.console.print(
            f"SuperLink on 127.0.0.1:{self.link.port} (TLS, SuperNode authentication); Fleet API only on "
            f"{self.address}:{self.port}",
            highlight=False,
        )

    @property
    def superlink(self) -> SuperLink:
        if self.link is None:
            raise RuntimeError("the SuperLink has not been started")
        return self.link

    # -- clients -----------------------------------------------------------------------------------
    def start_jobs(self) -> None:
        """Ask each client's launcher for the run's job: the run name, this address (none through PrivateLink) and
        the run's CA, nothing more."""
        ca_certificate = self.superlink.tls.ca_certificate.read_bytes()
        address = job_address(self.server.settings, str(self.address), self.port)
        handles = self.server.clients(session_name=f"fl-federate-{self.tag}")
        # through PrivateLink: the notebook as the load balancer's target, each member's published endpoint accepted
        for done in self.server.open_fleet(str(self.address), {h.name: h.settings.fleet_endpoint_id for h in handles}):
            self.console.print(done, highlight=False)
        for handle in handles:
            self.clients.append(handle)
            started = handle.launcher.start(self.tag, address, ca_certificate)
            handle.job, handle.key_uri = started.job, started.public_key_uri
            handle.status, handle.started_at = "InProgress", time.monotonic()
            self.console.print(f"client {handle.name}: training job {handle.job} created", highlight=False)

    def register_new_keys(self) -> None:
        for handle in self.clients:
            if handle.node_id is None and handle.status == "InProgress" and handle.key_uri is not None:
                key = handle.launcher.read_public_key(handle.key_uri)
                if key:
                    path = self.workspace / "keys" / f"{handle.name}.pub"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(key)
                    handle.node_id = self.superlink.register(path)
                    write_node_names(
                        self.workspace / NODE_NAMES_FILE,
                        {h.node_id: h.name for h in self.clients if h.node_id is not None},
                    )
                    self.console.print(
                        f"client {handle.name}: SuperNode key registered (node {handle.node_id})", highlight=False
                    )

    def poll_jobs(self, view: ProgressView | None) -> None:
        for handle in self.clients:
            if handle.job is None or handle.status in ENDED:
                continue
            status, detail = handle.launcher.status(self.tag)
            shown = status + (f" ({detail})" if detail else "")
            if (status, detail) != (handle.status, handle.detail):
                handle.status, handle.detail = status, detail
                now = time.monotonic()
                handle.ended_at = now if status in ENDED else None
                (view.notice if view else self.console.print)(
                    f"client {handle.name}: job {handle.job} {shown} after {now - handle.started_at:.0f} s"
                )
            if view:
                view.job(handle.name, JobRow(handle.job, shown, handle.started_at, handle.ended_at))

    def tick(self, view: ProgressView, min_clients: int) -> None:
        """The launcher's turn in the run-following loop: register new keys, watch the jobs."""
        now = time.monotonic()
        if now >= self._next_keys:
            self.register_new_keys()
            self._next_keys = now + KEY_POLL_SECONDS
        if now >= self._next_jobs:
            self.poll_jobs(view)
            alive = [h for h in self.clients if h.status not in ("Failed", "Stopped")]
            self._next_jobs = now + JOB_POLL_SECONDS
            if len(alive) < min_clients:
                self._too_few_since = self._too_few_since or now
                if now - self._too_few_since < FAILURE_GRACE_SECONDS and any(h.status not in ENDED for h in alive):
                    self._next_jobs = now + KEY_POLL_SECONDS  # watch the others closely for a moment
                    return
                failed = [
                    f"{h.name} ({h.detail or h.status})" for h in self.clients if h.status in ("Failed", "Stopped")
                ]
                raise FederationError(
                    f"only {len(alive)} client jobs left, fewer than --min-clients {min_clients}; failed: "
                    f"{', '.join(failed)}"
                )

    def stop_jobs(self) -> list[str]:
        problems = []
        for handle in self.clients:
            if handle.job is not None and handle.status not in ENDED:
                problem = handle.launcher.stop(self.tag)
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
                self.console.print(
                    f"client {handle.name}: job {handle.job} still {handle.status} {timeout:g} s after the run; "
                    "stopping it",
                    highlight=False,
                )
        for problem in self.stop_jobs():
            self.console.print(f"could not stop a job: {problem}", highlight=False)


def federate(server: ServerAccount, options: FederateOptions, console: Console, register: bool = True) -> Path:
    """Run one federation; return the local folder of its outputs. Raises on failure. ``register``: False leaves
    the published run out of the model registry (``--model auto`` registers only the family it chose)."""
    tag = options.run_name or run_tag()
    min_clients = options.min_clients_among(len(server.settings.clients), "configured")  # before any job (and bill)
    with run_folders(options.out or Path("runs") / f"federate-{tag}", "fl-federate-", console) as folders:
        federation = Federation(server, options, console, folders, tag)
        try:
            test_path = server.fetch_test_set(folders.workspace / "test.csv")
            test = read_csv(test_path)
            console.print(
                f"Server test set: {test.n_rows} providers, {test.n_positive} fraudulent ({test_path})",
                highlight=False,
            )
            with interrupts_as_keyboard_interrupt():
                _run(federation, test_path, min_clients)
        except BaseException:
            for problem in federation.stop_jobs():
                console.print(f"could not stop a job: {problem}", highlight=False)
            raise
        out = folders.publish()  # the local copy first: if the upload fails, the results are still there
        try:
            publish_run(server, tag, out, console)
            if register:
                register_run(server, tag, out, console)
        finally:
            for handle in federation.clients:
                console.print(f"client {handle.name}: job {handle.job} {handle.status}", highlight=False)
        return out


def federate_each_family(server: ServerAccount, options: FederateOptions, console: Console) -> FamilyChoice:
    """``--model auto``: a whole federation of each family (runs ``<tag>-<short name>``, e.g. ``-lr`` and
    ``-gbdt``, each published), then the family chosen on the members' pooled validation totals
    (``family_choice``); only its run is registered. Every run name is checked before any job starts."""
    tag = options.run_name or run_tag()
    options.min_clients_among(len(server.settings.clients), "configured")  # before any job (and bill)
    names = {name: f"{tag}-{family(name).short_name}" for name in FAMILIES}
    too_long = [run for run in names.values() if not RUN_NAME.fullmatch(run)]
    if too_long:
        room = RUN_NAME_MAX - 1 - max(len(family(name).short_name) for name in FAMILIES)
        raise OptionsError(
            f"--run-name {tag!r}: --model auto names its runs {', '.join(names.values())}, and a run name holds at "
            f"most {RUN_NAME_MAX} characters; give a run name of at most {room}"
        )

    def run(name: str, folder: Path) -> Path:
        console.print(f"Model family {name}: run {names[name]}", highlight=False)
        return federate(server, dataclasses.replace(options.for_family(name, folder), run_name=names[name]),
                        console, register=False)  # fmt: skip

    choice = run_each_family(options.out or Path("runs") / f"federate-{tag}", run)
    register_run(server, names[choice.chosen], choice.out / choice.chosen, console)
    return choice


def _run(federation: Federation, test_path: Path, min_clients: int) -> None:
    """Server up, jobs started, run submitted and followed to its end, jobs finished."""
    options, workspace = federation.options, federation.workspace
    federation.start_superlink_and_gateway()
    federation.start_jobs()
    settings = options.run_settings(
        members=[handle.name for handle in federation.clients],
        min_clients=min_clients,
        test_data=test_path,
        out_dir=federation.folders.staging,
        description=DATA_DESCRIPTION_OF_ACCOUNTS,
        node_names=workspace / NODE_NAMES_FILE,
    )
    link = federation.superlink
    run_id = link.submit(options.app_dir or stage_app(workspace / "app"), settings.to_run_config())
    federation.console.print(f"Run {run_id} submitted; waiting for the clients' jobs to join", highlight=False)
    watch = RunWatch(
        link,
        federation.folders,
        run_id,
        options,
        vital={"superlink": "the SuperLink", fleet_gateway.PROCESS: "the Fleet gateway"},
        on_tick=lambda view: federation.tick(view, min_clients),
    )
    follow_run(watch, federation.console, f"Federated training, {len(federation.clients)} client accounts")
    federation.wait_for_jobs()


def publish_run(server: ServerAccount, run: str, out: Path, console: Console) -> None:
    """The completed run's outputs in ``out``: add the SageMaker model and its registration request, then publish
    everything to the server account. Each step keeps what the earlier ones made."""
    model_archive(out / MODEL_FILE, out / MODEL_ARCHIVE)
    request = registration_request(server.settings, run, out)
    write_text_atomic(out / REQUEST_FILE, json.dumps(request, indent=2))
    try:
        location = server.publish(out, run)
    except FederationError as error:
        raise FederationError(f"{error}; the outputs are kept locally in {out}") from None
    final = json.loads((out / METRICS_FILE).read_text())["final"]
    console.print(
        f"Done: final model ROC-AUC {final['roc-auc']:.4f}, PR-AUC {final['pr-auc']:.4f}, F1 {final['f1']:.3f}. "
        f"Outputs in {location} and {out}",
        highlight=False,
    )


def register_run(server: ServerAccount, run: str, out: Path, console: Console) -> Registered:
    """Register a published run (its request, ``out/model-package.json``) as the group's next version."""
    request = json.loads((out / REQUEST_FILE).read_text())
    group, location = request["ModelPackageGroupName"], run_prefix(server.settings, run)
    try:
        registered = server.register(request)
    except FederationError as error:
        raise FederationError(
            f"run {run} completed and its model is published in {location} and {out}, but registering it in "
            f"model package group {group} failed: {error}. Once that is fixed, register the same request: aws "
            f"sagemaker create-model-package --cli-input-json file://{out / REQUEST_FILE}"
        ) from None
    console.print(
        f"Registered as version {registered.version} of model package group {group}, "
        f"{request['ModelApprovalStatus']}: {registered.where}",
        highlight=False,
    )
    return registered
