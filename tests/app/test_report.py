from fl_runtime.app.report import report_markdown
from fl_runtime.learning.convergence import Stop


def _document(share_curvature: bool, penalty: str = "l2") -> dict:
    return {
        "final": {
            "roc-auc": 0.85,
            "pr-auc": 0.5,
            "log-loss": 0.3,
            "threshold": 0.6,
            "accuracy": 0.9,
            "precision": 0.5,
            "recall": 0.6,
            "f1": 0.55,
        },
        "config": {
            "data": "synthetic",
            "C": 1.0,
            "penalty": penalty,
            "num-server-rounds": 2,
            "convergence-tolerance": 0.001,
            "local-iterations": 1,
            "share-curvature": share_curvature,
            "class-balance": "class-weights",
        },
        "federation": {
            "clients": ["insurer-a"],
            "training-rows": {"insurer-a": 900},
            "training-positives": {"insurer-a": 80},
        },
        "test-set": {"rows": 300, "positives": 27},
        "rounds": [
            {
                "round": 1,
                "seconds": 1.0,
                "clients": ["insurer-a"],
                "test": {"roc-auc": 0.8, "pr-auc": 0.4, "log-loss": 0.4, "f1": 0.5},
            }
        ],
        "clients-validation": {"insurer-a": {"rows": 100, "roc-auc": 0.8, "pr-auc": 0.4, "f1": 0.5}},
        "dropouts": [],
        "stopped": Stop(2, 0.5, 0.001, 2).record(),
    }


def test_the_report_states_what_left_each_client_including_the_curvature_only_when_l2_shares_it():
    shared, not_shared, l1 = (
        report_markdown(_document(True)),
        report_markdown(_document(False)),
        report_markdown(_document(True, "l1")),
    )
    for report in (shared, not_shared, l1):
        assert "## What left each client" in report and "No raw row left a client" in report
        assert "without differential privacy" in report and "no secure aggregation" in report
    assert (
        "mean per-example Hessian of its local loss" in shared and "Hessian" not in not_shared and "Hessian" not in l1
    )


def test_the_report_says_after_which_round_training_stopped_and_why():
    document = _document(True)
    unconverged = report_markdown(document)
    assert "FedAvg for at most 2 rounds, stopping once a round changes the parameters by less than 0.001" in unconverged
    assert (
        "Training reached the maximum of 2 rounds (--rounds) without converging: parameter change 5.00e-01 at "
        "round 2, tolerance 0.001." in unconverged
    )
    converged = report_markdown({**document, "stopped": Stop(1, 0.0004, 0.001, 2).record()})
    assert "Training converged: parameter change 4.00e-04 below tolerance 0.001 at round 1." in converged


def test_the_report_names_the_class_balance_method_and_a_run_from_before_it_was_recorded_used_smote():
    document = _document(True)
    assert "class balance: class weights from the federation's global class counts" in report_markdown(document)
    del document["config"]["class-balance"]
    assert "class balance: SMOTE on each client's training part" in report_markdown(document)
