"""The run's deliverables: model.joblib, metrics.json, report.md and plots, each written atomically."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fl_runtime.app.history import History
from fl_runtime.app.run_settings import CURVES_PLOT, METRICS_FILE, MODEL_FILE, REPORT_FILE, ROUNDS_PLOT, RunSettings
from fl_runtime.app.transcript import TRANSCRIPT_FILE
from fl_runtime.files import atomic_path, write_bytes_atomic, write_text_atomic
from fl_runtime.learning.families import family
from fl_runtime.learning.task import TrainingPlan


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def metrics_document(history: History, members: list[str], settings: RunSettings) -> dict:
    """metrics.json: every figure about the members' data is a total over the members who answered."""
    final_round = history.final_round
    return _json_safe(
        {
            "config": settings.summary(),
            "model": model_record(settings.plan),
            "federation": {
                "members": members,
                "min-clients": settings.min_clients,
                **history.totals,
            },
            "server-saw": [
                {"question": seen.question, "members": seen.members, "quantities": seen.quantities}
                for seen in history.seen
            ],
            "test-set": {"rows": history.test.n_rows, "positives": history.test.n_positive},
            "rounds": [asdict(history.rounds[r]) for r in sorted(history.rounds)],
            "final": {"round": final_round, **history.rounds[final_round].test},
            "stopped": history.stopped,
            "validation": history.validation,
            "dropouts": history.dropouts,
            "operational": OPERATIONAL,
        }
    )


def model_record(plan: TrainingPlan) -> dict:
    """The model family, what its versions are called and what it is, in words (the family says)."""
    machine = family(plan.family)
    return {"family": machine.name, "version": machine.version_name, "description": machine.describe(plan)}


# what the server learns of each member that is not a total, and why it stays unmasked
OPERATIONAL = (
    "Unmasked and per member, because the relay cannot work without them and they hold no value of the data: "
    "which members answered each step, when (the time breakdown per exchange), and why a member dropped out "
    "(its refusal names a rule, a field or a member, never a value)."
)


