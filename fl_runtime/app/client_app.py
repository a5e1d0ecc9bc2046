"""Flower ClientApp: one client's side of the federation, on its own data.

The client's runner (``fl_runtime.launch.runner``) calls this app in one warm process for every message
of a run, so the client keeps its prepared rows (standardised, oversampled) in memory, in this module,
from the first round to the last: the CSV read and SMOTE happen once per run, and nothing of the rows
travels through Flower's context. In a process started for one message (Flower's own executor) they
are prepared again from the client's files: slower, same result. Heavy libraries load inside the
handlers that use them.

Node config (``flower-supernode --node-config``), see ``NodeSettings``:
- ``data-path``: the client's CSV, split here into training and validation parts; or
  ``train-path`` and ``validation-path``: a split made beforehand (``stage-data`` does that);
- ``name``: how reports name this client (default: the CSV's file name without extension);
- ``model-dir`` (optional): where the final global model is saved as ``model.joblib`` when it arrives;
- ``progress-file`` (optional): one JSON line per message handled, for whoever supervises the node.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fl_runtime.app import records
from fl_runtime.app.run_settings import MODEL_FILE, TASK_STARTED_ENV
from fl_runtime.errors import OptionsError
from fl_runtime.learning.data import check_split, check_trainable, read_columns, read_csv
from fl_runtime.learning.model import Weights
from fl_runtime.learning.stats import GlobalStats
from fl_runtime.learning.task import ClientData, PreparedClient, TrainConfig

app = ClientApp()


def _task_start() -> float:
    """When this task started on the client (wall clock): the runner says when it took it; a process
    started for this one message started with it (Linux /proc)."""
    if TASK_STARTED_ENV in os.environ:
        return float(os.environ[TASK_STARTED_ENV])
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            return time.time() - float(uptime.read().split()[0]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()


# this client's rows, for one run at a time: split when the moments query reads them, then replaced by
# the prepared rows in the first round (the raw rows go); keyed by run, node and node config
_rows: dict[tuple[int, int, str], ClientData | PreparedClient] = {}


def _rows_key(context: Context) -> tuple[int, int, str]:
    return context.run_id, context.node_id, json.dumps(dict(context.node_config), sort_keys=True, default=str)


@dataclass(frozen=True)
class NodeSettings:
    """This SuperNode's ``--node-config``, validated."""

    name: str
    data: Path | tuple[Path, Path]  # one CSV to split here, or a (train, validation) split made beforehand
    model_dir: Path | None
    progress_file: Path | None

    @classmethod
    def of(cls, config: Mapping) -> NodeSettings:
        def path(key: str) -> Path | None:
            return Path(str(config[key])) if config.get(key) else None

        data, train, validation = path("data-path"), path("train-path"), path("validation-path")
        source: Path | tuple[Path, Path]
        if data is not None:
            source = data
        elif train is not None and validation is not None:
            source = (train, validation)
        else:
            raise OptionsError(
                'this SuperNode\'s --node-config needs data-path="/path/client.csv", or train-path and validation-path'
            )
        name = str(config.get("name") or (data or train or Path()).stem)
        return cls(name, source, path("model-dir"), path("progress-file"))

    @property
    def first_file(self) -> Path:
        """A CSV of this client's, for its column names."""
        return self.data if isinstance(self.data, Path) else self.data[1]

    def client_data(self, seed: int) -> ClientData:
        if isinstance(self.data, Path):
            data = read_csv(self.data)
            check_trainable(data)
            return ClientData.split(data, seed=seed)
        train, validation = read_csv(self.data[0]), read_csv(self.data[1])
        check_split(train, validation)  # the very check stage-data and the job's entry point make
        return ClientData(train, validation)

    def report(self, event: dict) -> None:
        if self.progress_file is not None:
            with self.progress_file.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({**event, "time": time.time()}) + "\n")


def _settings(context: Context) -> NodeSettings:
    return NodeSettings.of(context.node_config)


