"""Flower ClientApp: one client's side of the federation, on its own data.

The SuperNode starts a fresh process for every message, so this module imports only what it needs to
route messages (heavy libraries load inside the handlers that use them), and the client keeps its
prepared rows (standardised, oversampled) in ``context.state``, which the SuperNode persists across
the messages of a run: SMOTE and the CSV read happen once per run, not once per round.

Node config (``flower-supernode --node-config``):
- ``data-path``: the client's CSV (required);
- ``name``: how reports name this client (default: the CSV's file name without extension).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl_runtime import records
from fl_runtime.data import check_trainable, read_csv
from fl_runtime.stats import GlobalStats
from fl_runtime.task import ClientData, PreparedClient

app = ClientApp()


def _process_start() -> float:
    """When this process started (wall clock): the SuperNode starts one per message (Linux /proc)."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            return time.time() - float(uptime.read().split()[0]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()

PREPARED = "prepared"


def _node_data_path(context: Context) -> Path:
    value = context.node_config.get("data-path")
    if not value:
        raise ValueError("this SuperNode has no 'data-path' in its --node-config; pass data-path=\"/path/to/client.csv\"")
    return Path(str(value))


def _client_name(context: Context) -> str:
    return str(context.node_config.get("name") or _node_data_path(context).stem)


def _client_data(context: Context) -> ClientData:
    data = read_csv(_node_data_path(context))
    check_trainable(data)
    return ClientData.split(data, seed=int(context.run_config["seed"]))


def _prepared(context: Context, stats: GlobalStats) -> PreparedClient:
    """The client's rows ready for training; computed on the first round, then read from state."""
    if PREPARED in context.state:
        arrays = context.state[PREPARED]
        return PreparedClient(
            arrays["train-Z"].numpy(),
            arrays["train-y"].numpy(),
            arrays["validation-Z"].numpy(),
            arrays["validation-y"].numpy(),
            stats.pooled_examples,
        )
    prepared = _client_data(context).prepare(stats, seed=int(context.run_config["seed"]))
    context.state[PREPARED] = ArrayRecord(
        {
            "train-Z": Array(prepared.train_Z),
            "train-y": Array(prepared.train_y),
            "validation-Z": Array(prepared.validation_Z),
            "validation-y": Array(np.asarray(prepared.validation_y, dtype=np.float64)),
        }
    )
    return prepared


@app.query("moments")
def moments(msg: Message, context: Context) -> Message:
    """Counts, sums and sums of squares of log1p(features) over the training part: nothing else."""
    client = _client_data(context)
    content = RecordDict(records.moments_records(_client_name(context), client.train.features, client.moments()))
    return Message(content=content, reply_to=msg)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Score the incoming global model on validation (for the threshold), then train from it."""
    started = time.time()
    config = msg.content["config"]
    stats = records.read_stats(config)
    weights, shared_curvature = records.read_weights(msg.content["arrays"])
    prepared = _prepared(context, stats)
    histogram = prepared.histogram(weights, stats.prior_logit)
    update = prepared.update(
        weights, records.read_train_config(config), shared_curvature if config[records.USE_SHARED_CURVATURE] else None
    )
    arrays = records.weights_record(update.weights, update.curvature if shared_curvature is not None else None)
    metrics = records.update_metrics(update, histogram, len(prepared.validation_y), records.timing_metrics(_process_start(), started))
    return Message(content=RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The final global model on this client's validation part: ranking metrics and histograms."""
    started = time.time()
    stats = records.read_stats(msg.content["config"])
    weights, _ = records.read_weights(msg.content["arrays"])
    prepared = _prepared(context, stats)
    metrics = {
        records.EXAMPLES: len(prepared.validation_y),
        **prepared.validation_metrics(weights, stats.prior_logit),
        **records.histogram_metrics(prepared.histogram(weights, stats.prior_logit)),
        **records.timing_metrics(_process_start(), started),
    }
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)

