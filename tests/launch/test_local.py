"""End to end: the real local federation (SuperLink + 3 SuperNodes, TLS, node auth) on CMS data."""

from __future__ import annotations

import json
import subprocess
import time

import joblib
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fl_runtime import defaults
from fl_runtime.app.run_settings import OUTPUT_FILES
from fl_runtime.learning.baselines import federated, split_clients
from fl_runtime.learning.data import LABEL
from fl_runtime.learning.task import TrainingPlan
from tests.helpers import PROJECT, as_a_shell_starts_it, ctrl_c, flower_processes_under, in_temp, workspaces
from tests.launch.conftest import SEED, launcher

pytestmark = pytest.mark.slow
GENEROUS_ROUNDS = 30  # far more than the CMS split needs: the run stops at convergence


@pytest.fixture(scope="module")
def completed_run(split, tmp_path_factory):
    test_path, client_paths, _, _ = split
    out = tmp_path_factory.mktemp("run") / "out"
    started = time.monotonic()
    done = subprocess.run(
        launcher(
            "--client-data",
            *client_paths,
            "--test-data",
            test_path,
            "--rounds",
            GENEROUS_ROUNDS,
            "--seed",
            SEED,
            "--out",
            out,
        ),
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=600,
        env=in_temp(out.parent),
    )
    return done, out, time.monotonic() - started


def test_the_run_completes_and_writes_every_output(completed_run):
    done, out, _ = completed_run
    assert done.returncode == 0, done.stdout + done.stderr
    for name in OUTPUT_FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "logs" / "superlink.log").is_file()
    assert not any(p.name.endswith(".partial") for p in out.parent.iterdir())


def test_the_console_shows_a_live_row_per_round(completed_run):
    done, out, _ = completed_run
    rows = [line for line in done.stdout.splitlines() if line.startswith("round ")]
    assert len(rows) == json.loads((out / "metrics.json").read_text())["stopped"]["round"]
    assert all("ROC-AUC" in row and "PR-AUC" in row and "log loss" in row for row in rows)
    assert "TLS, SuperNode authentication" in done.stdout
    assert "Done: final model ROC-AUC" in done.stdout and "F1" in done.stdout


def test_the_saved_model_predicts_raw_csv_rows_with_high_roc_auc(completed_run, split):
    _, out, _ = completed_run
    _, _, test, _ = split
    model = joblib.load(out / "model.joblib")
    scores = model.predict_proba(test.X)[:, 1]
    assert roc_auc_score(test.y, scores) >= 0.80
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["roc-auc"] == pytest.approx(roc_auc_score(test.y, scores), abs=1e-9)


def test_metrics_record_every_round_with_threshold_metrics_chosen_on_validation(completed_run):
    _, out, _ = completed_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == list(range(1, metrics["stopped"]["round"] + 1))
    for entry in metrics["rounds"]:
        assert set(entry["test"]) == {
            "roc-auc",
            "pr-auc",
            "log-loss",
            "threshold",
            "accuracy",
            "precision",
            "recall",
            "f1",
        }
        assert entry["members"] == ["insurer_a", "insurer_b", "insurer_c"]
        assert entry["validation"]["threshold"] == entry["test"]["threshold"]
        # the exchanges since the previous version: round 1's starts with the moments
        assert [t["stage"] for t in entry["timing"]] == (["moments", "round"] if entry["round"] == 1 else ["round"])
        assert all(t["exchange"] > 0 for t in entry["timing"])
    assert metrics["validation"]["rows"] > 0 and "f1" in metrics["validation"]  # pooled, from totals
    assert metrics["dropouts"] == []
    assert metrics["config"]["num-server-rounds"] == GENEROUS_ROUNDS


def test_the_server_saw_totals_over_every_member_and_no_members_own_figures(completed_run, split):
    _, out, _ = completed_run
    _, _, _, clients = split
    metrics = json.loads((out / "metrics.json").read_text())
    federation = metrics["federation"]
    assert federation["members"] == ["insurer_a", "insurer_b", "insurer_c"]
    members = split_clients(clients, SEED)
    assert federation["training-rows"] == sum(c.train.n_rows for c in members)
    assert federation["training-positives"] == sum(c.train.n_positive for c in members)
    assert all(seen["members"] == 3 for seen in metrics["server-saw"])
    assert metrics["server-saw"][0]["question"] == "the moments query"
    report = (out / "report.md").read_text()
    assert "## What the server saw" in report and "## What left each member" in report


def test_every_member_keeps_its_own_view_and_a_signed_transcript_that_verifies(completed_run):
    from fl_runtime.app.verify import verify_file

    _, out, _ = completed_run
    for name in ("insurer_a", "insurer_b", "insurer_c"):
        view = json.loads((out / "clients" / name / "client_view.json").read_text())
        assert view["member"] == name and view["left"] is None and view["final-validation"]["roc-auc"] > 0.5
        verified = verify_file(out / "clients" / name / "transcript.jsonl")
        assert verified.writer == name and verified.signed
    assert verify_file(out / "transcript.jsonl").writer == "server"


