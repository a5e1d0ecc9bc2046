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

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from rich.console import Console

from fl_runtime import defaults
from fl_runtime.app.run_settings import NODE_NAMES_FILE, write_node_names
from fl_runtime.errors import OptionsError
from fl_runtime.files import empty_output_folder, publish_folder, staging_folder
from fl_runtime.launch.fab import stage_app
from fl_runtime.launch.flower import FAST_TASK_POLL, ONE_THREAD, SuperLink, SuperNodeSpec, flower_env, free_port
from fl_runtime.launch.follow import RunWatch, follow_run
from fl_runtime.launch.options import RunOptions, timestamp
from fl_runtime.launch.pki import create_node_key, create_tls
from fl_runtime.launch.processes import Supervisor, interrupts_as_keyboard_interrupt
from fl_runtime.launch.progress import ProgressView
from fl_runtime.learning.data import LabelledData, read_client_csvs, read_csv, write_csv
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.synthetic import SYNTHETIC_SOURCE, generate


@dataclass(frozen=True)
class LocalOptions(RunOptions):
    client_data: list[Path] = field(default_factory=list)  # empty: synthetic default
    test_data: Path | None = None
    node_wait_timeout: float = defaults.NODE_WAIT_TIMEOUT
    fast_polling: bool = True  # False: Flower's stock poll intervals, for benchmarking the difference

    WAIT_FLAG: ClassVar[str] = "--node-wait-timeout"

    @property
    def wait_timeout(self) -> float:
        return self.node_wait_timeout

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.client_data and self.test_data is None:
            raise OptionsError("--client-data needs --test-data (the server-only test set)")
        if self.test_data is not None and not self.client_data:
            raise OptionsError("--test-data needs --client-data (one CSV per client)")
        first_with: dict[str, Path] = {}
        for path in map(Path, self.client_data):
            if path.stem in first_with:
                raise OptionsError(
                    f"--client-data: {first_with[path.stem]} and {path} have the same file name '{path.stem}', which "
                    "names the client; rename one"
                )
            first_with[path.stem] = path


@dataclass(frozen=True)
class LocalInputs:
    """The validated CSVs of one local run: the server's test set and one per client, by client name."""

    test: Path
    clients: dict[str, Path]
    description: str


def default_out() -> Path:
    return Path("runs") / timestamp()


def _inputs(options: LocalOptions, data_dir: Path) -> LocalInputs:
    """Validated input CSVs, or the synthetic default written to ``data_dir``."""
    if options.client_data and options.test_data is not None:
        test = read_csv(options.test_data)
        read_client_csvs(options.client_data, test)
        clients = {path.stem: path.resolve() for path in options.client_data}
        return LocalInputs(options.test_data.resolve(), clients, "client CSVs")
    dataset = generate(defaults.SYNTHETIC_ROWS, seed=options.plan.seed)
    test_set, parts = partition(dataset, PartitionSpec(defaults.CLIENTS, seed=options.plan.seed))
    paths = _write_inputs(data_dir, test_set, parts)
    description = f"SYNTHETIC ({SYNTHETIC_SOURCE}, {defaults.SYNTHETIC_ROWS} generated providers, not real claims)"
    return LocalInputs(data_dir / "test.csv", paths, description)


def _write_inputs(data_dir: Path, test: LabelledData, clients: list[LabelledData]) -> dict[str, Path]:
    paths = {f"client_{i}": data_dir / f"client_{i}.csv" for i in range(1, len(clients) + 1)}
    for path, client in zip(paths.values(), clients):
        write_csv(path, client)
    write_csv(data_dir / "test.csv", test)
    return paths


