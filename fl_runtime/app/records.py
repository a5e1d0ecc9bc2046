"""How the task's objects travel in Flower records (ArrayRecord, ConfigRecord, MetricRecord).

One place for every key the ServerApp and the ClientApp exchange, so the two sides cannot drift.

Per round, a client receives the global weights (and, with shared curvature, the federation's
curvature) plus the round's config and the global statistics; it replies with its updated weights,
its own curvature, its example count and the score histograms of the weights it received on its
validation part. Nothing else leaves a client: no rows, no scores of individual providers.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fl_runtime.learning.metrics import ScoreHistogram
from fl_runtime.learning.model import Weights
from fl_runtime.learning.stats import FeatureMoments, GlobalStats
from fl_runtime.learning.task import ClientUpdate

# message types the ClientApp answers
QUERY_MOMENTS = "query.moments"
# the records of a message's content
ARRAYS, CONFIG, METRICS = "arrays", "config", "metrics"

EXAMPLES = "num-examples"  # FedAvg's weighting key
TRAIN_LOSS = "train-loss"
VALIDATION_ROWS = "validation-rows"
HISTOGRAM_POSITIVE = "histogram-positive"
HISTOGRAM_NEGATIVE = "histogram-negative"
USE_SHARED_CURVATURE = "use-shared-curvature"
# wall-clock epochs reported by the ClientApp, for the per-round time breakdown (bench/, report)
TASK_START = "time-task-start"
HANDLER_START = "time-handler-start"
HANDLER_END = "time-handler-end"


def arrays_of(content: RecordDict) -> ArrayRecord:
    return content.array_records[ARRAYS]


def config_of(content: RecordDict) -> ConfigRecord:
    return content.config_records[CONFIG]


def metrics_of(content: RecordDict) -> MetricRecord:
    return content.metric_records[METRICS]


def number(record: Mapping[str, Any], key: str) -> float:
    """A numeric value of a config or metric record (Flower types record values as a union)."""
    value = record[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"record value {key!r} is {type(value).__name__}, not a number")
    return float(value)


def whole(record: Mapping[str, Any], key: str) -> int:
    value = number(record, key)
    if not value.is_integer():
        raise TypeError(f"record value {key!r} is {value}, not a whole number")
    return int(value)


def weights_record(weights: Weights, curvature: np.ndarray | None = None) -> ArrayRecord:
    arrays = {"coef": Array(weights.coef), "intercept": Array(weights.intercept)}
    if curvature is not None:
        arrays["curvature"] = Array(curvature)
    return ArrayRecord(arrays)


def read_weights(record: ArrayRecord) -> tuple[Weights, np.ndarray | None]:
    curvature = record["curvature"].numpy() if "curvature" in record else None
    return Weights(record["coef"].numpy(), record["intercept"].numpy()), curvature


POOLED_EXAMPLES = "pooled-examples"  # of the clients still taking part: their share of the pooled objective
CLASS_BALANCE = "stats-class-balance"  # the method the statistics (calibration, pooled N) were computed for


def stats_config(stats: GlobalStats) -> dict:
    return {
        "feature-mean": [float(v) for v in stats.mean],
        "feature-scale": [float(v) for v in stats.scale],
        "negatives-per-positive": float(stats.negatives_per_positive),
        "prior-logit": float(stats.prior_logit),
        POOLED_EXAMPLES: int(stats.pooled_examples),
        CLASS_BALANCE: stats.class_balance,
    }


def read_stats(config: ConfigRecord) -> GlobalStats:
    return GlobalStats(
        np.asarray(config["feature-mean"], dtype=np.float64),
        np.asarray(config["feature-scale"], dtype=np.float64),
        number(config, "negatives-per-positive"),
        number(config, "prior-logit"),
        whole(config, POOLED_EXAMPLES),
        str(config[CLASS_BALANCE]),
    )


def moments_records(name: str, features: tuple[str, ...], moments: FeatureMoments) -> dict:
    return {
        "moments": ArrayRecord({"total": Array(moments.total), "total-squares": Array(moments.total_squares)}),
        "info": ConfigRecord(
            {"name": name, "features": list(features), "n-rows": moments.n_rows, "n-positive": moments.n_positive}
        ),
    }


def read_moments(content: RecordDict) -> tuple[str, tuple[str, ...], FeatureMoments]:
    info, arrays = content.config_records["info"], content.array_records["moments"]
    moments = FeatureMoments(
        whole(info, "n-rows"), whole(info, "n-positive"), arrays["total"].numpy(), arrays["total-squares"].numpy()
    )
    features = info["features"]
    if not isinstance(features, list):
        raise TypeError(f"record value 'features' is {type(features).__name__}, not a list")
    return str(info["name"]), tuple(str(name) for name in features), moments


def histogram_metrics(histogram: ScoreHistogram) -> dict:
    return {
        HISTOGRAM_POSITIVE: [int(v) for v in histogram.positive],
        HISTOGRAM_NEGATIVE: [int(v) for v in histogram.negative],
    }


def read_histogram(metrics: MetricRecord) -> ScoreHistogram:
    return ScoreHistogram(
        np.asarray(metrics[HISTOGRAM_POSITIVE], dtype=np.int64), np.asarray(metrics[HISTOGRAM_NEGATIVE], dtype=np.int64)
    )


def update_metrics(update: ClientUpdate, histogram: ScoreHistogram, validation_rows: int, timing: dict) -> MetricRecord:
    return MetricRecord(
        {
            EXAMPLES: update.n_examples,
            TRAIN_LOSS: update.train_loss,
            VALIDATION_ROWS: validation_rows,
            **histogram_metrics(histogram),
            **timing,
        }
    )


def timing_metrics(task_start: float, handler_start: float) -> dict:
    return {TASK_START: task_start, HANDLER_START: handler_start, HANDLER_END: time.time()}
