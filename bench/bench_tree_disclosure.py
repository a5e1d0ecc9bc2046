"""What a tree run's totals disclose about single rows: how many node-histogram cells describe one row.

    python bench/bench_tree_disclosure.py            # compare's label-skew CMS splits, seeds 0-4, default trees

Replays the gbdt state machine in process on each split (the totals are the real federation's, bit for bit:
tests/launch/test_local_trees.py) and counts, in the count histograms of every tree level, the non-empty
(node, feature, bin) cells by how many rows of the whole federation they hold. A cell of one row says that row's
bin on that feature inside the node's region and, through the sign of its gradient, its label
(docs/trust-model.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from fl_runtime.learning.baselines import exact_totals, split_clients  # noqa: E402
from fl_runtime.learning.data import read_csv  # noqa: E402
from fl_runtime.learning.gbdt import GRADIENT_BOOSTED_TREES  # noqa: E402
from fl_runtime.learning.machine import LEVEL  # noqa: E402
from fl_runtime.learning.partition import PartitionSpec, partition  # noqa: E402
from fl_runtime.learning.task import ClientRows, TrainingPlan  # noqa: E402
from fl_runtime.learning.trees import TreeSettings  # noqa: E402

CMS = PROJECT.parent / "shared" / "data" / "cms_provider_fraud.csv"


def cell_counts(data, seed: int, cell_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows per non-empty cell of every level's totals, and of the roots' alone."""
    test, clients = partition(data, PartitionSpec(3, "non-iid", "label", 1.0, test_fraction=0.2, seed=seed))
    rows = [ClientRows(client, seed) for client in split_clients(clients, seed)]
    machine = GRADIENT_BOOSTED_TREES
    plan = TrainingPlan(seed=seed, family="gbdt", trees=TreeSettings(cell_rows=cell_rows))
    state = machine.start(plan, tuple(test.features))
    cells, roots = [], []
    while state.question is not None:
        totals = exact_totals(machine, state, rows)
        if state.question.kind == LEVEL:
            counts = np.rint(totals["count"]).astype(np.int64)
            cells.append(counts[counts > 0])
            if state.growing.asked == (0,):
                roots.append(counts[counts > 0])
        state, _ = machine.advance(state, totals, len(rows))
    return np.concatenate(cells), np.concatenate(roots)


def _without(cells: np.ndarray, roots: np.ndarray) -> np.ndarray:
    """The cells below the roots: every level's minus the roots' (as multisets of counts)."""
    values, counts = np.unique(cells, return_counts=True)
    root_values, root_counts = np.unique(roots, return_counts=True)
    remaining = counts.copy()
    remaining[np.searchsorted(values, root_values)] -= root_counts
    return np.repeat(values, remaining)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=CMS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--cell-rows", type=int, default=TreeSettings().cell_rows, help="0: every bin in every node")
    args = parser.parse_args()
    data = read_csv(args.data)
    results = [cell_counts(data, seed, args.cell_rows) for seed in args.seeds]
    cells = np.concatenate([c for c, _ in results])
    roots = np.concatenate([r for _, r in results])
    below = np.concatenate([_without(c, r) for c, r in results])
    print(f"Tree runs (cell rows {args.cell_rows}) on {args.data.name}, label skew, seeds {args.seeds}:")
    print(f"  non-empty level-histogram cells: {cells.size:,}; at the roots {roots.size:,}, below {below.size:,}")
    print(f"  at the roots: fewer than 10 rows of the federation: {np.mean(roots < 10):.1%}")
    one, few = np.mean(below == 1), np.mean(below < 10)
    print(f"  below the roots: one row of the federation: {one:.1%}; fewer than 10 rows: {few:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