def _plot_rounds(path: Path, history: History, version: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = sorted(history.rounds)
    figure, (quality, loss) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("roc-auc", "pr-auc", "f1"):
        quality.plot(rounds, [history.rounds[r].test.get(key, np.nan) for r in rounds], marker="o", label=key.upper())
    quality.set(xlabel=version, ylabel="test set", title="Global model on the server's test set", ylim=(0, 1))
    quality.xaxis.get_major_locator().set_params(integer=True)
    loss.xaxis.get_major_locator().set_params(integer=True)
    quality.legend()
    loss.plot(rounds, [history.rounds[r].test["log-loss"] for r in rounds], marker="o", label="test log loss")
    train_loss = [history.rounds[r].train_loss for r in rounds]
    if any(v is not None for v in train_loss):
        loss.plot(
            rounds,
            [np.nan if v is None else v for v in train_loss],
            marker="s",
            label="members' training loss (total; oversampled, balanced)",
        )
    validation_loss = [history.rounds[r].validation.get("log-loss", np.nan) for r in rounds]
    loss.plot(rounds, validation_loss, marker="^", label="members' validation loss (total)")
    loss.set(xlabel=version, ylabel="log loss", title="Log loss")
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


def _disclosure(document: dict) -> list[str]:
    """What left each member, for the privacy review a data owner will ask for."""
    k = document["federation"]["min-clients"]
    return [
        "No raw row left a member. Each member sent, over TLS from an authenticated SuperNode, only masked "
        "vectors signed with its per-run key (what each held: the model paragraph above, and the table of what the "
        "server saw). The server relayed every member's masked vector to every member; the masks "
        "cancel only in the total, so the server and the members saw totals over at least "
        f"{k} members (the server's min-clients; each member enforces its own k), never one member's values.",
        "",
        "The totals themselves are not anonymised: with two members, each learns the other's values by subtracting "
        "its own; a server colluding with one member can steer the model the others answer at, within that "
        "member's ranges (see docs/trust-model.md). No differential privacy is applied.",
        "",
        OPERATIONAL,
    ]


def _server_saw(document: dict) -> list[str]:
    lines = [
        "",
        "## What the server saw",
        "",
        "| step | members in the total | quantities (values, fixed-point scale) |",
        "|---|---|---|",
    ]
    for seen in document["server-saw"]:
        quantities = ", ".join(f"{q['quantity']} ({q['values']}, {q['scale']})" for q in seen["quantities"])
        lines.append(f"| {seen['question']} | {seen['members']} | {quantities} |")
    return lines


FINAL_COLUMNS = ("roc-auc", "pr-auc", "log-loss", "threshold", "accuracy", "precision", "recall", "f1")


def report_markdown(document: dict) -> str:
    lines = [
        *_summary(document),
        *_rounds(document["rounds"], document["model"]["version"]),
        *_validation(document),
        *_dropouts(document["dropouts"]),
        *_server_saw(document),
        "",
        "## What left each member",
        "",
        *_disclosure(document),
        "",
        f"![metrics per round]({ROUNDS_PLOT})",
        "",
        f"![ROC and PR curves]({CURVES_PLOT})",
        "",
    ]
    return "\n".join(lines)


def _summary(document: dict) -> list[str]:
    config, final, test = document["config"], document["final"], document["test-set"]
    stopped, version_label = document["stopped"], document["model"]["version"]
    return [
        "# Federated fraud detection: run report",
        "",
        f"Data: {config.get('data') or 'client CSVs'}. Members: "
        f"{', '.join(sorted(document['federation']['members']))}: "
        f"{document['federation'].get('training-rows', '-')} training rows in total, "
        f"{document['federation'].get('training-positives', '-')} fraudulent. "
        f"Server test set: {test['rows']} providers, {test['positives']} fraudulent "
        "(held by the server only, never used for training or for choosing the threshold).",
        "",
        f"Model: {document['model']['description']}",
        "",
        f"Training {stopped['reason']}." if stopped else f"Training ended with {version_label} {final['round']}.",
        "",
        "## Final model on the server's test set",
        "",
        "| ROC-AUC | PR-AUC | log loss | threshold | accuracy | precision | recall | F1 |",
        "|---|---|---|---|---|---|---|---|",
        "| " + " | ".join(_fmt(final.get(k)) for k in FINAL_COLUMNS) + " |",
        "",
        "The threshold maximises F1 on the members' pooled validation parts (from the totals of their score "
        "histograms).",
    ]


def _rounds(rounds: list[dict], version: str) -> list[str]:
    lines = [
        "",
        "## Model versions on the server's test set",
        "",
        f"| {version} | seconds | members | ROC-AUC | PR-AUC | log loss | F1 at threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in rounds:
        test = entry["test"]
        lines.append(
            f"| {entry['round']} | {entry['seconds']:.1f} | {len(entry['members'])} | {_fmt(test.get('roc-auc'))} | "
            f"{_fmt(test.get('pr-auc'))} | {_fmt(test.get('log-loss'))} | {_fmt(test.get('f1'))} |"
        )
    return lines


def _validation(document: dict) -> list[str]:
    validation = document["validation"]
    return [
        "",
        "## The final model on the members' pooled validation parts (totals)",
        "",
        "| validation rows | PR-AUC | log loss | precision | recall | F1 |",
        "|---|---|---|---|---|---|",
        f"| {validation.get('rows', '-')} | {_fmt(validation.get('pr-auc'))} | {_fmt(validation.get('log-loss'))} | "
        f"{_fmt(validation.get('precision'))} | {_fmt(validation.get('recall'))} | {_fmt(validation.get('f1'))} |",
        "",
        "Each member's own validation metrics stay in its own account (its client_view.json).",
    ]


def _dropouts(dropouts: list[dict]) -> list[str]:
    lines = ["", "## Members that dropped out", ""]
    if not dropouts:
        return [*lines, "None: every member took part in every step."]
    return lines + [
        f"- {d['member']}: {d['question']}, attempt {d['attempt']}, {d['seconds-into-run']:.0f} s into the run: "
        f"{d['reason']}"
        for d in dropouts
    ]


def write_outputs(
    out_dir: Path, *, model, history: History, members: list[str], settings: RunSettings, transcript: bytes
) -> dict:
    import joblib

    out_dir.mkdir(parents=True, exist_ok=True)
    document = metrics_document(history, members, settings)
    with atomic_path(out_dir / MODEL_FILE) as temporary:
        joblib.dump(model, temporary)
    _plot_rounds(out_dir / ROUNDS_PLOT, history, document["model"]["version"])
    _plot_curves(out_dir / CURVES_PLOT, history.test.y, history.scores(), document["final"]["threshold"])
    write_bytes_atomic(out_dir / TRANSCRIPT_FILE, transcript)
    write_text_atomic(out_dir / METRICS_FILE, json.dumps(document, indent=2))
    write_text_atomic(out_dir / REPORT_FILE, report_markdown(document))
    return document
