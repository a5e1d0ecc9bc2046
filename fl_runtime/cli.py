"""Command line: ``python -m fl_runtime {prepare-data,local,compare,federate,stage-data,app-hash,doctor}``.

Exit codes: 0 success; 2 bad input (the message names the file, column, flag or field, and nothing was
written); 1 the run failed (the message says why) or an internal error (a bug: the traceback follows);
130 interrupted. Defaults come from ``fl_runtime.defaults``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from fl_runtime import defaults
from fl_runtime.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, BadInput, OptionsError, RunFailed
from fl_runtime.learning.data import LabelledData, read_client_csvs, read_csv
from fl_runtime.learning.partition import PARTITIONS, SKEWS, PartitionSpec, partition


def _add_training(parser: argparse.ArgumentParser) -> None:
    from fl_runtime.learning.model import PENALTIES

    group = parser.add_argument_group("training")
    group.add_argument("--rounds", type=int, default=defaults.ROUNDS, help=f"FedAvg rounds (default {defaults.ROUNDS})")
    group.add_argument(
        "--local-iterations",
        type=int,
        default=defaults.LOCAL_ITERATIONS,
        help="Newton steps (L2) or SAGA epochs (L1) per round",
    )
    group.add_argument(
        "--C", dest="C", type=float, default=defaults.C, help="inverse regularisation strength of the pooled problem"
    )
    group.add_argument("--penalty", choices=PENALTIES, default=defaults.PENALTY)
    group.add_argument(
        "--no-shared-curvature",
        dest="share_curvature",
        action="store_false",
        help="keep each client's curvature local (plain FedAvg of local Newton steps; drifts under label skew)",
    )
    group.add_argument("--seed", type=int, default=defaults.SEED, help="split, partition and SMOTE seed")


def _add_partition(parser: argparse.ArgumentParser, required_clients: bool) -> None:
    group = parser.add_argument_group("splitting one CSV into a federation")
    group.add_argument("--data", type=Path, help="one labelled CSV to split (default: the embedded synthetic dataset)")
    group.add_argument(
        "--clients",
        type=int,
        required=required_clients,
        default=None if required_clients else defaults.CLIENTS,
        help="number of clients",
    )
    group.add_argument("--partition", choices=PARTITIONS, default=defaults.PARTITION)
    group.add_argument("--skew", choices=SKEWS, default=defaults.SKEW, help="non-iid: what differs across clients")
    group.add_argument(
        "--alpha",
        type=float,
        default=defaults.ALPHA,
        help="Dirichlet concentration for non-iid; smaller is more skewed",
    )
    group.add_argument(
        "--test-fraction",
        type=float,
        default=defaults.TEST_FRACTION,
        help="stratified share held by the server as test set",
    )
    group.add_argument(
        "--rows", type=int, default=defaults.SYNTHETIC_ROWS, help="rows of synthetic data when --data is not given"
    )


def _add_waits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--min-clients", type=int, help="stop when fewer clients remain (default: all)")
    parser.add_argument(
        "--round-timeout", type=float, default=defaults.ROUND_TIMEOUT, help="seconds to wait for one exchange"
    )


def _add_app(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--app",
        type=Path,
        help="a Flower app folder to submit instead of the one this runtime ships; each client runs only the apps "
        "its account approved (rehearse an upgrade, or a server that sends other code)",
    )


def _run_name(value: str) -> str:
    from fl_runtime.aws.contract import RUN_NAME, RUN_NAME_MAX

    if not RUN_NAME.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: up to {RUN_NAME_MAX} letters, digits and hyphens, starting with a letter or digit"
        )
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fl_runtime", description="Federated fraud detection with Flower")
    commands = parser.add_subparsers(dest="command", required=True)
    for add in (_add_prepare_data, _add_local, _add_compare, _add_federate, _add_party_commands, _add_app_hash):
        add(commands)
    return parser


def _add_prepare_data(commands: argparse._SubParsersAction) -> None:
    prepare = commands.add_parser("prepare-data", help="split one CSV into a server test set and client CSVs")
    _add_partition(prepare, required_clients=True)
    prepare.add_argument("--seed", type=int, default=defaults.SEED)
    prepare.add_argument(
        "--out", type=Path, required=True, help="folder for test.csv and client_1.csv ... client_N.csv"
    )


def _add_local(commands: argparse._SubParsersAction) -> None:
    local = commands.add_parser("local", help="run the federation on this machine (SuperLink + SuperNodes, TLS)")
    local.add_argument("--client-data", type=Path, nargs="+", default=[], help="one CSV per client")
    local.add_argument("--test-data", type=Path, help="the server-only test CSV")
    _add_waits(local)
    local.add_argument(
        "--node-wait-timeout",
        type=float,
        default=defaults.NODE_WAIT_TIMEOUT,
        help="seconds to wait for clients to connect",
    )
    local.add_argument("--out", type=Path, help="output folder (default: runs/<timestamp>)")
    _add_app(local)
    _add_training(local)


def _add_compare(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser("compare", help="centralised vs local-only vs federated on one split")
    compare.add_argument(
        "--client-data", type=Path, nargs="+", default=[], help="one CSV per client (instead of --data)"
    )
    compare.add_argument("--test-data", type=Path, help="the server-only test CSV (with --client-data)")
    _add_partition(compare, required_clients=False)
    compare.add_argument("--seeds", type=int, nargs="+", help="repeat over these seeds (default: --seed)")
    compare.add_argument(
        "--out", type=Path, help="folder for compare.json and compare.md (default: runs/compare-<timestamp>)"
    )
    _add_training(compare)


def _add_federate(commands: argparse._SubParsersAction) -> None:
    federate = commands.add_parser(
        "federate", help="on the server notebook: run the federation across the client accounts"
    )
    federate.add_argument(
        "--parameter-prefix", default=defaults.PARAMETER_PREFIX, help="where the stacks published their settings in SSM"
    )
    federate.add_argument(
        "--rehearsal", type=Path, help="rehearse with folders and local processes instead of AWS (a JSON description)"
    )
    _add_waits(federate)
    federate.add_argument("--address", help="this notebook's private address (default: discovered)")
    federate.add_argument(
        "--connect-timeout",
        type=float,
        default=defaults.CONNECT_TIMEOUT,
        help="seconds for a client job to start and join",
    )
    federate.add_argument(
        "--run-name",
        type=_run_name,
        help="name of this run, unique per run: up to 20 letters, digits, hyphens (default: a UTC timestamp); "
        "part of every job name",
    )
    federate.add_argument("--out", type=Path, help="local copy of the outputs (default: runs/federate-<run>)")
    _add_app(federate)
    _add_training(federate)


def _add_party_commands(commands: argparse._SubParsersAction) -> None:
    """The commands a notebook runs for its own party: this client's (``--client NAME``) or the server's."""
    stage = commands.add_parser("stage-data", help="validate and upload this party's data to its own bucket")
    stage.add_argument("--data", type=Path, required=True, help="the CSV: a client's data, or the server's test set")
    doctor = commands.add_parser("doctor", help="preflight checks of the deployment: each problem with its fix")
    for parser, client_help, server_help in (
        (stage, "this client's name (as in the stack config)", "stage the server-only test set"),
        (doctor, "this client's network, staged data and code bundle", "every client, as federate reaches it"),
    ):
        party = parser.add_mutually_exclusive_group(required=True)
        party.add_argument("--client", help=client_help)
        party.add_argument("--server", action="store_true", help=server_help)
        parser.add_argument("--parameter-prefix", default=defaults.PARAMETER_PREFIX)
    stage.add_argument("--overwrite", action="store_true", help="replace a dataset staged before")
    stage.add_argument("--seed", type=int, default=defaults.SEED, help="train/validation split seed")
    doctor.add_argument("--rehearsal", type=Path, help="with --server: the settings and launchers of this rehearsal")


def _add_app_hash(commands: argparse._SubParsersAction) -> None:
    app_hash = commands.add_parser(
        "app-hash", help="the content hash a client account approves: of the app this code ships, or of a FAB file"
    )
    app_hash.add_argument("--fab", type=Path, help="a FAB file (as `flwr build` writes it) instead of this code's app")


def _app_dir(app: Path | None) -> Path | None:
    if app is not None and not (app / "pyproject.toml").is_file():
        raise OptionsError(f"--app {app}: not a Flower app folder (no pyproject.toml)")
    return app.resolve() if app is not None else None


def _source(args: argparse.Namespace) -> tuple[LabelledData, str]:
    if args.data is not None:
        return read_csv(args.data), str(args.data)
    from fl_runtime.learning.synthetic import SYNTHETIC_SOURCE, generate

    description = f"SYNTHETIC ({SYNTHETIC_SOURCE}, {args.rows} generated providers, not real claims)"
    return generate(args.rows, seed=args.seed), description


def _spec(args: argparse.Namespace, seed: int) -> PartitionSpec:
    return PartitionSpec(args.clients, args.partition, args.skew, args.alpha, args.test_fraction, seed)


def _plan(args: argparse.Namespace, seed: int | None = None):
    from fl_runtime.learning.task import TrainConfig, TrainingPlan

    train = TrainConfig(args.local_iterations, args.C, args.penalty)
    return TrainingPlan(args.rounds, train, args.share_curvature, args.seed if seed is None else seed)


def prepare_data(args: argparse.Namespace, console: Console) -> int:
    from fl_runtime.files import publish_folder, refuse_existing, staging_folder
    from fl_runtime.learning.data import write_csv

    data, description = _source(args)
    test, clients = partition(data, _spec(args, args.seed))
    out = args.out.resolve()
    names = ["test.csv", *(f"client_{i}.csv" for i in range(1, len(clients) + 1))]
    refuse_existing([out / name for name in names], "prepare-data does not overwrite; choose another --out")
    staging = staging_folder(out)
    try:
        for name, part in zip(names, [test, *clients]):
            write_csv(staging / name, part)
        publish_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    console.print(f"Data: {description}", highlight=False)
    for name, part in zip(names, [test, *clients]):
        console.print(
            f"  {out / name}: {part.n_rows} rows, {part.n_positive} fraudulent ({part.n_positive / part.n_rows:.1%})",
            highlight=False,
        )
    return 0


def local(args: argparse.Namespace, console: Console) -> int:
    from fl_runtime.launch.local import LocalOptions, run_local

    options = LocalOptions(
        plan=_plan(args),
        min_clients=args.min_clients,
        round_timeout=args.round_timeout,
        out=args.out,
        client_data=list(args.client_data),
        test_data=args.test_data,
        node_wait_timeout=args.node_wait_timeout,
        app_dir=_app_dir(args.app),
    )
    out = run_local(options, console)
    final = json.loads((out / "metrics.json").read_text())["final"]
    console.print(
        f"Done: final model ROC-AUC {final['roc-auc']:.4f}, PR-AUC {final['pr-auc']:.4f}; at threshold "
        f"{final['threshold']:.3f} (chosen on the clients' validation data) precision {final['precision']:.3f}, "
        f"recall {final['recall']:.3f}, F1 {final['f1']:.3f}. Model, metrics, report and plots in {out}",
        highlight=False,
    )
    return 0


def _compare_splits(args: argparse.Namespace, seeds: list[int]) -> tuple[dict, list[str], str]:
    """The split of each seed: (test, clients) by seed, the client names, and what the data is."""
    if args.client_data:
        if args.test_data is None:
            raise OptionsError("--client-data needs --test-data")
        test = read_csv(args.test_data)
        clients = read_client_csvs(args.client_data, test)
        description = f"client CSVs {', '.join(map(str, args.client_data))}; test set {args.test_data}"
        return dict.fromkeys(seeds, (test, clients)), [p.stem for p in args.client_data], description
    data, description = _source(args)
    splits = {seed: partition(data, _spec(args, seed)) for seed in seeds}
    description += f"; {args.clients} clients, {args.partition}" + (
        f" ({args.skew} skew, alpha {args.alpha})" if args.partition == "non-iid" else ""
    )
    return splits, [f"client_{i}" for i in range(1, args.clients + 1)], description


def compare(args: argparse.Namespace, console: Console) -> int:
    from fl_runtime.launch.options import timestamp
    from fl_runtime.learning import compare as comparing

    seeds = args.seeds or [args.seed]
    plans = {seed: _plan(args, seed) for seed in seeds}
    splits, names, description = _compare_splits(args, seeds)
    comparisons = [comparing.compare(test, clients, names, plans[seed]) for seed, (test, clients) in splits.items()]
    console.print(f"Data: {description}", highlight=False)
    comparing.print_summary(console, comparisons)
    out = args.out or Path("runs") / f"compare-{timestamp()}"
    comparing.write(out, comparisons, description, comparing.plan_record(plans[seeds[0]]))
    console.print(f"Saved {out / 'compare.md'} and {out / 'compare.json'}", highlight=False)
    return 0


def federate(args: argparse.Namespace, console: Console) -> int:
    from fl_runtime.aws.contract import server_parameter
    from fl_runtime.aws.federate import FederateOptions
    from fl_runtime.aws.federate import federate as run_federation
    from fl_runtime.aws.server_account import AwsServer, RehearsalServer

    options = FederateOptions(
        plan=_plan(args),
        min_clients=args.min_clients,
        round_timeout=args.round_timeout,
        out=args.out,
        address=args.address,
        connect_timeout=args.connect_timeout,
        run_name=args.run_name,
        app_dir=_app_dir(args.app),
    )
    server = RehearsalServer(args.rehearsal) if args.rehearsal else AwsServer(server_parameter(args.parameter_prefix))
    run_federation(server, options, console)
    return 0


def stage_data(args: argparse.Namespace, console: Console) -> int:
    from fl_runtime.aws.stage_data import StageOptions, stage

    options = StageOptions(
        args.data,
        server=args.server,
        client=args.client,
        parameter_prefix=args.parameter_prefix,
        overwrite=args.overwrite,
        seed=args.seed,
    )
    for uri in stage(options):
        console.print(f"staged {uri}", highlight=False)
    return 0


def app_hash(args: argparse.Namespace, console: Console) -> int:
    """What a client's reviewer compares: the hash of the code they reviewed with the hash their stack approves."""
    from fl_runtime.launch.fab import app_content_hash, fab_file_hash

    console.print(app_content_hash() if args.fab is None else fab_file_hash(args.fab), highlight=False)
    return 0


