"""The report says what the server saw (totals over N members, per quantity), what left each member, and why
training stopped; nothing in it is one member's data."""

from fl_runtime.app.report import OPERATIONAL, model_record, report_markdown
from fl_runtime.learning.convergence import Stop
from fl_runtime.learning.task import TrainConfig, TrainingPlan
from fl_runtime.learning.trees import TreeSettings

PLAN = TrainingPlan(rounds=2, train=TrainConfig(class_balance="class-weights"))


def _document(**changes) -> dict:
    document = {
        "final": {"roc-auc": 0.85, "pr-auc": 0.5, "log-loss": 0.3, "threshold": 0.6, "accuracy": 0.9,
                  "precision": 0.5, "recall": 0.6, "f1": 0.55},
        "config": {"data": "synthetic", **PLAN.to_config()},
        "model": model_record(PLAN),
        "federation": {"members": ["insurer-a", "insurer-b", "clinic-c"], "min-clients": 3, "training-rows": 2700,
                       "training-positives": 240},
        "server-saw": [
            {"question": "the moments query", "members": 3,
             "quantities": [{"quantity": "rows", "values": 1, "scale": "2^-0", "range": 2.0**53}]},
            {"question": "round 1", "members": 3,
             "quantities": [{"quantity": "gradient", "values": 50, "scale": "2^-34", "range": 524288.0}]},
        ],
        "test-set": {"rows": 300, "positives": 27},
        "rounds": [{"round": 1, "seconds": 1.0, "members": ["insurer-a", "insurer-b", "clinic-c"],
                    "test": {"roc-auc": 0.8, "pr-auc": 0.4, "log-loss": 0.4, "f1": 0.5}}],
        "validation": {"rows": 675, "pr-auc": 0.45, "log-loss": 0.29, "precision": 0.5, "recall": 0.4, "f1": 0.44},
        "dropouts": [],
        "stopped": Stop(2, 0.5, 0.001, 2).record(),
        "operational": OPERATIONAL,
    }  # fmt: skip
    document.update(changes)
    return document


def test_the_report_lists_what_the_server_saw_as_totals_over_the_members_per_quantity():
    report = report_markdown(_document())
    assert "## What the server saw" in report
    assert "| round 1 | 3 | gradient (50, 2^-34) |" in report
    assert "2700 training rows in total, 240 fraudulent" in report
    assert "insurer-a 900" not in report and "training-rows:" not in report  # no member's own count


def test_the_report_says_what_left_each_member_and_what_stays_unmasked_and_why():
    report = report_markdown(_document())
    assert "## What left each member" in report and "No raw row left a member" in report
    assert "totals over at least 3 members" in report and "never one member's values" in report
    assert "with two members, each learns the other's values" in report
    assert "No differential privacy" in report and OPERATIONAL in report


def test_the_report_says_after_which_round_training_stopped_and_why():
    unconverged = report_markdown(_document())
    assert "one pooled Newton step per round, computed by every member and the server" in unconverged
    assert (
        "Training reached the maximum of 2 rounds (--rounds) without converging: parameter change 5.00e-01 at "
        "round 2, tolerance 0.001." in unconverged
    )
    converged = report_markdown(_document(stopped=Stop(1, 0.0004, 0.001, 2).record()))
    assert "Training converged: parameter change 4.00e-04 below tolerance 0.001 at round 1." in converged


def test_the_report_names_the_class_balance_method_and_the_pooled_validation_of_the_final_model():
    report = report_markdown(_document())
    assert "class balance: class weights from the federation's total class counts" in report
    assert "| 675 | 0.4500 | 0.2900 | 0.5000 | 0.4000 | 0.4400 |" in report


def test_drop_outs_are_listed_with_their_step_attempt_and_reason():
    dropout = {"member": "clinic-c", "question": "round 2", "attempt": 1, "reason": "no answer within 300 s",
               "seconds-into-run": 12.0}  # fmt: skip
    report = report_markdown(_document(dropouts=[dropout]))
    assert "- clinic-c: round 2, attempt 1, 12 s into the run: no answer within 300 s" in report
    assert "None: every member took part in every step." in report_markdown(_document())


def test_a_tree_run_is_reported_in_trees_with_its_settings_and_why_boosting_stopped():
    plan = TrainingPlan(family="gbdt", trees=TreeSettings(trees=40, depth=3, learning_rate=0.3, min_rows_leaf=25))
    stopped = {"trees": 12, "grown": 37, "validation-log-loss": 0.31, "reason": "stopped boosting after 37 trees: ..."}
    report = report_markdown(
        _document(config={"data": "synthetic", **plan.to_config()}, model=model_record(plan), stopped=stopped)
    )
    assert "histogram gradient-boosted trees on the logistic loss: at most 40 trees of depth 3, learning rate 0.3" in (
        report
    )
    assert "at least 25 rows of the federation" in report and "Newton" not in report
    assert "| trees | seconds | members |" in report
    assert "Training stopped boosting after 37 trees: ..." in report
