"""--model auto's choice between whole runs: by the members' pooled validation PR-AUC, never the test set, and
nothing in the output folder unless every run completed (the real federation's auto run: test_local_trees)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fl_runtime.errors import OutputExists
from fl_runtime.launch.family_choice import CHOICE_FILE, CHOICE_REPORT, run_each_family


def fake_run(results: dict[str, tuple[float | None, float]], calls: list[str] | None = None):
    """A run that writes what a completed run of ``family`` leaves: its model and metrics.json, with the given
    (validation PR-AUC, test PR-AUC)."""

    def run(family: str, folder: Path) -> Path:
        if calls is not None:
            calls.append(family)
        validation, test = results[family]
        folder.mkdir(parents=True)
        (folder / "model.joblib").write_bytes(f"the {family} model".encode())
        metrics = {
            "validation": {"pr-auc": validation},
            "final": {"roc-auc": 0.8, "pr-auc": test},
            "server-saw": [{"question": "q"}] * (8 if family == "logistic" else 12),
        }
        (folder / "metrics.json").write_text(json.dumps(metrics))
        return folder

    return run


def test_the_family_with_the_better_validation_pr_auc_is_kept_whatever_the_test_set_says(tmp_path):
    calls: list[str] = []
    choice = run_each_family(tmp_path / "out", fake_run({"logistic": (0.47, 0.60), "gbdt": (0.53, 0.40)}, calls))
    out = tmp_path / "out"
    assert calls == ["logistic", "gbdt"] and choice.chosen == "gbdt" and choice.out == out
    assert (out / "model.joblib").read_bytes() == b"the gbdt model"
    assert (out / "logistic" / "model.joblib").read_bytes() == b"the logistic model"
    record = json.loads((out / CHOICE_FILE).read_text())
    assert record["chosen"] == "gbdt" and record["exchanges"] == 20
    assert [(run["family"], run["validation_pr_auc"], run["test_pr_auc"]) for run in record["runs"]] == [
        ("logistic", 0.47, 0.60),
        ("gbdt", 0.53, 0.40),
    ]
    report = (out / CHOICE_REPORT).read_text()
    assert "| gbdt (chosen) | 0.5300 | 0.8000 | 0.4000 | 12 | [gbdt/](gbdt/report.md) |" in report
    assert "| logistic | 0.4700 | 0.8000 | 0.6000 | 8 |" in report
    assert choice.summary() == (
        "chose gbdt by the members' pooled validation PR-AUC (logistic 0.4700, gbdt 0.5300); both runs cost "
        "20 exchanges"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging folder left


def test_a_run_without_a_validation_score_never_wins(tmp_path):
    choice = run_each_family(tmp_path / "out", fake_run({"logistic": (None, 0.9), "gbdt": (0.1, 0.1)}))
    assert choice.chosen == "gbdt"
    assert json.loads((tmp_path / "out" / CHOICE_FILE).read_text())["runs"][0]["validation_pr_auc"] is None


def test_a_failed_second_run_keeps_the_first_whole_with_no_choice_and_no_staging(tmp_path):
    first = fake_run({"logistic": (0.5, 0.5)})

    def run(family: str, folder: Path) -> Path:
        if family == "gbdt":
            (folder / "half").mkdir(parents=True)  # what a failed run leaves in its staging folder
            raise RuntimeError("the tree run failed")
        return first(family, folder)

    with pytest.raises(RuntimeError, match="the tree run failed"):
        run_each_family(tmp_path / "out", run)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["logistic"]  # no choice, no model, no gbdt
    assert (tmp_path / "out" / "logistic" / "model.joblib").read_bytes() == b"the logistic model"


def test_a_failed_first_run_leaves_the_output_folder_as_it_was(tmp_path):
    def run(family: str, folder: Path) -> Path:
        raise RuntimeError(f"the {family} run failed")

    with pytest.raises(RuntimeError, match="the logistic run failed"):
        run_each_family(tmp_path / "out", run)
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_in_use_is_refused_before_any_run_starts(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("kept")
    calls: list[str] = []
    with pytest.raises(OutputExists, match="already exists and is not empty"):
        run_each_family(tmp_path / "out", fake_run({}, calls))
    assert calls == [] and [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]