def run_local(options: LocalOptions, console: Console) -> Path:
    """Run the federation; return the output folder. Raises on bad input or a failed run."""
    out = empty_output_folder(options.out or default_out())
    workspace = Path(tempfile.mkdtemp(prefix="fl-local-"))
    staging = staging_folder(out)
    supervisor = Supervisor(workspace / "logs")
    published = False
    try:
        inputs = _inputs(options, workspace / "data")
        min_clients = options.min_clients_among(len(inputs.clients), "given")
        test_set = "generated" if not options.client_data else str(inputs.test)
        console.print(
            f"Data: {inputs.description}; {len(inputs.clients)} clients; server test set: {test_set}", highlight=False
        )
        shutil.rmtree(staging, ignore_errors=True)
        with interrupts_as_keyboard_interrupt():
            LocalFederation(options, console, supervisor, workspace, staging).run(inputs, min_clients)
        publish_folder(staging, out)
        shutil.copytree(workspace / "logs", out / "logs")
        published = True
        return out
    finally:
        supervisor.stop_all()
        if not published:
            shutil.rmtree(staging, ignore_errors=True)
            _keep_logs(workspace / "logs", out.name, console)
        shutil.rmtree(workspace, ignore_errors=True)


def _keep_logs(logs: Path, run: str, console: Console) -> None:
    """After a failure: the process logs, where the user can read why."""
    if logs.exists() and any(logs.iterdir()):
        kept = Path(tempfile.gettempdir()) / f"fl-local-logs-{run}"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(logs, kept)
        console.print(f"Process logs kept in {kept}", highlight=False)


@dataclass
class LocalFederation:
    """The processes of one local run: a SuperLink on 127.0.0.1 and a SuperNode per client."""

    options: LocalOptions
    console: Console
    supervisor: Supervisor
    workspace: Path
    staging: Path  # where the ServerApp writes the outputs

    def run(self, inputs: LocalInputs, min_clients: int) -> None:
        options, workspace = self.options, self.workspace
        tls = create_tls(workspace / "tls", ["127.0.0.1"])
        superlink = SuperLink(
            self.supervisor, workspace, tls, host="127.0.0.1", port=free_port(), dial_address="127.0.0.1"
        )
        superlink.start(fast_task_poll=options.fast_polling)
        node_names = {self._start_supernode(superlink, name, path): name for name, path in inputs.clients.items()}
        write_node_names(workspace / NODE_NAMES_FILE, node_names)
        poll = defaults.REPLY_POLL_SECONDS if options.fast_polling else defaults.STOCK_REPLY_POLL_SECONDS
        settings = options.run_settings(
            clients=len(inputs.clients),
            min_clients=min_clients,
            test_data=inputs.test,
            out_dir=self.staging,
            description=inputs.description,
            node_names=workspace / NODE_NAMES_FILE,
            reply_poll_seconds=poll,
        )
        run_id = superlink.submit(stage_app(workspace / "app"), settings.to_run_config())
        self.console.print(
            f"Run {run_id} submitted to the SuperLink at {superlink.address} (TLS, SuperNode authentication)",
            highlight=False,
        )
        watch = RunWatch(
            superlink,
            self.supervisor,
            run_id,
            self.staging,
            time.monotonic() + options.run_seconds,
            options.deadline_rule,
        )
        with ProgressView(self.console, f"Federated training, {len(inputs.clients)} clients") as view:
            follow_run(watch, view)

    def _start_supernode(self, superlink: SuperLink, name: str, data: Path) -> int:
        """Register a key for client ``name`` and start its SuperNode on ``data``; returns its node id."""
        key = create_node_key(self.workspace / "keys", name)
        node_id = superlink.register(key.public_key)
        spec = SuperNodeSpec(
            superlink.address,
            superlink.tls.ca_certificate,
            key,
            {"data-path": str(data), "name": name},
            max_wait_time=60,
        )
        environment = {**(FAST_TASK_POLL if self.options.fast_polling else {}), **ONE_THREAD}
        self.supervisor.start(
            f"supernode-{name}",
            spec.command(free_port()),
            flower_env(self.workspace / f"home-{name}", environment),
            self.workspace / f"supernode-{name}",
        )
        return node_id