def doctor(args: argparse.Namespace, console: Console) -> int:
    from fl_runtime.aws.doctor import run

    return run(console, args.parameter_prefix, client=args.client, rehearsal=args.rehearsal)


COMMANDS = {
    "prepare-data": prepare_data,
    "local": local,
    "compare": compare,
    "federate": federate,
    "stage-data": stage_data,
    "app-hash": app_hash,
    "doctor": doctor,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(soft_wrap=True)  # no hard line breaks in messages a script may parse
    errors = Console(stderr=True, soft_wrap=True)
    try:
        return COMMANDS[args.command](args, console)
    except (BadInput, FileNotFoundError, FileExistsError) as error:  # a path the user gave
        errors.print(f"error: {error}", highlight=False, markup=False)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        errors.print("interrupted: every process started by this command was stopped", highlight=False)
        return EXIT_INTERRUPTED
    except (RunFailed, OSError) as error:  # the run could not finish: say why, in one line
        errors.print(f"failed: {error}", highlight=False, markup=False)
        return EXIT_FAILED
    except Exception as error:  # a bug: say so, never "bad input", and keep the traceback
        errors.print(
            f"internal error (a bug, please report it): {type(error).__name__}: {error}", highlight=False, markup=False
        )
        print(traceback.format_exc(), file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
