"""``python -m fl_runtime compare``: centralised vs each client alone vs federated, on the same splits.

The project's core claim, measured: a federated model close to the centralised one (which would need
the parties to pool their data) and well above what any party reaches alone. Runs in process (see
``baselines``), so it can repeat over several partitions and seeds in seconds; the table and a JSON
record go to ``--out``.

Logistic regression: every class-balance method is trained both ways (``balance``): the centralised
references are the plain, the class-weighted and the pooled-SMOTE pipelines on the pooled rows, and the
federation trains with each method. ``auto`` then picks one per split by the federated models' PR-AUC on the
clients' pooled VALIDATION parts (from the score histograms the clients send anyway), never by the server's test
set; each client alone trains with the method picked. The claim checked: the picked federated model within
0.01 ROC-AUC of the BEST centralised reference.

Gradient-boosted trees (``--model gbdt``, or ``auto``): the references are XGBoost (pinned: hist, the same depth,
trees and learning rate, lambda = l2, 255 bins) and scikit-learn's HistGradientBoosting on the pooled rows; the
federation runs the tree machine (with its early stopping on the pooled validation loss), and each client alone
runs the same machine on its own rows. ``--model auto`` picks the family per split, again by the federated
models' pooled validation PR-AUC.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from fl_runtime.files import write_text_atomic
from fl_runtime.learning import baselines
from fl_runtime.learning.balance import AUTO, CLASS_WEIGHTS, METHODS, NONE, SMOTE
from fl_runtime.learning.baselines import Outcome
from fl_runtime.learning.data import LabelledData
from fl_runtime.learning.task import GBDT, LOGISTIC, TrainingPlan, pick_family

COLUMNS = ("roc-auc", "pr-auc", "log-loss", "threshold", "precision", "recall", "f1")
# the centralised references, each on the pooled rows: (name, class-balance method)
REFERENCES = (("centralised plain", NONE), ("centralised class-weights", CLASS_WEIGHTS), ("centralised smote", SMOTE))
FEDERATED = "federated"
FEDERATED_TREES = "federated gbdt"
# the tree references, each on the pooled rows: (name, estimator from the tree settings)
TREE_REFERENCES = (
    ("centralised xgboost", baselines.xgboost_reference),
    ("centralised hist-gbdt", baselines.hist_gradient_boosting_reference),
)
MODELS = (LOGISTIC, GBDT, AUTO)
# the partitions compare runs when none is named: (label, partition, skew, alpha)
STANDARD_SPLITS = (
    ("IID", "iid", "label", 1.0),
    ("label skew, alpha 1", "non-iid", "label", 1.0),
    ("label skew, alpha 0.5", "non-iid", "label", 0.5),
    ("size skew, alpha 0.5", "non-iid", "size", 0.5),
    ("size and label skew, alpha 1", "non-iid", "size-label", 1.0),
)


def federated_name(method: str) -> str:
    return f"{FEDERATED} {method}"


def alone_name(client: str, model: str) -> str:
    return f"{client} alone" if model == LOGISTIC else f"{client} alone {model}"


def choose_model(candidates: Sequence[tuple[str, Outcome]]) -> str:
    """The family whose federated model has the highest pooled validation PR-AUC (``task.pick_family``). The
    logistic candidate is already the best of its class-balance methods on the same validation parts, and the
    trees stopped on them: both chose on them once, so the contest is even."""
    return pick_family({name: outcome.validation_pr_auc for name, outcome in candidates})


def choose_class_balance(federated: Sequence[Outcome]) -> str:
    """The method whose federated model has the highest PR-AUC on the clients' pooled validation parts
    (ties: the first in ``balance.METHODS``). Reads nothing of the test set."""
    scores = {o.name.removeprefix(f"{FEDERATED} "): o.validation_pr_auc for o in federated}
    usable = [m for m in METHODS if m in scores and not math.isnan(scores[m])]
    return max(usable, key=lambda m: scores[m]) if usable else METHODS[0]


@dataclass(frozen=True)
class Comparison:
    seed: int
    outcomes: list[Outcome]
    class_balance: str  # what was asked: a method, or auto
    chosen: str  # the method the federated logistic model (and each client alone) used
    split: str = ""
    model: str = LOGISTIC  # what was asked: a family, or auto
    chosen_model: str = LOGISTIC  # the family the comparison stands for

    def by_name(self, name: str) -> Outcome:
        return next(o for o in self.outcomes if o.name == name)

    def has(self, name: str) -> bool:
        return any(o.name == name for o in self.outcomes)

    @property
    def federated(self) -> Outcome:
        if self.chosen_model == GBDT:
            return self.by_name(FEDERATED_TREES)
        return self.by_name(federated_name(self.chosen))

    @property
    def references(self) -> list[Outcome]:
        names = REFERENCES if self.chosen_model == LOGISTIC else TREE_REFERENCES
        return [self.by_name(name) for name, _ in names]

    @property
    def best_centralised(self) -> Outcome:
        return max(self.references, key=lambda o: o.test["roc-auc"])

    @property
    def local_only(self) -> list[Outcome]:
        suffix = alone_name("", self.chosen_model)  # " alone", or " alone gbdt"
        return [o for o in self.outcomes if o.name.endswith(suffix)]

    @property
    def validation_pr_auc(self) -> dict[str, float]:
        """Each federated model's PR-AUC on the clients' pooled validation parts: the evidence of the choices."""
        names = [federated_name(m) for m in METHODS] + [FEDERATED_TREES]
        return {
            name.removeprefix(f"{FEDERATED} "): self.by_name(name).validation_pr_auc for name in names if self.has(name)
        }

    @property
    def federated_stop(self) -> dict:
        """After which round (or how many trees) the chosen federated training stopped, and why."""
        return self.federated.stop or {}

    @property
    def gap(self) -> float:
        """The chosen federated model's ROC-AUC minus the best centralised reference's (of the same family)."""
        return self.federated.test["roc-auc"] - self.best_centralised.test["roc-auc"]

    def record(self) -> dict:
        return {
            "split": self.split,
            "seed": self.seed,
            "model": self.model,
            "chosen-model": self.chosen_model,
            "class-balance": self.class_balance,
            "chosen": self.chosen,
            "validation-pr-auc": self.validation_pr_auc,
            "models": {o.name: o.test for o in self.outcomes},
            "federated-stop": self.federated_stop,
        }


def _with_method(plan: TrainingPlan, method: str) -> TrainingPlan:
    return dataclasses.replace(plan, train=dataclasses.replace(plan.train, class_balance=method))


def compare(
    test: LabelledData,
    clients: Sequence[LabelledData],
    names: Sequence[str],
    plan: TrainingPlan,
    class_balance: str = AUTO,
    split_name: str = "",
    model: str = LOGISTIC,
) -> Comparison:
    """Every reference and every federated model of the family asked (``model``: a family, or ``auto`` for both)
    on one split; ``class_balance`` (a method, or ``auto`` to choose by validation) names the federated logistic
    model, and ``auto`` the family, the comparison stands for."""
    split = baselines.split_clients(clients, plan.seed)
    outcomes: list[Outcome] = []
    chosen = class_balance if class_balance != AUTO else METHODS[0]
    candidates: list[tuple[str, Outcome]] = []
    if model in (LOGISTIC, AUTO):
        outcomes += [baselines.centralised(split, test, _with_method(plan, m), name) for name, m in REFERENCES]
        federated = [baselines.federated(split, test, _with_method(plan, m), federated_name(m)) for m in METHODS]
        chosen = choose_class_balance(federated) if class_balance == AUTO else class_balance
        outcomes += federated
        local_plan = _with_method(plan, chosen)
        outcomes += [
            baselines.alone(alone_name(name, LOGISTIC), client, test, local_plan) for name, client in zip(names, split)
        ]
        candidates.append((LOGISTIC, next(o for o in federated if o.name == federated_name(chosen))))
    if model in (GBDT, AUTO):
        trees = dataclasses.replace(plan, family=GBDT)
        outcomes += [
            baselines.pooled_reference(name, split, test, estimator(plan.trees)) for name, estimator in TREE_REFERENCES
        ]
        federated_trees = baselines.federated(split, test, trees, FEDERATED_TREES)
        outcomes.append(federated_trees)
        outcomes += [
            baselines.federated([client], test, trees, alone_name(name, GBDT)) for name, client in zip(names, split)
        ]
        candidates.append((GBDT, federated_trees))
    return Comparison(plan.seed, outcomes, class_balance, chosen, split_name, model, choose_model(candidates))


def table(comparison: Comparison) -> Table:
    where = f"{comparison.split}, " if comparison.split else ""
    view = Table(title=f"Server test set, {where}seed {comparison.seed}", title_justify="left")
    view.add_column("model")
    for column in COLUMNS:
        view.add_column(column, justify="right")
    for outcome in comparison.outcomes:
        mark = " (chosen)" if outcome is comparison.federated else ""
        view.add_row(outcome.name + mark, *(f"{outcome.test[c]:.4f}" for c in COLUMNS))
    return view


def _choice_text(comparison: Comparison) -> str:
    evidence = ", ".join(f"{m} {v:.4f}" for m, v in comparison.validation_pr_auc.items())
    family = "by validation PR-AUC" if comparison.model == AUTO else "as asked"
    balance = "by validation PR-AUC" if comparison.class_balance == AUTO else "as asked"
    logistic = f"; logistic class balance {comparison.chosen} ({balance})" if comparison.model != GBDT else ""
    return f"Model {comparison.chosen_model} ({family}){logistic}; federated validation PR-AUC: {evidence}"


def summary(comparisons: Sequence[Comparison]) -> dict:
    central = [c.best_centralised.test["roc-auc"] for c in comparisons]
    federated = [c.federated.test["roc-auc"] for c in comparisons]
    local = [np.mean([o.test["roc-auc"] for o in c.local_only]) for c in comparisons]
    gaps = [c.gap for c in comparisons]
    return {
        "seeds": sorted({c.seed for c in comparisons}),
        "splits": list(dict.fromkeys(c.split for c in comparisons)),
        "best-centralised-roc-auc-mean": float(np.mean(central)),
        "federated-roc-auc-mean": float(np.mean(federated)),
        "federated-pr-auc-mean": float(np.mean([c.federated.test["pr-auc"] for c in comparisons])),
        "local-only-roc-auc-mean": float(np.mean(local)),
        "max-abs-gap-federated-best-centralised": float(np.max(np.abs(gaps))),
        "min-roc-auc-centralised-or-federated": float(min(min(central), min(federated))),
        "chosen": {m: sum(c.chosen == m and c.model != GBDT for c in comparisons) for m in METHODS},
        "chosen-model": {m: sum(c.chosen_model == m for c in comparisons) for m in (LOGISTIC, GBDT)},
    }


def split_table(comparisons: Sequence[Comparison], metric: str = "roc-auc") -> list[str]:
    """One markdown row per split: the mean ``metric`` of every model over the seeds, what was chosen, the gaps."""
    candidates = [name for name, _ in REFERENCES] + [federated_name(m) for m in METHODS]
    candidates += [name for name, _ in TREE_REFERENCES] + [FEDERATED_TREES]
    models = [name for name in candidates if comparisons[0].has(name)]
    header = ["split", *models, "federated (chosen)", "chosen (seeds)", "alone (mean)", "max \\|fed - best central\\|"]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for split in dict.fromkeys(c.split for c in comparisons):
        group = [c for c in comparisons if c.split == split]
        means = [np.mean([c.by_name(name).test[metric] for c in group]) for name in models]
        picks = [c.chosen_model if c.chosen_model == GBDT else c.chosen for c in group]
        chosen = ", ".join(f"{m} {picks.count(m)}" for m in dict.fromkeys(picks))
        cells = [
            split or "-",
            *(f"{v:.4f}" for v in means),
            f"{np.mean([c.federated.test[metric] for c in group]):.4f}",
            chosen,
            f"{np.mean([np.mean([o.test[metric] for o in c.local_only]) for c in group]):.4f}",
            f"{max(abs(c.gap) for c in group):.4f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plan_record(plan: TrainingPlan, class_balance: str = AUTO, model: str = LOGISTIC) -> dict:
    """The training settings every run shared, as compare.json records them."""
    return {**plan.to_config(), "rounds": plan.rounds, "class-balance": class_balance, "family": model}


def markdown(comparisons: Sequence[Comparison], description: str) -> str:
    lines = [f"# Centralised vs local-only vs federated\n\nData: {description}\n", "## ROC-AUC by split\n"]
    lines += [*split_table(comparisons), "", "## PR-AUC by split\n", *split_table(comparisons, "pr-auc"), ""]
    for comparison in comparisons:
        where = f"{comparison.split}, " if comparison.split else ""
        lines += [
            f"## {where}seed {comparison.seed}\n",
            "| model | " + " | ".join(COLUMNS) + " |",
            "|---" * (len(COLUMNS) + 1) + "|",
        ]
        lines += [
            f"| {o.name} | " + " | ".join(f"{o.test[c]:.4f}" for c in COLUMNS) + " |" for o in comparison.outcomes
        ]
        reason = comparison.federated_stop.get("reason", "-")
        lines += ["", f"{_choice_text(comparison)}. Federated training {reason}.", ""]
    lines.append("## Summary\n")
    lines += [f"- {key}: {value}" for key, value in summary(comparisons).items()]
    return "\n".join(lines) + "\n"


def write(out: Path, comparisons: Sequence[Comparison], description: str, settings: dict) -> None:
    document = {
        "data": description,
        "settings": settings,
        "runs": [c.record() for c in comparisons],
        "summary": summary(comparisons),
    }
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "compare.json", json.dumps(document, indent=2))
    write_text_atomic(out / "compare.md", markdown(comparisons, description))


def print_summary(console: Console, comparisons: Sequence[Comparison]) -> None:
    for comparison in comparisons:
        console.print(table(comparison))
        console.print(_choice_text(comparison), highlight=False)
        console.print(f"Federated training {comparison.federated_stop.get('reason', '-')}", highlight=False)
    numbers = summary(comparisons)
    console.print(
        f"ROC-AUC over seeds {numbers['seeds']} and {len(numbers['splits'])} split(s): best centralised reference "
        f"{numbers['best-centralised-roc-auc-mean']:.4f}, federated (chosen) "
        f"{numbers['federated-roc-auc-mean']:.4f}, local-only {numbers['local-only-roc-auc-mean']:.4f} (mean of "
        f"clients); largest |federated - best centralised| {numbers['max-abs-gap-federated-best-centralised']:.4f}; "
        f"methods chosen {numbers['chosen']}, families chosen {numbers['chosen-model']}",
        highlight=False,
    )
