"""The run's deliverables: model.joblib, metrics.json, report.md and plots, each written atomically."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fl_runtime.app.history import History
from fl_runtime.app.run_settings import CURVES_PLOT, METRICS_FILE, MODEL_FILE, REPORT_FILE, ROUNDS_PLOT
from fl_runtime.files import atomic_path, write_text_atomic
from fl_runtime.learning.model import Weights, uses_shared_curvature

if TYPE_CHECKING:
    from fl_runtime.app.server_app import Membership


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def metrics_document(history: History, membership: Membership, settings: dict) -> dict:
    final_round = max(history.rounds)
    return _json_safe(
        {
            "config": settings,
            "federation": {
                "clients": list(membership.names.values()),
                "training-rows": membership.rows,
                "training-positives": membership.positives,
            },
            "test-set": {"rows": history.test.n_rows, "positives": history.test.n_positive},
            "rounds": [asdict(history.rounds[r]) for r in sorted(history.rounds)],
            "final": {"round": final_round, **history.rounds[final_round].test},
            "stopped": history.stopped.record() if history.stopped is not None else None,
            "clients-validation": history.client_validation,
            "dropouts": [asdict(d) for d in history.dropouts],
        }
    )


def _plot_rounds(path: Path, history: History) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = sorted(history.rounds)
    figure, (quality, loss) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("roc-auc", "pr-auc", "f1"):
        quality.plot(rounds, [history.rounds[r].test.get(key, np.nan) for r in rounds], marker="o", label=key.upper())
    quality.set(xlabel="round", ylabel="test set", title="Global model on the server's test set", ylim=(0, 1))
    quality.xaxis.get_major_locator().set_params(integer=True)
    loss.xaxis.get_major_locator().set_params(integer=True)
    quality.legend()
    loss.plot(rounds, [history.rounds[r].test["log-loss"] for r in rounds], marker="o", label="test log loss")
    train_loss = [history.rounds[r].train_loss for r in rounds]
    loss.plot(
        rounds,
        [np.nan if v is None else v for v in train_loss],
        marker="s",
        label="clients' training loss (oversampled, balanced)",
    )
    loss.set(xlabel="round", ylabel="log loss", title="Log loss")
    loss.legend()
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)


def _plot_curves(path: Path, y: np.ndarray, scores: np.ndarray, threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import PrecisionRecallDisplay, RocCurveDisplay

    figure, (roc, pr) = plt.subplots(1, 2, figsize=(10, 4))
    RocCurveDisplay.from_predictions(y, scores, ax=roc, name="federated model")
    roc.plot([0, 1], [0, 1], linestyle=":", color="grey")
    roc.set_title("ROC curve, server test set")
    PrecisionRecallDisplay.from_predictions(y, scores, ax=pr, name="federated model")
    flagged = scores >= threshold
    if flagged.any():
        precision = float((y[flagged] == 1).mean())
        recall = float(flagged[y == 1].mean())
        pr.plot([recall], [precision], "o", color="black", label=f"threshold {threshold:.3f}")
    pr.axhline(float(y.mean()), linestyle=":", color="grey", label="fraud rate")
    pr.legend()
    pr.set_title("Precision-recall curve, server test set")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=110)
    plt.close(figure)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


# how each class-balance method (learning/balance.py) reads in the report; runs recorded before the
# setting existed all used SMOTE
_BALANCE = {
    "smote": "SMOTE on each client's training part, to the federation's class balance",
    "class-weights": "class weights from the federation's global class counts",
    "none": "none (plain logistic regression, calibrated as it is)",
}


def _disclosure(config: dict) -> list[str]:
    """What each client sent the server, for the privacy review a data owner will ask for: no raw row
    left a client, but these aggregates did, without differential privacy or secure aggregation."""
    shared = uses_shared_curvature(config["share-curvature"], config["penalty"])
    curvature = (
        " and the mean per-example Hessian of its local loss (one square matrix: the shared curvature)"
        if shared
        else ""
    )
    return [
        "No raw row left a client. Each client sent the server, over TLS from an authenticated SuperNode:",
        "",
        "- once: its feature names, training row and fraud counts, and per feature the sum and sum of squares "
        "of log1p(value) (for the global scaling);",
        f"- each round: its locally updated model weights{curvature}, the number of rows it trained on, its "
        "training loss, its validation row count, a histogram of validation scores by label (for the threshold) and "
        "timings;",
        "- at the end: the final model's metrics on its validation part (above) and the same histogram.",
        "",
        "These are aggregates, not anonymised data: they are sent in the clear to the server (no secure "
        "aggregation) and without differential privacy, and this report names each client's row and fraud counts.",
    ]


FINAL_COLUMNS = ("roc-auc", "pr-auc", "log-loss", "threshold", "accuracy", "precision", "recall", "f1")


def report_markdown(document: dict) -> str:
    lines = [
        *_summary(document),
        *_rounds(document["rounds"]),
        *_clients(document),
        *_dropouts(document["dropouts"]),
        "",
        "## What left each client",
        "",
        *_disclosure(document["config"]),
        "",
        f"![metrics per round]({ROUNDS_PLOT})",
        "",
        f"![ROC and PR curves]({CURVES_PLOT})",
        "",
    ]
    return "\n".join(lines)


def _summary(document: dict) -> list[str]:
    config, final, test = document["config"], document["final"], document["test-set"]
    stopped = document["stopped"]
    return [
        "# Federated fraud detection: run report",
        "",
        f"Data: {config.get('data') or 'client CSVs'}. Clients: "
        f"{', '.join(sorted(document['federation']['clients']))}. "
        f"Server test set: {test['rows']} providers, {test['positives']} fraudulent "
        "(held by the server only, never used for training or for choosing the threshold).",
        "",
        f"Model: log1p, standardisation with federated global statistics, logistic regression "
        f"(C={config['C']}, penalty {config['penalty']}); class balance: "
        f"{_BALANCE[config.get('class-balance', 'smote')]}; FedAvg "
        f"for at most {config['num-server-rounds']} rounds, stopping once a round changes the parameters by less "
        f"than {config['convergence-tolerance']:g} of their length, {config['local-iterations']} local "
        f"iteration(s) per round, shared curvature {'on' if config['share-curvature'] else 'off'}.",
        "",
        f"Training {stopped['reason']}." if stopped else f"Training ended after round {final['round']}.",
        "",
        "## Final model on the server's test set",
        "",
        "| ROC-AUC | PR-AUC | log loss | threshold | accuracy | precision | recall | F1 |",
        "|---|---|---|---|---|---|---|---|",
        "| " + " | ".join(_fmt(final.get(k)) for k in FINAL_COLUMNS) + " |",
        "",
        "The threshold maximises F1 on the clients' pooled validation parts (from score histograms).",
    ]


def _rounds(rounds: list[dict]) -> list[str]:
    lines = [
        "",
        "## Rounds",
        "",
        "| round | seconds | clients | ROC-AUC | PR-AUC | log loss | F1 at threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in rounds:
        test = entry["test"]
        lines.append(
            f"| {entry['round']} | {entry['seconds']:.1f} | {len(entry['clients'])} | {_fmt(test.get('roc-auc'))} | "
            f"{_fmt(test.get('pr-auc'))} | {_fmt(test.get('log-loss'))} | {_fmt(test.get('f1'))} |"
        )
    return lines


def _clients(document: dict) -> list[str]:
    federation = document["federation"]
    lines = [
        "",
        "## Clients (final model on each client's own validation part)",
        "",
        "| client | training rows | fraudulent | validation rows | ROC-AUC | PR-AUC | F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(federation["clients"]):
        validation = document["clients-validation"].get(name, {})
        lines.append(
            f"| {name} | {federation['training-rows'][name]} | {federation['training-positives'][name]} | "
            f"{validation.get('rows', '-')} | {_fmt(validation.get('roc-auc'))} | {_fmt(validation.get('pr-auc'))} | "
            f"{_fmt(validation.get('f1'))} |"
        )
    return lines


def _dropouts(dropouts: list[dict]) -> list[str]:
    lines = ["", "## Clients that dropped out", ""]
    if not dropouts:
        return [*lines, "None: every client took part in every round."]
    return lines + [
        f"- {d['client']}: round {d['round']} ({d['stage']}), {d['seconds_into_run']:.0f} s into the run: {d['reason']}"
        for d in dropouts
    ]


def write_outputs(
    out_dir: Path, *, model, history: History, weights: Weights, membership: Membership, settings: dict
) -> dict:
    import joblib

    out_dir.mkdir(parents=True, exist_ok=True)
    document = metrics_document(history, membership, settings)
    with atomic_path(out_dir / MODEL_FILE) as temporary:
        joblib.dump(model, temporary)
    _plot_rounds(out_dir / ROUNDS_PLOT, history)
    _plot_curves(out_dir / CURVES_PLOT, history.test.y, history.scores(weights), document["final"]["threshold"])
    write_text_atomic(out_dir / METRICS_FILE, json.dumps(document, indent=2))
    write_text_atomic(out_dir / REPORT_FILE, report_markdown(document))
    return document
