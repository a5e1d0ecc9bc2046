"""Command line: ``python -m fl_runtime {prepare-data,local,compare}``.

Exit codes: 0 success, 1 the run failed, 2 bad input (the message names the file, column or flag and
nothing was written), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from fl_runtime.data import DataError, LabelledData, read_client_csvs, read_csv
from fl_runtime.partition import PARTITIONS, SKEWS, PartitionSpec, partition

EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


def _add_training(parser: argparse.ArgumentParser) -> None:
    from fl_runtime.model import PENALTIES
    from fl_runtime.task import TrainConfig

    defaults = TrainConfig()
    group = parser.add_argument_group("training")
    group.add_argument("--rounds", type=int, default=10, help="FedAvg rounds (default 10)")
    group.add_argument("--local-iterations", type=int, default=defaults.local_iterations, help="Newton steps (L2) or SAGA epochs (L1) per round")
    group.add_argument("--C", dest="C", type=float, default=defaults.C, help="inverse regularisation strength of the pooled problem")
    group.add_argument("--penalty", choices=PENALTIES, default=defaults.penalty)
    group.add_argument("--no-shared-curvature", dest="share_curvature", action="store_false",
                       help="keep each client's curvature local (plain FedAvg of local Newton steps; drifts under label skew)")
    group.add_argument("--seed", type=int, default=0, help="split, partition and SMOTE seed")


def _add_partition(parser: argparse.ArgumentParser, required_clients: bool) -> None:
    group = parser.add_argument_group("splitting one CSV into a federation")
    group.add_argument("--data", type=Path, help="one labelled CSV to split (default: the embedded synthetic dataset)")
    group.add_argument("--clients", type=int, required=required_clients, default=None if required_clients else 3, help="number of clients")
    group.add_argument("--partition", choices=PARTITIONS, default="non-iid")
    group.add_argument("--skew", choices=SKEWS, default="label", help="non-iid: what differs across clients")
    group.add_argument("--alpha", type=float, default=1.0, help="Dirichlet concentration for non-iid; smaller is more skewed")
    group.add_argument("--test-fraction", type=float, default=0.2, help="stratified share held by the server as test set")
    group.add_argument("--rows", type=int, default=5500, help="rows of synthetic data when --data is not given")


def _run_name(value: str) -> str:
    from fl_runtime.kickoff import RUN_NAME, RUN_NAME_MAX

    if not RUN_NAME.match(value):
        raise argparse.ArgumentTypeError(f"{value!r}: up to {RUN_NAME_MAX} letters, digits and hyphens, starting with a letter or digit")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fl_runtime", description="Federated fraud detection with Flower")
    commands = parser.add_subparsers(dest="command", required=True)

    prepare = commands.add_parser("prepare-data", help="split one CSV into a server test set and client CSVs")
    _add_partition(prepare, required_clients=True)
    prepare.add_argument("--seed", type=int, default=0)
    prepare.add_argument("--out", type=Path, required=True, help="folder for test.csv and client_1.csv ... client_N.csv")

    local = commands.add_parser("local", help="run the federation on this machine (SuperLink + SuperNodes, TLS)")
    local.add_argument("--client-data", type=Path, nargs="+", default=[], help="one CSV per client")
    local.add_argument("--test-data", type=Path, help="the server-only test CSV")
    local.add_argument("--min-clients", type=int, help="stop when fewer clients remain (default: all)")
    local.add_argument("--round-timeout", type=float, default=300.0, help="seconds to wait for one exchange")
    local.add_argument("--node-wait-timeout", type=float, default=120.0, help="seconds to wait for clients to connect")
    local.add_argument("--out", type=Path, help="output folder (default: runs/<timestamp>)")
    _add_training(local)

    compare = commands.add_parser("compare", help="centralised vs local-only vs federated on one split")
    compare.add_argument("--client-data", type=Path, nargs="+", default=[], help="one CSV per client (instead of --data)")
    compare.add_argument("--test-data", type=Path, help="the server-only test CSV (with --client-data)")
    _add_partition(compare, required_clients=False)
    compare.add_argument("--seeds", type=int, nargs="+", help="repeat over these seeds (default: --seed)")
    compare.add_argument("--out", type=Path, help="folder for compare.json and compare.md (default: runs/compare-<timestamp>)")
    _add_training(compare)
    federate = commands.add_parser("federate", help="on the server notebook: run the federation across the client accounts")
    federate.add_argument("--parameter-prefix", default="/fl-fraud", help="where the stacks published their settings in SSM")
    federate.add_argument("--rehearsal", type=Path, help="rehearse with folders and local processes instead of AWS (a JSON description)")
    federate.add_argument("--min-clients", type=int, help="stop when fewer clients remain (default: all)")
    federate.add_argument("--address", help="this notebook's private address (default: discovered)")
    federate.add_argument("--connect-timeout", type=float, default=900.0, help="seconds for a client job to start and join")
    federate.add_argument("--round-timeout", type=float, default=300.0, help="seconds to wait for one exchange")
    federate.add_argument("--run-name", type=_run_name, help="name of this run, unique per run: up to 20 letters, digits, hyphens (default: a UTC timestamp); part of every job name")
    federate.add_argument("--out", type=Path, help="local copy of the outputs (default: runs/federate-<run>)")
    _add_training(federate)

    stage = commands.add_parser("stage-data", help="validate and upload this party's data to its own bucket")
    stage.add_argument("--data", type=Path, required=True, help="the CSV: a client's data, or the server's test set")
    party = stage.add_mutually_exclusive_group(required=True)
    party.add_argument("--client", help="this client's name (as in the stack config)")
    party.add_argument("--server", action="store_true", help="stage the server-only test set")
    stage.add_argument("--parameter-prefix", default="/fl-fraud")
    stage.add_argument("--overwrite", action="store_true", help="replace a dataset staged before")
    stage.add_argument("--seed", type=int, default=0, help="train/validation split seed")
    return parser


def _source(args) -> tuple[LabelledData, str]:
    if args.data is not None:
        return read_csv(args.data), str(args.data)
    from fl_runtime.synthetic import SYNTHETIC_SOURCE, generate

    return generate(args.rows, seed=args.seed), f"SYNTHETIC ({SYNTHETIC_SOURCE}, {args.rows} generated providers, not real claims)"


def _spec(args, seed: int) -> PartitionSpec:
    return PartitionSpec(args.clients, args.partition, args.skew, args.alpha, args.test_fraction, seed)


def prepare_data(args, console: Console) -> int:
    from fl_runtime.data import write_csv
    from fl_runtime.files import publish_folder, refuse_existing

    spec = _spec(args, args.seed)
    data, description = _source(args)
    test, clients = partition(data, spec)
    out = args.out.resolve()
    names = ["test.csv", *(f"client_{i}.csv" for i in range(1, len(clients) + 1))]
    refuse_existing([out / name for name in names], "prepare-data does not overwrite; choose another --out")
    staging = out.parent / f".{out.name}.partial"
    try:
        for name, part in zip(names, [test, *clients]):
            write_csv(staging / name, part)
        publish_folder(staging, out)
    finally:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
    console.print(f"Data: {description}", highlight=False)
    for name, part in zip(names, [test, *clients]):
        console.print(f"  {out / name}: {part.n_rows} rows, {part.n_positive} fraudulent ({part.n_positive / part.n_rows:.1%})", highlight=False)
    return 0


def _train_config(args):
    from fl_runtime.task import TrainConfig

    return TrainConfig(args.local_iterations, args.C, args.penalty)


def local(args, console: Console) -> int:
    from fl_runtime.local import LocalOptions, run_local

    options = LocalOptions(
        client_data=list(args.client_data), test_data=args.test_data, rounds=args.rounds, train=_train_config(args),
        share_curvature=args.share_curvature, min_clients=args.min_clients, seed=args.seed, out=args.out,
        node_wait_timeout=args.node_wait_timeout, round_timeout=args.round_timeout,
    )
    out = run_local(options, console)
    final = json.loads((out / "metrics.json").read_text())["final"]
    console.print(
        f"Done: final model ROC-AUC {final['roc-auc']:.4f}, PR-AUC {final['pr-auc']:.4f}; at threshold {final['threshold']:.3f} "
        f"(chosen on the clients' validation data) precision {final['precision']:.3f}, recall {final['recall']:.3f}, F1 {final['f1']:.3f}. "
        f"Model, metrics, report and plots in {out}",
        highlight=False,
    )
    return 0


def compare(args, console: Console) -> int:
    import datetime as dt

    from fl_runtime import compare as comparing
    from fl_runtime.baselines import Settings

    train = _train_config(args)
    seeds = args.seeds or [args.seed]
    if args.client_data:
        if args.test_data is None:
            raise ValueError("--client-data needs --test-data")
        test = read_csv(args.test_data)
        clients = read_client_csvs(args.client_data, test)
        names = [p.stem for p in args.client_data]
        description = f"client CSVs {', '.join(map(str, args.client_data))}; test set {args.test_data}"
        splits = {seed: (test, clients) for seed in seeds}
    else:
        data, description = _source(args)
        splits = {seed: partition(data, _spec(args, seed)) for seed in seeds}
        names = [f"client_{i}" for i in range(1, args.clients + 1)]
        description += f"; {args.clients} clients, {args.partition}" + (f" ({args.skew} skew, alpha {args.alpha})" if args.partition == "non-iid" else "")
    comparisons = [
        comparing.compare(test, clients, names, Settings(args.rounds, train, args.share_curvature, seed))
        for seed, (test, clients) in splits.items()
    ]
    console.print(f"Data: {description}", highlight=False)
    comparing.print_summary(console, comparisons)
    out = args.out or Path("runs") / f"compare-{dt.datetime.now():%Y%m%d-%H%M%S}"
    settings = {"rounds": args.rounds, "local-iterations": train.local_iterations, "C": train.C, "penalty": train.penalty, "share-curvature": args.share_curvature}
    comparing.write(out, comparisons, description, settings)
    console.print(f"Saved {out / 'compare.md'} and {out / 'compare.json'}", highlight=False)
    return 0


def federate(args, console: Console) -> int:
    from fl_runtime.federate import FederateOptions
    from fl_runtime.federate import federate as run_federation
    from fl_runtime.server_account import AwsServer, RehearsalServer

    options = FederateOptions(
        rounds=args.rounds, train=_train_config(args), share_curvature=args.share_curvature, min_clients=args.min_clients,
        seed=args.seed, address=args.address, connect_timeout=args.connect_timeout, round_timeout=args.round_timeout,
        run_name=args.run_name, out=args.out,
    )
    server = RehearsalServer(args.rehearsal) if args.rehearsal else AwsServer(f"{args.parameter_prefix}/server/settings")
    run_federation(server, options, console)
    return 0


def stage_data(args, console: Console) -> int:
    from fl_runtime.stage_data import StageOptions, stage

    options = StageOptions(args.data, server=args.server, client=args.client, parameter_prefix=args.parameter_prefix, overwrite=args.overwrite, seed=args.seed)
    for uri in stage(options):
        console.print(f"staged {uri}", highlight=False)
    return 0


COMMANDS = {"prepare-data": prepare_data, "local": local, "compare": compare, "federate": federate, "stage-data": stage_data}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console(soft_wrap=True)  # no hard line breaks in messages a script may parse
    errors = Console(stderr=True, soft_wrap=True)
    try:
        return COMMANDS[args.command](args, console)
    except (DataError, ValueError, FileExistsError, FileNotFoundError) as error:
        errors.print(f"error: {error}", highlight=False, markup=False)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        errors.print("interrupted: every process started by this command was stopped", highlight=False)
        return EXIT_INTERRUPTED
    except Exception as error:  # a failed run: say why, in one line, and exit non-zero
        errors.print(f"failed: {error}", highlight=False, markup=False)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
