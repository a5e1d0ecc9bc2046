"""Benchmark of ``score``: rows per second and peak memory scoring a million providers.

    python bench/bench_score.py --repeat 2         # 1,000,000 synthetic rows (CMS columns + a provider id), twice
    python bench/bench_score.py --model runs/cms   # a model you have, instead of a fresh two-round local run
    python bench/bench_score.py --family gbdt      # a tree model of the default settings (80 trees, depth 4)

Generates the rows (``fl_runtime.learning.synthetic``: the CMS features, the label, and an ``npi`` column carried
with ``--id-column``), then runs ``python -m fl_runtime score`` on them as a subprocess ``--repeat`` times and
reports each run's rows per second (wall time of the whole command, interpreter start included) and peak resident
memory, then their median and spread. The peak is the scoring process's own high-water mark as the kernel keeps
it (``wait4``'s ru_maxrss): exact, where ``process_memory``'s sampler could miss a short peak between samples.
The kernel counts in it the image the process was forked from, so the rows are generated in a process of their
own and this one stays small; its own resident memory is printed as the floor of the figure. Linux only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

ID_COLUMN = "npi"


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "fl_runtime", *map(str, args)]


def published_model(folder: Path) -> Path:
    """The cheapest real model: a two-round local federation on the synthetic default data."""
    out = folder / "run"
    subprocess.run(cli("local", "--rounds", 2, "--out", out), cwd=PROJECT, check=True, capture_output=True)
    return out


def tree_model(folder: Path) -> Path:
    """A tree model of the default settings, all its trees grown: the pooled boosting the federation equals bit
    for bit (tests/learning/test_gbdt.py), in process on synthetic rows (a real run of 80 trees takes 20 minutes).
    Scoring costs what the trees are, not how they were grown."""
    import joblib

    from fl_runtime.learning import binning, trees
    from fl_runtime.learning.synthetic import generate
    from fl_runtime.learning.tree_model import BoostedTreesModel

    data = generate(5500, seed=1)
    settings = trees.TreeSettings()
    edges = tuple(binning.agree_edges([data.X], settings.min_rows_leaf))
    ensemble = trees.boost(binning.bin_codes(data.X, edges), data.y.astype(float), settings)
    path = folder / "model.joblib"
    joblib.dump(BoostedTreesModel(data.features, edges, ensemble, 0.5), path)
    return path


def providers(rows: int, path: Path) -> Path:
    """Generate the rows in a process of its own (see the module docstring)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        pool.apply(write_providers, (rows, path))
    return path


def write_providers(rows: int, path: Path) -> None:
    """``rows`` synthetic providers with a text id first, as a scoring job would receive them."""
    import numpy as np
    import pyarrow
    from pyarrow import csv as arrow_csv

    from fl_runtime.learning.data import LABEL
    from fl_runtime.learning.synthetic import generate

    data = generate(rows, seed=0)
    columns = {ID_COLUMN: pyarrow.array(np.arange(1_000_000_000, 1_000_000_000 + rows)).cast(pyarrow.string())}
    columns[LABEL] = pyarrow.array(data.y)
    columns.update((name, pyarrow.array(data.X[:, index])) for index, name in enumerate(data.features))
    arrow_csv.write_csv(pyarrow.table(columns), path)


def resident_mib() -> float:
    """This process's resident memory: what a child forked from it starts its peak at."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def score_once(model: Path, data: Path, out: Path, rows: int) -> dict:
    """One ``score`` command: its wall time and the peak resident memory of its process."""
    out.unlink(missing_ok=True)  # score refuses to overwrite
    floor = resident_mib()
    command = cli("score", "--model", model, "--data", data, "--out", out, "--id-column", ID_COLUMN)
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)  # the usage of this child alone
    seconds = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"score failed ({process.returncode}):\n{output}")
    with out.open() as scores:
        written = sum(1 for _ in scores) - 1
    if written != rows:
        raise SystemExit(f"score wrote {written} rows for {rows}")
    return {
        "rows": rows,
        "seconds": seconds,
        "rows-per-second": rows / seconds,
        "peak-rss-mib": usage.ru_maxrss / 1024,  # KiB on Linux
        "benchmark-rss-mib": floor,
        "summary": output.strip(),
    }


def measure(args: argparse.Namespace) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="fl-bench-score-") as name:
        folder = Path(name)
        model = args.model or (tree_model(folder) if args.family == "gbdt" else published_model(folder))
        started = time.monotonic()
        data = providers(args.rows, folder / "providers.csv")
        print(
            f"Generated {args.rows} providers ({data.stat().st_size / 2**20:.0f} MiB of CSV) in "
            f"{time.monotonic() - started:.1f} s; model {model if args.model else DESCRIBED[args.family]}"
        )
        return [score_once(model, data, folder / "scores.csv", args.rows) for _ in range(args.repeat)]


DESCRIBED = {"logistic": "of a fresh 2-round local run", "gbdt": "of 80 trees of depth 4 (default settings)"}


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):,.0f} (range {min(values):,.0f}-{max(values):,.0f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="providers to generate and score")
    parser.add_argument("--model", type=Path, help="a run folder or model.joblib (default: a fresh local run's)")
    parser.add_argument("--family", choices=("logistic", "gbdt"), default="logistic", help="without --model")
    parser.add_argument("--repeat", type=int, default=2, help="scoring runs, each reported, then their median")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    runs = measure(args)
    for number, figures in enumerate(runs, start=1):
        print(
            f"  run {number}: {figures['seconds']:.1f} s, {figures['rows-per-second']:,.0f} rows/s, peak memory "
            f"(RSS of the score process) {figures['peak-rss-mib']:.0f} MiB (this benchmark's own, its floor: "
            f"{figures['benchmark-rss-mib']:.0f} MiB)"
        )
    print(f"  score said: {runs[-1]['summary']}")
    print(
        f"Over {len(runs)} runs: rows/s {spread([r['rows-per-second'] for r in runs])}; peak RSS MiB "
        f"{spread([r['peak-rss-mib'] for r in runs])}"
    )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