def _client_data(context: Context) -> ClientData:
    """The client's rows split into training and validation parts: read once per run."""
    key = _rows_key(context)
    rows = _rows.get(key)
    if not isinstance(rows, ClientData):
        _rows.clear()  # a new run: the previous run's rows go
        rows = _rows[key] = _settings(context).client_data(seed=records.whole(context.run_config, "seed"))
    return rows


def _prepared(context: Context, stats: GlobalStats) -> PreparedClient:
    """The client's rows ready for training: prepared on the run's first round, then kept in memory.
    The pooled example count follows the members left (it changes when a client drops out)."""
    key = _rows_key(context)
    rows = _rows.get(key)
    if not isinstance(rows, PreparedClient):
        rows = _client_data(context).prepare(stats, seed=records.whole(context.run_config, "seed"))
        _rows[key] = rows
    return dataclasses.replace(rows, pooled_examples=stats.pooled_examples)


def _save_final_model(settings: NodeSettings, context: Context, stats: GlobalStats, weights) -> str | None:
    """The final global model, as the same Pipeline the server saves, into this node's model-dir."""
    if settings.model_dir is None:
        return None
    import joblib

    from fl_runtime.files import atomic_path
    from fl_runtime.learning.model import build_pipeline

    features = read_columns(settings.first_file)  # the header only, not the rows again
    path = settings.model_dir / MODEL_FILE
    with atomic_path(path) as temporary:
        joblib.dump(build_pipeline(features, stats.mean, stats.scale, weights, stats.prior_logit), temporary)
    return str(path)


@app.query("moments")
def moments(msg: Message, context: Context) -> Message:
    """Counts, sums and sums of squares of log1p(features) over the training part: nothing else."""
    settings = _settings(context)
    client = _client_data(context)
    settings.report({"message": "moments", "rows": client.train.n_rows})
    content = RecordDict(records.moments_records(settings.name, client.train.features, client.moments()))
    return Message(content=content, reply_to=msg)


@dataclass(frozen=True)
class Incoming:
    """What a train or evaluate message brings: the round's config, the global statistics and model."""

    config: ConfigRecord
    stats: GlobalStats
    weights: Weights
    shared_curvature: np.ndarray | None

    @classmethod
    def of(cls, msg: Message) -> Incoming:
        config = records.config_of(msg.content)
        weights, curvature = records.read_weights(records.arrays_of(msg.content))
        return cls(config, records.read_stats(config), weights, curvature)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Score the incoming global model on validation (for the threshold), then train from it."""
    started = time.time()
    incoming = Incoming.of(msg)
    config, stats, weights, shared_curvature = (
        incoming.config,
        incoming.stats,
        incoming.weights,
        incoming.shared_curvature,
    )
    prepared = _prepared(context, stats)
    histogram = prepared.histogram(weights, stats.prior_logit)
    update = prepared.update(
        weights,
        TrainConfig.from_config(config),
        shared_curvature if bool(config[records.USE_SHARED_CURVATURE]) else None,
    )
    arrays = records.weights_record(update.weights, update.curvature if shared_curvature is not None else None)
    metrics = records.update_metrics(
        update, histogram, len(prepared.validation_y), records.timing_metrics(_task_start(), started)
    )
    _settings(context).report({"message": "train", "round": records.whole(config, "server-round")})
    return Message(content=RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The final global model on this client's validation part: ranking metrics and histograms."""
    started = time.time()
    incoming = Incoming.of(msg)
    config, stats, weights = incoming.config, incoming.stats, incoming.weights
    prepared = _prepared(context, stats)
    settings = _settings(context)
    validation = prepared.validation_metrics(weights, stats.prior_logit)
    model = _save_final_model(settings, context, stats, weights)
    settings.report(
        {"message": "evaluate", "round": records.whole(config, "server-round"), "model": model, **validation}
    )
    metrics = {
        records.EXAMPLES: len(prepared.validation_y),
        **validation,
        **records.histogram_metrics(prepared.histogram(weights, stats.prior_logit)),
        **records.timing_metrics(_task_start(), started),
    }
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
