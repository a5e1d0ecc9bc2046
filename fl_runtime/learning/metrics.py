"""Evaluation: ranking metrics, calibrated log loss, and decisions at a threshold chosen on validation.

The decision threshold is chosen from score histograms that clients compute on their validation
parts (per-class counts in 200 bins of the calibrated fraud probability). The server sums them and
picks the bin edge that maximises F1: no provider's score leaves a client, and the server's test set
is never used to choose the threshold it is then evaluated at.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HISTOGRAM_BINS = 200
RANKING = ("roc-auc", "pr-auc", "log-loss")
DECISIONS = ("threshold", "accuracy", "precision", "recall", "f1")


@dataclass(frozen=True)
class ScoreHistogram:
    """Counts of positive and negative rows per probability bin; adding them pools validation sets."""

    positive: np.ndarray
    negative: np.ndarray

    @classmethod
    def of(cls, y: np.ndarray, p: np.ndarray) -> ScoreHistogram:
        edges = np.linspace(0.0, 1.0, HISTOGRAM_BINS + 1)
        return cls(np.histogram(p[y == 1], bins=edges)[0], np.histogram(p[y == 0], bins=edges)[0])

    @classmethod
    def empty(cls) -> ScoreHistogram:
        return cls(np.zeros(HISTOGRAM_BINS, dtype=np.int64), np.zeros(HISTOGRAM_BINS, dtype=np.int64))

    def __add__(self, other: ScoreHistogram) -> ScoreHistogram:
        return ScoreHistogram(self.positive + other.positive, self.negative + other.negative)

    def decisions(self, threshold: float) -> dict[str, float]:
        """Accuracy, precision, recall and F1 when rows scoring at or above ``threshold`` are flagged.

        Exact when the threshold is a bin edge, as ``f1_threshold`` returns.
        """
        first = round(threshold * HISTOGRAM_BINS)
        true_pos, false_pos = float(self.positive[first:].sum()), float(self.negative[first:].sum())
        positives, total = float(self.positive.sum()), float(self.positive.sum() + self.negative.sum())
        false_neg = positives - true_pos
        true_neg = total - positives - false_pos
        return _decisions(threshold, true_pos, false_pos, false_neg, true_neg)

    def pr_auc(self) -> float:
        """Average precision of these rows' scores with each bin's rows tied (NaN without positives):
        what ``average_precision_score`` gives scores rounded down to the bins, from counts alone."""
        positives = float(self.positive.sum())
        if positives == 0:
            return math.nan
        true_pos = np.cumsum(self.positive[::-1]).astype(np.float64)
        flagged = true_pos + np.cumsum(self.negative[::-1])
        precision = np.divide(true_pos, flagged, out=np.ones_like(true_pos), where=flagged > 0)
        return float(np.sum(self.positive[::-1] / positives * precision))

    def f1_threshold(self) -> float:
        """The bin edge that maximises F1 on these rows (0.5 if they hold no positives)."""
        positives = float(self.positive.sum())
        if positives == 0:
            return 0.5
        true_pos = np.cumsum(self.positive[::-1])[::-1].astype(np.float64)
        false_pos = np.cumsum(self.negative[::-1])[::-1].astype(np.float64)
        f1 = 2 * true_pos / (2 * true_pos + false_pos + (positives - true_pos))
        return float(np.argmax(f1) / HISTOGRAM_BINS)


def _decisions(
    threshold: float, true_pos: float, false_pos: float, false_neg: float, true_neg: float
) -> dict[str, float]:
    flagged = true_pos + false_pos
    positives = true_pos + false_neg
    return {
        "threshold": float(threshold),
        "accuracy": (true_pos + true_neg) / max(true_pos + false_pos + false_neg + true_neg, 1.0),
        "precision": true_pos / flagged if flagged else 0.0,
        "recall": true_pos / positives if positives else 0.0,
        "f1": 2 * true_pos / (2 * true_pos + false_pos + false_neg) if true_pos else 0.0,
    }


def summed_log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Summed log loss of probabilities ``p`` (clipped as scikit-learn's) on labels ``y``: a member's validation sum."""
    p = np.clip(p, 1e-15, 1 - 1e-15)
    return float(-np.sum(y * np.log(p) + (1 - y) * np.log1p(-p)))


def validation_findings(totals: dict[str, np.ndarray]) -> dict:
    """What the members' summed validation answers say: rows, mean log loss and, where sent, the pooled score
    histogram (every family's answers name these quantities the same way)."""
    if "validation-rows" not in totals:
        return {}
    rows = int(totals["validation-rows"][0])
    found: dict = {"validation-rows": rows, "validation-log-loss": float(totals["validation-loss"][0]) / max(rows, 1)}
    if "histogram-positive" in totals:
        found["histogram"] = ScoreHistogram(
            np.rint(totals["histogram-positive"]).astype(np.int64),
            np.rint(totals["histogram-negative"]).astype(np.int64),
        )
    return found


def ranking_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Threshold-free quality: ROC-AUC, PR-AUC (average precision) and log loss."""
    from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

    both_classes = len(np.unique(y)) == 2
    return {
        "roc-auc": float(roc_auc_score(y, p)) if both_classes else math.nan,
        "pr-auc": float(average_precision_score(y, p)) if both_classes else math.nan,
        "log-loss": float(log_loss(y, np.clip(p, 1e-15, 1 - 1e-15), labels=[0, 1])),
    }


def decision_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = p >= threshold
    positive = y == 1
    return _decisions(
        threshold,
        float(np.sum(flagged & positive)),
        float(np.sum(flagged & ~positive)),
        float(np.sum(~flagged & positive)),
        float(np.sum(~flagged & ~positive)),
    )
