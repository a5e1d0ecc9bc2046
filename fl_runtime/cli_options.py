"""The command line's options: one parser per command, the shared option groups, defaults from ``defaults``."""

from __future__ import annotations

import argparse
from pathlib import Path

from fl_runtime import defaults
from fl_runtime.learning.partition import PARTITIONS, SKEWS

# what --model auto does on a real run (local, federate)
RUN_EACH_FAMILY = (
    "a whole run of each family, then the one with the higher PR-AUC on the clients' pooled validation parts "
    "(costs both runs' exchanges; across accounts both runs' training jobs)"
)


def _add_training(parser: argparse.ArgumentParser, auto_model: str) -> None:
    """``auto_model``: what ``--model auto`` does for this command."""
    from fl_runtime.learning.balance import AUTO, CHOICES
    from fl_runtime.learning.task import FAMILIES, PENALTIES

    group = parser.add_argument_group("training")
    group.add_argument(
        "--model",
        choices=(*FAMILIES, AUTO),
        default=defaults.FAMILY,
        help=f"the model family: logistic regression or gradient-boosted trees (default {defaults.FAMILY}; "
        f"docs/models.md says why); auto: {auto_model}",
    )
    group.add_argument(
        "--rounds", type=int, default=defaults.ROUNDS, help=f"logistic: most rounds (default {defaults.ROUNDS})"
    )
    group.add_argument(
        "--tolerance",
        type=float,
        default=defaults.CONVERGENCE_TOLERANCE,
        help="stop before --rounds once a round changes the model's parameters by less than this fraction of their "
        f"length (default {defaults.CONVERGENCE_TOLERANCE:g}; 0: train every round)",
    )
    group.add_argument(
        "--C", dest="C", type=float, default=defaults.C, help="inverse regularisation strength of the pooled problem"
    )
    group.add_argument("--penalty", choices=PENALTIES, default=defaults.PENALTY)
    group.add_argument(
        "--class-balance",
        choices=CHOICES,
        default=AUTO,
        help="how training makes up for the rare class: SMOTE to the federation's balance, class weights from its "
        "global counts, or none; auto (default): compare picks per split by the clients' pooled validation PR-AUC, "
        f"a real run (local, federate) trains with {defaults.CLASS_BALANCE}, the method compare's evidence chose",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=defaults.SEED,
        help="the partition of one CSV, and each member's own train/validation split and SMOTE seed",
    )
    trees = parser.add_argument_group("gradient-boosted trees (--model gbdt)")
    trees.add_argument("--trees", type=int, default=defaults.TREES, help=f"most trees (default {defaults.TREES})")
    trees.add_argument("--depth", type=int, default=defaults.DEPTH, help=f"tree depth (default {defaults.DEPTH})")
    trees.add_argument("--learning-rate", type=float, default=defaults.LEARNING_RATE, help="shrinkage of each tree")
    trees.add_argument("--l2", type=float, default=defaults.L2, help="L2 regularisation of the leaf values")
    trees.add_argument(
        "--min-rows-leaf",
        type=int,
        default=defaults.MIN_ROWS_LEAF,
        help="the fewest rows of the federation a node may describe (members refuse less than their min_rows)",
    )
    trees.add_argument("--min-hessian", type=float, default=defaults.MIN_HESSIAN, help="the least hessian in a node")
    trees.add_argument(
        "--cell-rows",
        type=int,
        default=defaults.CELL_ROWS,
        help="below the root, each histogram cell describes about this many rows of its node (0: every bin; "
        "members refuse less than their min_rows)",
    )


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
    for add in (
        _add_prepare_data,
        _add_local,
        _add_compare,
        _add_federate,
        _add_party_commands,
        _add_app_hash,
        _add_score,
        _add_verify_transcript,
    ):
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
    _add_training(local, RUN_EACH_FAMILY)


def _add_compare(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser("compare", help="centralised vs local-only vs federated on one split")
    compare.add_argument(
        "--client-data", type=Path, nargs="+", default=[], help="one CSV per client (instead of --data)"
    )
    compare.add_argument("--test-data", type=Path, help="the server-only test CSV (with --client-data)")
    _add_partition(compare, required_clients=False)
    # without --partition, compare runs its standard set of splits (learning/compare.py STANDARD_SPLITS)
    compare.set_defaults(partition=None, skew=None, alpha=None)
    compare.add_argument("--seeds", type=int, nargs="+", help="repeat over these seeds (default: --seed)")
    compare.add_argument(
        "--out", type=Path, help="folder for compare.json and compare.md (default: runs/compare-<timestamp>)"
    )
    _add_training(compare, "both, picked per split by the clients' pooled validation PR-AUC")


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
    _add_training(federate, RUN_EACH_FAMILY)


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


def _add_verify_transcript(commands: argparse._SubParsersAction) -> None:
    verify = commands.add_parser(
        "verify-transcript",
        help="check a run's signed transcript offline: signatures, every total, the hash chain, the state machine",
    )
    verify.add_argument("transcript", type=Path, help="a transcript.jsonl a member or the server wrote")
    verify.add_argument(
        "--pins", type=Path, help="a member's pinned settings: also check the members and their identity fingerprints"
    )


def _add_score(commands: argparse._SubParsersAction) -> None:
    score = commands.add_parser(
        "score", help="score providers with a run's model: fraud probability, flag at the run's threshold, reasons"
    )
    score.add_argument(
        "--model", type=Path, required=True, help="a run's output folder (holding model.joblib) or the model.joblib"
    )
    score.add_argument(
        "--data",
        type=Path,
        required=True,
        help="CSV with the model's feature columns in its order; with the label column, the model is also measured",
    )
    score.add_argument("--out", type=Path, required=True, help="the scores CSV to write (one row per input row)")
    score.add_argument(
        "--id-column", help="a column of --data that is not a feature (a provider id), copied verbatim to --out"
    )
