"""End to end with gradient-boosted trees: the real local federation grows a tiny tree model, and it is the
in-process replay's model bit for bit (the replay's exactness against pooled boosting: tests/learning). The run
is ``--model auto``: a short logistic run first, then the trees, then the choice between them."""

from __future__ import annotations

import json

import joblib
import numpy as np
import pytest

from fl_runtime.learning.baselines import federated, split_clients
from fl_runtime.learning.gbdt import GRADIENT_BOOSTED_TREES
from fl_runtime.learning.task import TrainingPlan
from fl_runtime.learning.tree_model import BoostedTreesModel
from fl_runtime.learning.trees import TreeSettings
from tests.helpers import read_rows, run_cli, write_rows
from tests.launch.conftest import SEED, run_local

pytestmark = pytest.mark.slow
TINY = TreeSettings(trees=2, depth=2, learning_rate=0.3, min_rows_leaf=20)  # 2 + 2 x 2 + 2 exchanges


@pytest.fixture(scope="module")
def auto_run(split, tmp_path_factory):
    """``local --model auto``: a whole run of each family on one split (logistic one round), then the pick."""
    test_path, client_paths, _, _ = split
    folder = tmp_path_factory.mktemp("trees")
    flags = [f"--{key}={value}" for key, value in TINY.to_config().items()]
    done = run_local(
        folder, "--model", "auto", "--rounds", 1, *flags, "--client-data", *client_paths, "--test-data", test_path,
        "--seed", SEED, "--out", folder / "out",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done, folder / "out"


@pytest.fixture(scope="module")
def tree_run(auto_run):
    done, out = auto_run
    return done, out / "gbdt"


def test_model_auto_runs_each_family_whole_and_keeps_the_one_the_members_validation_totals_chose(auto_run):
    done, out = auto_run
    runs = {family: json.loads((out / family / "metrics.json").read_text()) for family in ("logistic", "gbdt")}
    assert {family: metrics["model"]["family"] for family, metrics in runs.items()} == {
        "logistic": "logistic",
        "gbdt": "gbdt",
    }
    assert runs["logistic"]["final"]["round"] == 1
    validation = {family: metrics["validation"]["pr-auc"] for family, metrics in runs.items()}
    chosen = "gbdt" if validation["gbdt"] > validation["logistic"] else "logistic"
    choice = json.loads((out / "choice.json").read_text())
    assert choice["chosen"] == chosen
    assert {run["family"]: run["validation_pr_auc"] for run in choice["runs"]} == validation
    assert choice["exchanges"] == sum(len(metrics["server-saw"]) for metrics in runs.values())
    assert (out / "model.joblib").read_bytes() == (out / chosen / "model.joblib").read_bytes()
    for family in runs:  # each run whole: its members' own views and transcripts with it
        assert {p.name for p in (out / family / "clients").iterdir()} == {"insurer_a", "insurer_b", "insurer_c"}
    assert "--model auto: a whole run of each family (logistic, gbdt)" in done.stdout
    scores = f"(logistic {validation['logistic']:.4f}, gbdt {validation['gbdt']:.4f})"
    assert f"Model family: chose {chosen} by the members' pooled validation PR-AUC {scores}" in done.stdout
    assert f"Model, metrics, report and plots in {out / chosen}" in done.stdout


def test_the_real_federation_grows_the_in_process_replays_trees_bit_for_bit(tree_run, split):
    _, out = tree_run
    _, _, test, clients = split
    replay = federated(split_clients(clients, SEED), test, TrainingPlan(seed=SEED, family="gbdt", trees=TINY))
    model = joblib.load(out / "model.joblib")
    assert isinstance(model, BoostedTreesModel) and tuple(model.features) == tuple(test.features)
    assert all(np.array_equal(ours, theirs) for ours, theirs in zip(model.edges, replay.state.edges))
    assert len(model.ensemble.trees) == len(replay.state.ensemble.trees) == TINY.trees
    for ours, theirs in zip(model.ensemble.trees, replay.state.ensemble.trees):
        assert (ours.feature, ours.bin, ours.value) == (theirs.feature, theirs.bin, theirs.value)
    np.testing.assert_array_equal(
        model.predict_proba(test.X)[:, 1], GRADIENT_BOOSTED_TREES.probabilities(replay.state, test.X)
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["threshold"] == pytest.approx(replay.threshold) == model.fraud_threshold
    assert metrics["final"]["roc-auc"] == pytest.approx(replay.test["roc-auc"], abs=1e-12)


def test_a_tree_run_reports_in_trees_and_says_why_boosting_stopped(tree_run):
    done, out = tree_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"]["family"] == "gbdt" and metrics["model"]["version"] == "trees"
    assert [r["round"] for r in metrics["rounds"]] == [1, 2] and metrics["final"]["round"] == 2
    assert metrics["stopped"]["reason"] == (
        "stopped boosting at the most trees (2, --trees); kept the best 2 trees (pooled validation log loss "
        f"{metrics['stopped']['validation-log-loss']:.4f})"
    )
    assert [line.split()[:2] for line in done.stdout.splitlines() if line.startswith("trees ")] == [
        ["trees", "1"],
        ["trees", "2"],
    ]
    report = (out / "report.md").read_text()
    assert "histogram gradient-boosted trees on the logistic loss: at most 2 trees of depth 2" in report
    questions = [seen["question"] for seen in metrics["server-saw"]]
    assert questions[:2] == ["the bin counts (coarse)", "the bin counts (fine)"]
    assert len(questions) == 2 + TINY.trees * TINY.depth + 2  # the bins, every level, the stopping root, evaluation


def test_score_gives_a_tree_runs_probabilities_and_reasons_that_add_up_to_the_margin(tree_run, split, tmp_path):
    _, out = tree_run
    test_path, _, test, _ = split
    done = run_cli("score", "--model", out, "--data", test_path, "--out", tmp_path / "scores.csv")
    assert done.returncode == 0, done.stderr
    model = joblib.load(out / "model.joblib")
    columns, rows = read_rows(tmp_path / "scores.csv")
    probabilities = np.array([float(row[columns.index("fraud_probability")]) for row in rows])
    np.testing.assert_allclose(probabilities, model.predict_proba(test.X)[:, 1], rtol=0, atol=1e-9)
    explained = model.explain(test.X)
    np.testing.assert_allclose(
        explained.contributions.sum(axis=1) + explained.intercept, model.decision_function(test.X), atol=1e-12
    )
    top, values = explained.top(3)
    for row, indices, contributions in zip(rows, top, values):
        assert [row[columns.index(f"reason_{k}")] for k in (1, 2, 3)] == [test.features[i] for i in indices]
        reported = [float(row[columns.index(f"reason_{k}_contribution")]) for k in (1, 2, 3)]
        np.testing.assert_allclose(reported, contributions, atol=1e-12)
    assert done.stdout.startswith(f"Scored {test.n_rows} rows of {test_path}")


def test_every_members_transcript_of_a_tree_run_replays_offline(tree_run):
    """verify-transcript steps the tree machine from the recorded totals, as it does the logistic one."""
    from fl_runtime.app.verify import verify_file

    _, out = tree_run
    for name in ("insurer_a", "insurer_b", "insurer_c"):
        verified = verify_file(out / "clients" / name / "transcript.jsonl")
        assert verified.writer == name and verified.signed
        assert verified.steps == 2 + TINY.trees * TINY.depth + 1  # its last answer (the evaluation) is pending
    assert verify_file(out / "transcript.jsonl").last == "the end of the run"


def test_score_refuses_bad_rows_for_a_tree_model_as_for_the_linear_one(tree_run, split, tmp_path):
    """The same data contract and messages: a text cell is named with its line and column, exit 2, no output;
    an empty cell is a missing value the trees send their learned way."""
    _, out = tree_run
    header, rows = read_rows(split[0])
    bad = [list(row) for row in rows[:5]]
    bad[2][3] = "n/a"
    done = run_cli("score", "--model", out, "--data", write_rows(tmp_path / "bad.csv", header, bad),
                   "--out", tmp_path / "scores.csv")  # fmt: skip
    assert done.returncode == 2 and f"column '{header[3]}', line 4: 'n/a' is not a number" in done.stderr
    assert not (tmp_path / "scores.csv").exists()
    missing = [list(row) for row in rows[:5]]
    missing[1][3] = ""
    done = run_cli("score", "--model", out, "--data", write_rows(tmp_path / "missing.csv", header, missing),
                   "--out", tmp_path / "scores.csv")  # fmt: skip
    assert done.returncode == 0, done.stderr
