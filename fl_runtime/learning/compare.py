"""``python -m fl_runtime compare``: centralised vs each client alone vs federated, on the same split.

The project's core claim, measured: a federated model close to the centralised one (which would need
the parties to pool their data) and well above what any party reaches alone. Runs in process (see
``baselines``), so it can repeat over several seeds in seconds; the table and a JSON record go to
``--out``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fl_runtime.files import write_text_atomic
from fl_runtime.learning import baselines
from fl_runtime.learning.baselines import Outcome
from fl_runtime.learning.data import LabelledData
from fl_runtime.learning.task import TrainingPlan

COLUMNS = ("roc-auc", "pr-auc", "log-loss", "threshold", "precision", "recall", "f1")


@dataclass(frozen=True)
class Comparison:
    seed: int
    outcomes: list[Outcome]

    def by_name(self, name: str) -> Outcome:
        return next(o for o in self.outcomes if o.name == name)

    @property
    def local_only(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.name not in ("centralised", "federated")]

    @property
    def federated_stop(self) -> dict:
        """After which round federated training stopped, and why."""
        stop = self.by_name("federated").stop
        return stop.record() if stop is not None else {}

    @property
    def gap(self) -> float:
        """Federated minus centralised ROC-AUC."""
        return self.by_name("federated").test["roc-auc"] - self.by_name("centralised").test["roc-auc"]


def compare(
    test: LabelledData, clients: Sequence[LabelledData], names: Sequence[str], plan: TrainingPlan
) -> Comparison:
    split = baselines.split_clients(clients, plan.seed)
    outcomes = [baselines.centralised(split, test, plan), baselines.federated(split, test, plan)]
    outcomes += [baselines.alone(f"{name} alone", client, test, plan) for name, client in zip(names, split)]
    return Comparison(plan.seed, outcomes)


def table(comparison: Comparison) -> Table:
    view = Table(title=f"Server test set, seed {comparison.seed}", title_justify="left")
    view.add_column("model")
    for column in COLUMNS:
        view.add_column(column, justify="right")
    for outcome in comparison.outcomes:
        view.add_row(outcome.name, *(f"{outcome.test[c]:.4f}" for c in COLUMNS))
    return view


def summary(comparisons: Sequence[Comparison]) -> dict:
    central = [c.by_name("centralised").test["roc-auc"] for c in comparisons]
    federated = [c.by_name("federated").test["roc-auc"] for c in comparisons]
    local = [np.mean([o.test["roc-auc"] for o in c.local_only]) for c in comparisons]
    gaps = [c.gap for c in comparisons]
    return {
        "seeds": [c.seed for c in comparisons],
        "centralised-roc-auc-mean": float(np.mean(central)),
        "federated-roc-auc-mean": float(np.mean(federated)),
        "local-only-roc-auc-mean": float(np.mean(local)),
        "max-abs-gap-federated-centralised": float(np.max(np.abs(gaps))),
        "min-roc-auc-centralised-or-federated": float(min(min(central), min(federated))),
    }


def plan_record(plan: TrainingPlan) -> dict:
    """The training settings every seed shared, as compare.json records them."""
    return {
        "rounds": plan.rounds,
        "convergence-tolerance": plan.tolerance,
        **plan.train.to_config(),
        "share-curvature": plan.share_curvature,
    }


def markdown(comparisons: Sequence[Comparison], description: str) -> str:
    lines = [f"# Centralised vs local-only vs federated\n\nData: {description}\n"]
    for comparison in comparisons:
        lines += [
            f"## Seed {comparison.seed}\n",
            "| model | " + " | ".join(COLUMNS) + " |",
            "|---" * (len(COLUMNS) + 1) + "|",
        ]
        lines += [
            f"| {o.name} | " + " | ".join(f"{o.test[c]:.4f}" for c in COLUMNS) + " |" for o in comparison.outcomes
        ]
        lines += ["", f"Federated training {comparison.federated_stop.get('reason', '-')}.", ""]
    lines.append("## Summary\n")
    lines += [f"- {key}: {value}" for key, value in summary(comparisons).items()]
    return "\n".join(lines) + "\n"


def write(out: Path, comparisons: Sequence[Comparison], description: str, settings: dict) -> None:
    document = {
        "data": description,
        "settings": settings,
        "runs": [
            {"seed": c.seed, "models": {o.name: o.test for o in c.outcomes}, "federated-stop": c.federated_stop}
            for c in comparisons
        ],
        "summary": summary(comparisons),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "compare.json", json.dumps(document, indent=2))
    write_text_atomic(out / "compare.md", markdown(comparisons, description))


def print_summary(console: Console, comparisons: Sequence[Comparison]) -> None:
    for comparison in comparisons:
        console.print(table(comparison))
        console.print(f"Federated training {comparison.federated_stop.get('reason', '-')}", highlight=False)
    numbers = summary(comparisons)
    console.print(
        f"ROC-AUC over seeds {numbers['seeds']}: centralised {numbers['centralised-roc-auc-mean']:.4f}, "
        f"federated {numbers['federated-roc-auc-mean']:.4f}, local-only {numbers['local-only-roc-auc-mean']:.4f} "
        f"(mean of clients); largest |federated - centralised| {numbers['max-abs-gap-federated-centralised']:.4f}",
        highlight=False,
    )
