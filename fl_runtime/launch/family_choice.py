"""``--model auto`` on ``local`` and ``federate``: a whole run of each model family, then the family whose final
model has the higher PR-AUC on the members' pooled validation parts (``task.pick_family``, as ``compare`` picks).

Why whole runs: each family is its own state machine and its own Flower run (its own run keys, transcripts and
the families each member pins), so nothing about a run changes and ``auto`` costs the exchanges of both runs
(across accounts, also both runs' training jobs). The pick reads each run's verified validation totals
(``metrics.json``, ``validation``); the server's test-set figures are shown beside them, never used.

The output folder then holds each run's complete outputs in a sub-folder named by its family, the chosen run's
``model.joblib`` at the top (where ``score`` looks), and ``choice.json`` and ``choice.md`` saying what was
compared; those three only once both runs completed. A run that completed before the other failed is kept in
its family's folder.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from fl_runtime.app.run_settings import METRICS_FILE, MODEL_FILE
from fl_runtime.files import empty_output_folder, publish_folder, staging_folder, write_text_atomic
from fl_runtime.learning.task import FAMILIES, pick_family

CHOICE_FILE = "choice.json"
CHOICE_REPORT = "choice.md"


@dataclass(frozen=True)
class FamilyRun:
    """What one family's run says, from its ``metrics.json``."""

    family: str
    folder: str  # its outputs, relative to the auto run's folder
    validation_pr_auc: float  # the members' pooled validation parts (totals): what chooses
    test_roc_auc: float  # the server's test set: reported, never chooses
    test_pr_auc: float
    exchanges: int

    @classmethod
    def read(cls, family: str, folder: Path) -> FamilyRun:
        metrics = json.loads((folder / METRICS_FILE).read_text())

        def number(value: float | None) -> float:
            return math.nan if value is None else float(value)

        return cls(
            family,
            folder.name,
            number(metrics["validation"].get("pr-auc")),
            number(metrics["final"].get("roc-auc")),
            number(metrics["final"].get("pr-auc")),
            len(metrics["server-saw"]),
        )


@dataclass(frozen=True)
class FamilyChoice:
    chosen: str
    runs: tuple[FamilyRun, ...]
    out: Path

    @property
    def exchanges(self) -> int:
        return sum(run.exchanges for run in self.runs)

    def summary(self) -> str:
        scores = ", ".join(f"{run.family} {run.validation_pr_auc:.4f}" for run in self.runs)
        return (
            f"chose {self.chosen} by the members' pooled validation PR-AUC ({scores}); both runs cost "
            f"{self.exchanges} exchanges"
        )


def run_each_family(out: Path, run: Callable[[str, Path], Path]) -> FamilyChoice:
    """``run(family, folder)`` for each registered family, in order, each writing its outputs to ``folder``;
    then the pick. ``out`` must be new or empty. If a run fails, the runs that completed before it are kept, each
    whole in its family's folder of ``out`` (a federation's jobs were paid for, and its upload may have failed),
    with no choice and no top-level model; ``out`` stays as it was when none completed."""
    out = empty_output_folder(out)
    staging = staging_folder(out)
    shutil.rmtree(staging, ignore_errors=True)
    completed: list[str] = []
    try:
        runs = []
        for family in FAMILIES:
            runs.append(FamilyRun.read(family, run(family, staging / family)))
            completed.append(family)
        chosen = pick_family({family_run.family: family_run.validation_pr_auc for family_run in runs})
        choice = FamilyChoice(chosen, tuple(runs), out)
        shutil.copy2(staging / chosen / MODEL_FILE, staging / MODEL_FILE)
        write_text_atomic(staging / CHOICE_FILE, json.dumps(_record(choice), indent=2))
        write_text_atomic(staging / CHOICE_REPORT, _report(choice))
        publish_folder(staging, out)
        return choice
    except BaseException:
        for family in completed:
            if (staging / family).is_dir():
                publish_folder(staging / family, out / family)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _record(choice: FamilyChoice) -> dict:
    return {
        "chosen": choice.chosen,
        "by": "PR-AUC on the members' pooled validation parts (verified totals); the test set never chooses",
        "exchanges": choice.exchanges,
        "runs": [{key: _json_number(value) for key, value in asdict(run).items()} for run in choice.runs],
    }


def _json_number(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def _report(choice: FamilyChoice) -> str:
    def fmt(value: float) -> str:
        return "-" if math.isnan(value) else f"{value:.4f}"

    rows = [
        f"| {run.family}{' (chosen)' if run.family == choice.chosen else ''} | {fmt(run.validation_pr_auc)} | "
        f"{fmt(run.test_roc_auc)} | {fmt(run.test_pr_auc)} | {run.exchanges} | "
        f"[{run.folder}/]({run.folder}/report.md) |"
        for run in choice.runs
    ]
    return "\n".join(
        [
            "# The model family: a whole run of each, chosen on the members' validation parts",
            "",
            f"Chosen: **{choice.chosen}**; its model is `{MODEL_FILE}` here, a copy of `{choice.chosen}/{MODEL_FILE}`.",
            "",
            "| family | validation PR-AUC (members' pooled totals) | test ROC-AUC | test PR-AUC | exchanges | run |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            "The family with the higher PR-AUC on the members' pooled validation parts is chosen (ties and missing "
            "scores: the first listed). The server's test set is reported, never used to choose. Choosing cost "
            f"both runs: {choice.exchanges} exchanges in all.",
            "",
        ]
    )