def test_the_real_federation_trains_exactly_the_in_process_algorithm(completed_run, split):
    """The real processes, masks and signatures land on the in-process replay's model bit for bit: the members'
    fixed-point integers add to the same totals whatever travels between them."""
    _, out, _ = completed_run
    _, _, test, clients = split
    replay = federated(split_clients(clients, SEED), test, TrainingPlan(rounds=GENEROUS_ROUNDS, seed=SEED))
    model = joblib.load(out / "model.joblib")
    classifier = model.named_steps["logistic_regression"]
    np.testing.assert_array_equal(classifier.coef_, replay.state.weights.coef)
    np.testing.assert_array_equal(
        classifier.intercept_, replay.state.weights.intercept + replay.state.stats.prior_logit
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["final"]["threshold"] == pytest.approx(replay.threshold)


def test_a_run_stops_at_convergence_before_a_generous_rounds_and_says_when_and_why(completed_run):
    done, out, _ = completed_run
    metrics = json.loads((out / "metrics.json").read_text())
    stopped = metrics["stopped"]
    assert stopped["converged"] and stopped["round"] < GENEROUS_ROUNDS
    assert stopped["parameter-change"] < stopped["tolerance"] == defaults.CONVERGENCE_TOLERANCE
    assert (
        stopped["reason"].startswith("converged: parameter change ")
        and f"at round {stopped['round']}" in stopped["reason"]
    )
    assert [r["round"] for r in metrics["rounds"]] == list(range(1, stopped["round"] + 1))
    assert metrics["final"]["round"] == stopped["round"] and metrics["final"]["threshold"] > 0
    assert f"Training {stopped['reason']}." in (out / "report.md").read_text()
    assert f"training {stopped['reason']}" in done.stdout  # the live progress says it too


def test_the_real_federation_stops_after_the_same_round_as_the_in_process_replay(completed_run, split):
    _, out, _ = completed_run
    _, _, test, clients = split
    metrics = json.loads((out / "metrics.json").read_text())
    replay = federated(split_clients(clients, SEED), test, TrainingPlan(rounds=GENEROUS_ROUNDS, seed=SEED)).stop
    assert replay is not None and replay["round"] == metrics["stopped"]["round"]
    assert replay["parameter-change"] == pytest.approx(metrics["stopped"]["parameter-change"], rel=1e-3)


def test_every_process_is_gone_after_the_run(completed_run):
    done, out, _ = completed_run
    assert done.returncode == 0
    assert flower_processes_under(workspaces(out.parent)) == []


def test_the_report_names_the_clients_and_embeds_the_plots(completed_run):
    _, out, _ = completed_run
    report = (out / "report.md").read_text()
    assert "insurer_b" in report and "![metrics per round](metrics_per_round.png)" in report
    assert (out / "metrics_per_round.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_client_columns_that_differ_from_the_servers_fail_before_anything_starts(split, tmp_path):
    test_path, client_paths, _, clients = split
    other = tmp_path / "renamed.csv"
    header = [LABEL, "renamed_column", *clients[0].features[1:]]
    other.write_text(
        ",".join(header)
        + "\n"
        + "\n".join(",".join(["0", *["1"] * len(clients[0].features)]) for _ in range(80))
        + "\n"
    )
    done = subprocess.run(
        launcher("--client-data", client_paths[0], other, "--test-data", test_path, "--out", tmp_path / "out"),
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=120,
    )
    assert done.returncode == 2
    assert f"{other}: columns differ from {test_path}: missing column 'female'" in done.stderr
    assert not (tmp_path / "out").exists()


def test_ctrl_c_stops_every_process_and_leaves_no_output(tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(
        launcher("--rounds", 50, "--tolerance", 0, "--out", out),  # no early stop: still going when Ctrl-C comes
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
        env=in_temp(tmp_path),
        preexec_fn=as_a_shell_starts_it,
    )
    events = tmp_path / ".out.partial" / "events.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (events.exists() and '"event": "round"' in events.read_text()):
        time.sleep(0.5)
    assert events.exists(), "the run never reached its first round"
    running = flower_processes_under(workspaces(tmp_path))  # the leak check below sees the run's processes
    assert (
        sum("/flower-superlink " in c for c in running) == 1 and sum("/flower-supernode " in c for c in running) == 3
    ), running
    assert any("/flower-superexec " in c for c in running), running  # in a session of its own
    _, stderr = ctrl_c(process, timeout=150)  # about 5 s here; generous for a loaded machine
    assert process.returncode == 130
    assert "interrupted" in stderr
    assert not out.exists() and not (tmp_path / ".out.partial").exists()
    assert flower_processes_under(workspaces(tmp_path)) == []
