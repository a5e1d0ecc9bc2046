"""Command line: ``python -m fl_runtime {prepare-data,local,compare,federate,stage-data,app-hash,doctor,score}``.

Exit codes: 0 success; 2 bad input (the message names the file, column, flag or field, and nothing was
written); 1 the run failed (the message says why) or an internal error (a bug: the traceback follows);
130 interrupted. Defaults come from ``fl_runtime.defaults``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console

from fl_runtime import defaults
from fl_runtime.cli_options import build_parser
from fl_runtime.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, BadInput, OptionsError, RunFailed
from fl_runtime.learning.data import LabelledData, read_client_csvs, read_csv
from fl_runtime.learning.partition import PartitionSpec, partition


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
    """A real run's plan: --class-balance auto trains with defaults.CLASS_BALANCE, the method compare chose."""
    from fl_runtime.learning.balance import AUTO
    from fl_runtime.learning.task import TrainConfig, TrainingPlan
    from fl_runtime.learning.trees import TreeSettings

    method = defaults.CLASS_BALANCE if args.class_balance == AUTO else args.class_balance
    train = TrainConfig(args.C, args.penalty, method)
    trees = TreeSettings(
        args.trees, args.depth, args.learning_rate, args.l2, args.min_rows_leaf, args.min_hessian, args.cell_rows
    )
    seed = args.seed if seed is None else seed
    family = defaults.FAMILY if args.model == AUTO else args.model  # compare runs both families for auto
    return TrainingPlan(args.rounds, train, seed, args.tolerance, family, trees)


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
    from fl_runtime.launch.local import LocalOptions, default_out, run_local

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
    if _each_family(args, console):
        from fl_runtime.launch.family_choice import run_each_family

        choice = run_each_family(
            options.out or default_out(), lambda family, out: run_local(options.for_family(family, out), console)
        )
        _say_choice(choice, console)
        out = choice.out / choice.chosen
    else:
        out = run_local(options, console)
    final = json.loads((out / "metrics.json").read_text())["final"]
    console.print(
        f"Done: final model ROC-AUC {final['roc-auc']:.4f}, PR-AUC {final['pr-auc']:.4f}; at threshold "
        f"{final['threshold']:.3f} (chosen on the clients' validation data) precision {final['precision']:.3f}, "
        f"recall {final['recall']:.3f}, F1 {final['f1']:.3f}. Model, metrics, report and plots in {out}",
        highlight=False,
    )
    return 0


def _each_family(args: argparse.Namespace, console: Console) -> bool:
    """--model auto on a real run: say what it costs before it starts."""
    from fl_runtime.learning.balance import AUTO
    from fl_runtime.learning.task import FAMILIES

    if args.model != AUTO:
        return False
    console.print(
        f"--model auto: a whole run of each family ({', '.join(FAMILIES)}), then the one whose model has the higher "
        "PR-AUC on the clients' pooled validation parts (the server's test set never chooses): both runs' exchanges",
        highlight=False,
    )
    return True


def _say_choice(choice, console: Console) -> None:
    from fl_runtime.app.run_settings import MODEL_FILE
    from fl_runtime.launch.family_choice import CHOICE_REPORT

    console.print(
        f"Model family: {choice.summary()}. Its model: {choice.out / MODEL_FILE}; each run's outputs in "
        f"{choice.out}/<family>; the comparison in {choice.out / CHOICE_REPORT}",
        highlight=False,
    )


def _compare_splits(args: argparse.Namespace, seeds: list[int]) -> tuple[list, list[str], str]:
    """(split label, seed, test, clients) of every split and seed, the client names, and what the data is.
    Without --partition: compare's standard splits (IID, label skew, size skew, size and label skew)."""
    from fl_runtime.learning.compare import STANDARD_SPLITS

    if args.client_data:
        if args.test_data is None:
            raise OptionsError("--client-data needs --test-data")
        test = read_csv(args.test_data)
        clients = read_client_csvs(args.client_data, test)
        description = f"client CSVs {', '.join(map(str, args.client_data))}; test set {args.test_data}"
        return [("", seed, test, clients) for seed in seeds], [p.stem for p in args.client_data], description
    data, description = _source(args)
    if args.partition is None:
        kinds = list(STANDARD_SPLITS)
    else:
        skew, alpha = args.skew or defaults.SKEW, defaults.ALPHA if args.alpha is None else args.alpha
        label = f"{skew} skew, alpha {alpha:g}" if args.partition == "non-iid" else "IID"
        kinds = [(label, args.partition, skew, alpha)]
    splits = [
        (label, seed, *partition(data, PartitionSpec(args.clients, kind, skew, alpha, args.test_fraction, seed)))
        for label, kind, skew, alpha in kinds
        for seed in seeds
    ]
    description += f"; {args.clients} clients; splits: {', '.join(label for label, *_ in kinds)}"
    return splits, [f"client_{i}" for i in range(1, args.clients + 1)], description


