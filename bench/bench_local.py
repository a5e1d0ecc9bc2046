"""Benchmark of the local federation: seconds per round, where a round's time goes, peak memory.

    python bench/bench_local.py --repeat 2       # 3 clients, 10 rounds, TLS + SuperNode auth, CMS data, twice
    python bench/bench_local.py --stock-polling  # the same with Flower's default poll intervals
    python bench/bench_local.py --model gbdt --rounds 6 --repeat 2   # 6 trees of depth 4 instead of rounds

Runs the real launcher (``fl_runtime.launch.local.run_local``: SuperLink, SuperNodes and the clients' runners
on 127.0.0.1) while a sampler sums the resident memory of every process in the tree, then reads the
per-exchange time breakdown that the ServerApp records in metrics.json. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from process_memory import MemorySampler  # noqa: E402
from rich.console import Console  # noqa: E402

from fl_runtime import defaults  # noqa: E402
from fl_runtime.launch.local import LocalOptions, run_local  # noqa: E402
from fl_runtime.learning.data import read_csv, write_csv  # noqa: E402
from fl_runtime.learning.partition import PartitionSpec, partition  # noqa: E402
from fl_runtime.learning.task import TrainingPlan  # noqa: E402
from fl_runtime.learning.trees import TreeSettings  # noqa: E402

CMS = PROJECT.parent / "shared" / "data" / "cms_provider_fraud.csv"
PHASES = ("until-client-starts", "client-startup", "client-compute", "reply-transport")


def _inputs(args, folder: Path) -> tuple[Path, list[Path], str]:
    source = args.data if args.data else (CMS if CMS.exists() else None)
    if source is None:
        from fl_runtime.learning.synthetic import generate

        data, description = generate(defaults.SYNTHETIC_ROWS, seed=0), "synthetic"
    else:
        data, description = read_csv(source), str(source)
    test, clients = partition(data, PartitionSpec(args.clients, seed=0))
    write_csv(folder / "test.csv", test)
    paths = []
    for i, client in enumerate(clients, start=1):
        write_csv(folder / f"client_{i}.csv", client)
        paths.append(folder / f"client_{i}.csv")
    return folder / "test.csv", paths, description


def measure(args: argparse.Namespace) -> list[dict]:
    """Run the federation ``--repeat`` times on the chosen data; the figures of each run."""
    with tempfile.TemporaryDirectory(prefix="fl-bench-") as folder:
        test_path, client_paths, description = _inputs(args, Path(folder))
        return [
            {
                "data": description,
                "clients": args.clients,
                **run_and_measure(
                    test_path, client_paths, args.rounds, stock_polling=args.stock_polling, model=args.model
                ),
            }
            for _ in range(args.repeat)
        ]


def run_and_measure(
    test_path: Path, client_paths: list[Path], rounds: int, *, stock_polling: bool = False, model: str = "logistic"
) -> dict:
    """One local federation under the memory sampler: seconds per round (per tree, for gbdt: ``rounds`` trees of
    the default depth), their breakdown, peak memory."""
    with tempfile.TemporaryDirectory(prefix="fl-bench-out-") as folder:
        plan = TrainingPlan(rounds=rounds, tolerance=0.0, family=model, trees=TreeSettings(trees=rounds))
        options = LocalOptions(
            plan=plan,  # every round (every tree): the figures are per round of `rounds`
            out=Path(folder) / "out",
            client_data=client_paths,
            test_data=test_path,
            fast_polling=not stock_polling,
        )
        sampler = MemorySampler()
        sampler.start()
        started = time.monotonic()
        out = run_local(options, Console(quiet=True))
        wall = time.monotonic() - started
        sampler.stop()
        metrics = json.loads((out / "metrics.json").read_text())
    level_values = [sum(q["values"] for q in seen["quantities"]) for seen in metrics["server-saw"]]
    return {
        "rounds": rounds,
        "model": model,
        "version": metrics["model"]["version"],
        # a contribution is 8 bytes per fixed-point word (and a signature): the largest step's, and the median
        "values-per-contribution-max": max(level_values),
        "values-per-contribution-median": statistics.median(level_values),
        "polling": "stock" if stock_polling else "tuned",
        "wall-seconds": wall,
        **round_figures(metrics["rounds"]),
        **sampler.figures(),
        "final-roc-auc": metrics["final"]["roc-auc"],
        # the keys exchange, then one per step the server saw a total of: moments, each round, the evaluation
        "exchanges": 1 + len(metrics["server-saw"]),
    }


def round_figures(rounds: list[dict]) -> dict:
    """Seconds per model version (a logistic round, a tree); a steady one is any but the first (rows prepared,
    bins agreed) and the last (final evaluation)."""
    seconds = [r["seconds"] for r in rounds]
    middle = rounds[1:-1] or rounds
    train_exchanges = [t for r in middle for t in r["timing"] if t["stage"] in ("round", "level")]
    breakdown = {phase: statistics.median(t[phase] for t in train_exchanges) for phase in (*PHASES, "exchange")}
    breakdown["server (aggregate + test evaluation)"] = statistics.median(
        r["seconds"] - sum(t["exchange"] for t in r["timing"]) for r in middle
    )
    return {
        "seconds-per-round-mean": statistics.mean(seconds),
        "seconds-per-round-steady-median": statistics.median(r["seconds"] for r in middle),
        "first-round-seconds": seconds[0],
        "final-round-seconds": seconds[-1],
        "round-seconds": seconds,
        "breakdown-median-seconds": breakdown,
    }


def report(figures: dict) -> None:
    """The figures as a reader wants them: per round, where a round goes, memory."""
    rounds, seconds, wall = figures["rounds"], figures["round-seconds"], figures["wall-seconds"]
    unit = "tree" if figures["version"] == "trees" else "round"
    print(
        f"Local federation ({figures['model']}): {figures['clients']} clients, {rounds} {unit}s, TLS + SuperNode auth, "
        f"{figures['polling']} polling; data {figures['data']}"
    )
    print(f"  wall time, start to outputs: {wall:.1f} s (final ROC-AUC {figures['final-roc-auc']:.4f})")
    print(
        f"  message exchanges: {figures['exchanges']} (the keys exchange and every step: {unit}s, and the "
        f"family's first and last questions); a member's contribution holds {figures['values-per-contribution-max']} "
        f"fixed-point words at most ({figures['values-per-contribution-max'] * 8 / 1024:.0f} KiB), median "
        f"{figures['values-per-contribution-median']:.0f}"
    )
    print(
        f"  seconds per {unit}: mean {figures['seconds-per-round-mean']:.2f}; steady ({unit}s 2..{rounds - 1}) "
        f"median {figures['seconds-per-round-steady-median']:.2f}; {unit} 1 {seconds[0]:.2f} (rows prepared); "
        f"{unit} {rounds} {seconds[-1]:.2f}"
    )
    print(f"  seconds per training exchange (median): {figures['breakdown-median-seconds']['exchange']:.2f}")
    print(f"  where a steady {unit}'s exchanges go (median, slowest client per phase):")
    notes = {
        "until-client-starts": (
            "message pushed -> the client's runner takes the task: the SuperNode's next poll "
            "(fixed 3 s sleep after each empty poll, not configurable) + the runner's 50 ms task poll"
        ),
        "client-startup": "task taken -> ClientApp called: FAB hash check, message pull (the app is warm)",
        "client-compute": (
            "verify every member's signed contribution to the last step and add them, the family's step, "
            "this step's answer, mask and sign"
        ),
        "reply-transport": "SuperNode reply poll (fixed 0.5 s) + push + server pull",
        "exchange": "push -> last reply",
        "server (aggregate + test evaluation)": "per version: verify and add, the family's step, the test set",
    }
    for phase, value in figures["breakdown-median-seconds"].items():
        print(f"    {phase:38s} {value:6.2f} s   {notes[phase]}")
    print_memory(figures)


def print_memory(figures: dict) -> None:
    print(f"  peak memory (RSS, all processes): {figures['peak-rss-mib-total']:.0f} MiB")
    for kind, mib in figures["peak-rss-mib-by-process-kind"].items():
        print(f"    {kind:38s} {mib:6.0f} MiB (peak, all processes of this kind together)")
    for client, mib in figures["peak-rss-mib-by-client"].items():
        print(f"    client {client:31s} {mib:6.0f} MiB (peak, its SuperNode and runner together)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="CSV to split (default: ../shared CMS data, else synthetic)")
    parser.add_argument("--clients", type=int, default=defaults.CLIENTS)
    parser.add_argument("--model", choices=("logistic", "gbdt"), default="logistic")
    parser.add_argument("--rounds", type=int, default=defaults.ROUNDS, help="rounds, or trees for gbdt")
    parser.add_argument(
        "--stock-polling", action="store_true", help="Flower's default poll intervals (server 3 s, task poll 1 s)"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs, each reported, then their median and range")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    runs = measure(args)
    for figures in runs:
        report(figures)
    if len(runs) > 1:
        steady = [figures["seconds-per-round-steady-median"] for figures in runs]
        peak = [figures["peak-rss-mib-total"] for figures in runs]
        print(
            f"Over {len(runs)} runs: steady round median {statistics.median(steady):.2f} s "
            f"(range {min(steady):.2f}-{max(steady):.2f}); peak memory, all processes, median "
            f"{statistics.median(peak):.0f} MiB (range {min(peak):.0f}-{max(peak):.0f})"
        )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
