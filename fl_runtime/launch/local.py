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

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from rich.console import Console

from fl_runtime import defaults
from fl_runtime.app.identity import create_identity_key
from fl_runtime.app.pins import ClientPins, Member, SettingRanges
from fl_runtime.app.run_settings import NODE_NAMES_FILE, write_node_names
from fl_runtime.errors import OptionsError
from fl_runtime.files import write_text_atomic
from fl_runtime.launch import faults
from fl_runtime.launch.client_node import ClientNode
from fl_runtime.launch.fab import app_content_hash, stage_app
from fl_runtime.launch.flower import ONE_THREAD, SuperLink, SuperNodeSpec, idle_poll, start_superlink
from fl_runtime.launch.follow import RunWatch, follow_run
from fl_runtime.launch.options import RunOptions, timestamp
from fl_runtime.launch.pki import create_node_key
from fl_runtime.launch.processes import Supervisor, interrupts_as_keyboard_interrupt
from fl_runtime.launch.run_folders import RunFolders, run_folders
from fl_runtime.learning.data import LabelledData, read_client_csv, read_csv, write_csv
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.synthetic import SYNTHETIC_SOURCE, generate
from fl_runtime.learning.task import LOGISTIC


@dataclass(frozen=True)
class LocalOptions(RunOptions):
    client_data: list[Path] = field(default_factory=list)  # empty: synthetic default
    test_data: Path | None = None
    node_wait_timeout: float = defaults.NODE_WAIT_TIMEOUT
    fast_polling: bool = True  # False: Flower's stock poll intervals, for benchmarking the difference
    # the app the server submits: by default the one this runtime ships, which every client approves;
    # another folder rehearses a server that sends other code (the clients refuse it)
    app_dir: Path | None = None

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


CLIENT_VIEWS = "clients"  # each member's own view and transcript, one folder per member


def member_pins(
    names: list[str], folder: Path, min_members: int, seed: int, families: tuple[str, ...] = (LOGISTIC,)
) -> dict[str, Path]:
    """Each member's identity key and pinned settings, as a client stack would hold them: every member pins every
    member's fingerprint; k is --min-clients (so a run of three with --min-clients 2 survives a loss); the model
    families it accepts are the one the run trains (on one machine, one person decides for every party)."""
    fingerprints = {name: create_identity_key(folder / name / "identity.pem") for name in names}
    members = tuple(Member(name, fingerprint) for name, fingerprint in sorted(fingerprints.items()))
    paths = {}
    for name in names:
        pins = ClientPins(
            client=name,
            members=members,
            identity=f"file:{(folder / name / 'identity.pem').resolve()}",
            min_members=min_members,
            seed=seed,
            ranges=SettingRanges(families=families),
        )
        paths[name] = folder / name / "pins.json"
        write_text_atomic(paths[name], pins.to_json())
    return paths


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
        for path in options.client_data:
            read_client_csv(path, test)  # checked one at a time, none kept: they may be large
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
    with run_folders(options.out or default_out(), "fl-local-", console) as folders:
        inputs = _inputs(options, folders.workspace / "data")
        min_clients = options.min_clients_among(len(inputs.clients), "given")
        test_set = "generated" if not options.client_data else str(inputs.test)
        console.print(
            f"Data: {inputs.description}; {len(inputs.clients)} clients; server test set: {test_set}", highlight=False
        )
        with interrupts_as_keyboard_interrupt():
            LocalFederation(options, console, folders).run(inputs, min_clients)
        return folders.publish()


@dataclass
class LocalFederation:
    """The processes of one local run: a SuperLink on 127.0.0.1 and a SuperNode per client."""

    options: LocalOptions
    console: Console
    folders: RunFolders

    @property
    def workspace(self) -> Path:
        return self.folders.workspace

    @property
    def supervisor(self) -> Supervisor:
        return self.folders.supervisor

    def run(self, inputs: LocalInputs, min_clients: int) -> None:
        options, workspace = self.options, self.workspace
        superlink = start_superlink(self.supervisor, workspace, ["127.0.0.1"], fast_task_poll=options.fast_polling)
        pins = member_pins(
            list(inputs.clients), workspace / "members", min_clients, options.plan.seed, (options.plan.family,)
        )
        node_names = {
            self._start_supernode(superlink, name, path, pins[name]): name for name, path in inputs.clients.items()
        }
        write_node_names(workspace / NODE_NAMES_FILE, node_names)
        poll = idle_poll(defaults.REPLY_POLL_SECONDS) if options.fast_polling else defaults.STOCK_REPLY_POLL_SECONDS
        settings = options.run_settings(
            members=list(inputs.clients),
            min_clients=min_clients,
            test_data=inputs.test,
            out_dir=self.folders.staging,
            description=inputs.description,
            node_names=workspace / NODE_NAMES_FILE,
            reply_poll_seconds=poll,
        )
        app = options.app_dir or stage_app(workspace / "app")
        run_id = superlink.submit(app, settings.to_run_config())
        self.console.print(
            f"Run {run_id} submitted to the SuperLink at {superlink.address} (TLS, SuperNode authentication)",
            highlight=False,
        )
        watch = RunWatch(superlink, self.folders, run_id, options)
        follow_run(watch, self.console, f"Federated training, {len(inputs.clients)} clients")

    def _start_supernode(self, superlink: SuperLink, name: str, data: Path, pins: Path) -> int:
        """Register a key for member ``name`` and start its node on ``data`` with its pinned settings; returns its
        node id. Each member approves the app this runtime ships, as a client stack pins the code it deploys, and
        writes its own view of the run into ``clients/<name>/`` of the output."""
        key = create_node_key(self.workspace / "keys", name)
        node_id = superlink.register(key.public_key)
        view = self.folders.staging / CLIENT_VIEWS / name
        node_config = {"data-path": str(data), "pins-file": str(pins), "view-dir": str(view)}
        spec = SuperNodeSpec(superlink.address, superlink.tls.ca_certificate, key, node_config, max_wait_time=60)
        poll = idle_poll(defaults.TASK_POLL_SECONDS) if self.options.fast_polling else defaults.STOCK_TASK_POLL_SECONDS
        node = ClientNode(name, spec, (app_content_hash(),), self.workspace / f"node-{name}", ONE_THREAD, poll)
        if not faults.never_joins(name):
            node.start(self.supervisor)
        return node_id