def compare(args: argparse.Namespace, console: Console) -> int:
    from fl_runtime.launch.options import timestamp
    from fl_runtime.learning import compare as comparing

    seeds = args.seeds or [args.seed]
    plans = {seed: _plan(args, seed) for seed in seeds}
    splits, names, description = _compare_splits(args, seeds)
    comparisons = [
        comparing.compare(test, clients, names, plans[seed], args.class_balance, label, args.model)
        for label, seed, test, clients in splits
    ]
    console.print(f"Data: {description}", highlight=False)
    comparing.print_summary(console, comparisons)
    out = args.out or Path("runs") / f"compare-{timestamp()}"
    comparing.write(
        out, comparisons, description, comparing.plan_record(plans[seeds[0]], args.class_balance, args.model)
    )
    console.print(f"Saved {out / 'compare.md'} and {out / 'compare.json'}", highlight=False)
    return 0


def federate(args: argparse.Namespace, console: Console) -> int:
    from fl_runtime.aws.federate import FederateOptions, federate_each_family
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
    server = RehearsalServer(args.rehearsal) if args.rehearsal else AwsServer(args.parameter_prefix)
    if _each_family(args, console):
        _say_choice(federate_each_family(server, options, console), console)
    else:
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


def score(args: argparse.Namespace, console: Console) -> int:
    """Score a CSV of providers with a run's model; with the label column, also how well the model does on it."""
    from fl_runtime.app.run_settings import MODEL_FILE
    from fl_runtime.files import refuse_existing
    from fl_runtime.learning.data import LABEL
    from fl_runtime.learning.scoring import load_model, score_csv

    refuse_existing([args.out], "score does not overwrite; choose another --out")
    model = load_model(args.model / MODEL_FILE if args.model.is_dir() else args.model)
    scored = score_csv(model, args.data, args.out, args.id_column)
    console.print(
        f"Scored {scored.rows} rows of {args.data}: {scored.flagged} flagged ({scored.flagged / scored.rows:.1%}) at "
        f"threshold {scored.threshold:.3f} (the run's, chosen on the clients' validation data). Scores in {args.out}",
        highlight=False,
    )
    if scored.metrics is not None:
        metrics = {key: "-" if math.isnan(value) else f"{value:.4f}" for key, value in scored.metrics.items()}
        console.print(
            f"Label '{LABEL}' present: ROC-AUC {metrics['roc-auc']}, PR-AUC {metrics['pr-auc']}, log loss "
            f"{metrics['log-loss']}; at the threshold precision {metrics['precision']}, recall {metrics['recall']}, "
            f"F1 {metrics['f1']}",
            highlight=False,
        )
    return 0


def verify_transcript(args: argparse.Namespace, console: Console) -> int:
    """A member's (or the server's) transcript, checked offline: what the reviewer of a run is shown."""
    from fl_runtime.app.pins import ClientPins
    from fl_runtime.app.transcript import TranscriptError
    from fl_runtime.app.verify import verify_file

    pins = ClientPins.read(args.pins) if args.pins is not None else None
    try:
        verified = verify_file(args.transcript, pins)
    except TranscriptError as error:
        raise TranscriptError(f"{args.transcript}: {error}") from None
    closing = f"closed with {verified.writer}'s run key" if verified.signed else "closed (the server signs nothing)"
    console.print(
        f"{args.transcript}: a valid transcript of run {verified.run}, written by {verified.writer}: "
        f"{len(verified.members)} members ({', '.join(verified.members)}), {verified.steps} verified steps, "
        f"last {verified.last}; {closing}" + ("; members and fingerprints as pinned" if pins else ""),
        highlight=False,
    )
    return 0


COMMANDS = {
    "prepare-data": prepare_data,
    "local": local,
    "compare": compare,
    "federate": federate,
    "stage-data": stage_data,
    "app-hash": app_hash,
    "doctor": doctor,
    "score": score,
    "verify-transcript": verify_transcript,
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
