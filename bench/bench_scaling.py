"""Benchmark of cost as a client's data grows: 10^4, 10^5 and 10^6 synthetic rows per client.

    python bench/bench_scaling.py                       # 3 clients, 5 rounds, each size once
    python bench/bench_scaling.py --rows 1000000 --repeat 2

For each size it writes one synthetic CSV per client (and a server test set a fifth of that size),
times reading and validating one client's CSV as a client does before it trains (``read_csv`` +
``check_trainable``, three times, nothing else running), then runs the local federation (TLS + SuperNode
auth, each client's SuperNode and runner as separate processes) under the memory sampler. A steady round
is round 2 .. rounds-1; the first holds standardising the rows (and SMOTE when chosen), the last the final
evaluation. Five rounds by default, so each run has three steady rounds: the round right after round 1 alone is
not typical (the clients' SuperNodes come out of round 1 at different moments of their 3 s poll sleep).
Linux only (/proc).
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

from bench_local import run_and_measure  # noqa: E402

from fl_runtime import defaults  # noqa: E402
from fl_runtime.learning.data import check_trainable, read_csv, write_csv  # noqa: E402
from fl_runtime.learning.synthetic import generate  # noqa: E402

SIZES = (10_000, 100_000, 1_000_000)


def write_inputs(folder: Path, rows: int, clients: int) -> tuple[Path, list[Path]]:
    """One synthetic CSV per client (its own seed), and the server's test set."""
    paths = []
    for client in range(1, clients + 1):
        path = folder / f"client_{client}.csv"
        write_csv(path, generate(rows, seed=client))
        paths.append(path)
    test = folder / "test.csv"
    write_csv(test, generate(max(rows // 5, 1_000), seed=0))
    return test, paths


def read_seconds(path: Path, times: int = 3) -> list[float]:
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        check_trainable(read_csv(path))
        seconds.append(time.perf_counter() - started)
    return seconds


def measure_size(rows: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="fl-bench-scaling-") as folder:
        test, clients = write_inputs(Path(folder), rows, args.clients)
        figures = {
            "rows-per-client": rows,
            "csv-mib": clients[0].stat().st_size / 2**20,
            "read-validate-seconds": read_seconds(clients[0]),
            "runs": [run_and_measure(test, clients, args.rounds, model=args.model) for _ in range(args.repeat)],
        }
    return figures


def spread(values: list[float], unit: str, digits: int = 1) -> str:
    """Median, and the range when there is more than one value."""
    median = f"{statistics.median(values):.{digits}f}"
    if len(values) == 1:
        return f"{median} {unit}"
    return f"{median} {unit} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def report(sizes: list[dict], args: argparse.Namespace) -> None:
    print(
        f"Cost as rows grow ({args.model}): {args.clients} clients, {args.rounds} "
        f"{'trees' if args.model == 'gbdt' else 'rounds'}, {args.repeat} run(s) per size; median (range)"
    )
    for size in sizes:
        runs = size["runs"]
        steady = [run["seconds-per-round-steady-median"] for run in runs]
        client_peak = [max(run["peak-rss-mib-by-client"].values()) for run in runs]
        print(f"  {size['rows-per-client']:>9,} rows per client ({size['csv-mib']:.0f} MiB CSV)")
        print(f"    read + validate one client's CSV   {spread(size['read-validate-seconds'], 's', 2)}")
        print(f"    round 1 (rows standardised)        {spread([run['first-round-seconds'] for run in runs], 's')}")
        print(f"    steady round (or tree)             {spread(steady, 's', 2)}")
        exchange = [run["breakdown-median-seconds"]["exchange"] for run in runs]
        print(f"    one training exchange              {spread(exchange, 's', 2)}")
        words = [run["values-per-contribution-max"] for run in runs]
        print(f"    largest contribution (words)       {spread(words, '', 0)}")
        print(f"    peak RSS of one client's processes {spread(client_peak, 'MiB', 0)}")
        print(f"    peak RSS of all processes          {spread([r['peak-rss-mib-total'] for r in runs], 'MiB', 0)}")
        print(f"    final ROC-AUC on the test set      {spread([r['final-roc-auc'] for r in runs], '', 4)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=list(SIZES), help="rows per client, one run each")
    parser.add_argument("--clients", type=int, default=defaults.CLIENTS)
    parser.add_argument("--model", choices=("logistic", "gbdt"), default="logistic")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, or trees (of the default depth) for gbdt")
    parser.add_argument("--repeat", type=int, default=1, help="federation runs per size")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: the first and last rounds are not steady")
    sizes = [measure_size(rows, args) for rows in args.rows]
    report(sizes, args)
    if args.json:
        args.json.write_text(json.dumps(sizes, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
