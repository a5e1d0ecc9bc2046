"""``python -m fl_runtime local``: the whole federation on one machine, as separate processes.

A SuperLink and one SuperNode per client on 127.0.0.1 through Flower's deployment engine, with TLS
(a throwaway CA and server certificate) and SuperNode authentication (one registered key per
client): the rehearsal of the cross-account deployment. Without ``--client-data`` it runs on the
embedded synthetic dataset, split over three clients.

Inputs are validated before anything starts. Outputs go to a staging folder beside ``--out`` and are
moved into place only when the run completed, so ``--out`` never holds a partial result. Every process
started here is stopped on success, failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from fl_runtime.data import LabelledData, read_client_csvs, read_csv, write_csv
from fl_runtime.deployment import (
    COMPLETED,
    FINISHED,
    ONE_THREAD,
    FAST_TASK_POLL,
    DeploymentError,
    SuperLink,
    Supervisor,
    flower_env,
    free_port,
    interrupts_as_keyboard_interrupt,
    stage_app,
    supernode_command,
)
from fl_runtime.files import publish_folder
from fl_runtime.partition import PartitionSpec, partition
from fl_runtime.pki import create_node_key, create_tls
from fl_runtime.progress import EventReader, ProgressView
from fl_runtime.report import OUTPUT_FILES
from fl_runtime.server_app import EVENTS_FILE, NODE_NAMES_FILE, ServerSettings, check_launch_options, write_node_names
from fl_runtime.strategy import REPLY_POLL_SECONDS
from fl_runtime.synthetic import SYNTHETIC_SOURCE, generate
from fl_runtime.task import TrainConfig

SYNTHETIC_ROWS = 5500
SYNTHETIC_CLIENTS = 3
STATUS_POLL_SECONDS = 2.0
STOCK_REPLY_POLL_SECONDS = 3.0  # what Flower's own Grid.send_and_receive waits between polls


@dataclass(frozen=True)
class LocalOptions:
    client_data: list[Path] = field(default_factory=list)  # empty: synthetic default
    test_data: Path | None = None
    rounds: int = 10
    train: TrainConfig = TrainConfig()
    share_curvature: bool = True
    min_clients: int | None = None  # default: every client
    seed: int = 0
    out: Path | None = None  # default: runs/<timestamp>
    node_wait_timeout: float = 120.0
    round_timeout: float = 300.0
    fast_polling: bool = True  # False: Flower's stock poll intervals, for benchmarking the difference

    def __post_init__(self) -> None:
        check_launch_options(self.rounds, self.min_clients, {"--node-wait-timeout": self.node_wait_timeout, "--round-timeout": self.round_timeout})
        if self.client_data and self.test_data is None:
            raise ValueError("--client-data needs --test-data (the server-only test set)")
        if self.test_data is not None and not self.client_data:
            raise ValueError("--test-data needs --client-data (one CSV per client)")
        first_with: dict[str, Path] = {}
        for path in map(Path, self.client_data):
            if path.stem in first_with:
                raise ValueError(
                    f"--client-data: {first_with[path.stem]} and {path} have the same file name '{path.stem}', which names the client; rename one"
                )
            first_with[path.stem] = path


def default_out(now: dt.datetime | None = None) -> Path:
    return Path("runs") / (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")


def _check_out(out: Path) -> Path:
    out = out.resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists and is not empty; choose another --out")
    return out


def _inputs(options: LocalOptions, data_dir: Path) -> tuple[Path, list[Path], str]:
    """Validated input CSVs (or the synthetic default written to ``data_dir``) and their description."""
    if options.client_data:
        test = read_csv(options.test_data)
        read_client_csvs(options.client_data, test)
        return options.test_data.resolve(), [p.resolve() for p in options.client_data], "client CSVs"
    dataset = generate(SYNTHETIC_ROWS, seed=options.seed)
    test, clients = partition(dataset, PartitionSpec(SYNTHETIC_CLIENTS, "non-iid", "label", 1.0, 0.2, options.seed))
    test_path, client_paths = _write_inputs(data_dir, test, clients)
    return test_path, client_paths, f"SYNTHETIC ({SYNTHETIC_SOURCE}, {SYNTHETIC_ROWS} generated providers, not real claims)"


def _write_inputs(data_dir: Path, test: LabelledData, clients: list[LabelledData]) -> tuple[Path, list[Path]]:
    paths = [data_dir / f"client_{i}.csv" for i in range(1, len(clients) + 1)]
    for path, client in zip(paths, clients):
        write_csv(path, client)
    write_csv(data_dir / "test.csv", test)
    return data_dir / "test.csv", paths


def run_local(options: LocalOptions, console: Console) -> Path:
    """Run the federation; return the output folder. Raises on bad input or a failed run."""
    out = _check_out(options.out or default_out())
    workspace = Path(tempfile.mkdtemp(prefix="fl-local-"))
    staging = out.parent / f".{out.name}.partial"
    supervisor = Supervisor(workspace / "logs")
    published = False
    try:
        test_path, client_paths, description = _inputs(options, workspace / "data")
        min_clients = options.min_clients or len(client_paths)
        if min_clients > len(client_paths):
            raise ValueError(f"--min-clients {min_clients} exceeds the {len(client_paths)} clients given")
        test_set = "generated" if not options.client_data else str(test_path)
        console.print(f"Data: {description}; {len(client_paths)} clients; server test set: {test_set}", highlight=False)
        shutil.rmtree(staging, ignore_errors=True)
        with interrupts_as_keyboard_interrupt():
            _federate(options, console, supervisor, workspace, staging, test_path, client_paths, min_clients, description)
        publish_folder(staging, out)
        shutil.copytree(workspace / "logs", out / "logs")
        published = True
        return out
    finally:
        supervisor.stop_all()
        if not published:
            shutil.rmtree(staging, ignore_errors=True)
            if (workspace / "logs").exists() and any((workspace / "logs").iterdir()):
                kept = Path(tempfile.gettempdir()) / f"fl-local-logs-{out.name}"
                shutil.rmtree(kept, ignore_errors=True)
                shutil.copytree(workspace / "logs", kept)
                console.print(f"Process logs kept in {kept}", highlight=False)
        shutil.rmtree(workspace, ignore_errors=True)


def _federate(options, console, supervisor, workspace, staging, test_path, client_paths, min_clients, description) -> None:
    tls = create_tls(workspace / "tls", ["127.0.0.1"])
    superlink = SuperLink(supervisor, workspace, tls, host="127.0.0.1", port=free_port(), dial_address="127.0.0.1")
    superlink.start(fast_task_poll=options.fast_polling)
    node_names = {}
    for index, path in enumerate(client_paths, start=1):
        name = f"client_{index}" if not options.client_data else path.stem
        key = create_node_key(workspace / "keys", name)
        node_names[superlink.register(key.public_key)] = name
        supervisor.start(
            f"supernode-{name}",
            supernode_command(superlink.address, tls.ca_certificate, key, {"data-path": str(path), "name": name}, free_port(), max_wait_time=60),
            flower_env(workspace / f"home-{name}", {**(FAST_TASK_POLL if options.fast_polling else {}), **ONE_THREAD}),
            workspace / f"supernode-{name}",
        )
    run_config = ServerSettings(
        rounds=options.rounds, train=options.train, share_curvature=options.share_curvature, min_clients=min_clients,
        expected_clients=len(client_paths), node_wait_timeout=options.node_wait_timeout, round_timeout=options.round_timeout,
        seed=options.seed, test_data=test_path, out_dir=staging, data_description=description,
        reply_poll_seconds=REPLY_POLL_SECONDS if options.fast_polling else STOCK_REPLY_POLL_SECONDS,
        node_names=workspace / NODE_NAMES_FILE,
    ).to_run_config()
    write_node_names(workspace / NODE_NAMES_FILE, node_names)
    run_id = superlink.submit(stage_app(workspace / "app"), run_config)
    console.print(f"Run {run_id} submitted to the SuperLink at {superlink.address} (TLS, SuperNode authentication)", highlight=False)
    deadline = time.monotonic() + options.node_wait_timeout + (options.rounds + 2) * options.round_timeout
    events = EventReader(staging / EVENTS_FILE)
    with ProgressView(console, f"Federated training, {len(client_paths)} clients") as view:
        try:
            status = _watch(superlink, supervisor, run_id, events, view, deadline)
        except BaseException:
            superlink.stop_run(run_id)
            raise
    failed = events.last("failed")
    if status != COMPLETED or failed or not events.last("done"):
        reason = failed["message"] if failed else f"run ended with status {status}"
        raise DeploymentError(f"the federation failed: {reason}")
    missing = [name for name in OUTPUT_FILES if not (staging / name).is_file()]
    if missing:
        raise DeploymentError(f"the run completed but wrote no {', '.join(missing)}")


def _watch(superlink: SuperLink, supervisor: Supervisor, run_id: str, events: EventReader, view: ProgressView, deadline: float) -> str:
    """Render events until the run finishes; fail early if the SuperLink dies or time runs out."""
    next_status = 0.0
    reported: set[str] = set()
    while True:
        for event in events.new():
            view.add(event)
        exited = supervisor.exited()
        if "superlink" in exited:
            raise DeploymentError(f"the SuperLink exited (code {exited['superlink']}):\n{supervisor.log_tail('superlink')}")
        for name in sorted(set(exited) - reported):
            reported.add(name)
            view.notice(f"{name} exited with code {exited[name]}")
        if time.monotonic() >= next_status:
            status = superlink.status(run_id)
            if status.startswith(FINISHED):
                for event in events.new():
                    view.add(event)
                return status
            next_status = time.monotonic() + STATUS_POLL_SECONDS
        if time.monotonic() > deadline:
            raise DeploymentError("the run did not finish in time (node-wait-timeout + rounds x round-timeout)")
        time.sleep(0.2)
