"""The published model's inference script for SageMaker's scikit-learn container: ``code/inference.py`` of the
run's ``model.tar.gz`` (``model_package.model_archive`` writes it).

The container runs this file as ``SAGEMAKER_PROGRAM`` from ``SAGEMAKER_SUBMIT_DIRECTORY`` (the registered model
package sets both to ``code/``) and calls ``model_fn(model_dir)`` once per worker, then per request ``input_fn``,
``predict_fn`` and ``output_fn``. The container has its own Python with scikit-learn, NumPy and joblib, but not
``fl_runtime``: this file imports the standard library, NumPy, joblib and ``explain`` only, the copy of
``fl_runtime/learning/explain.py`` the archive carries beside it. It is a file shipped as data, never imported
from ``fl_runtime``. A tree model (``BoostedTreesModel``) unpickles from the NumPy-only tree modules the archive
carries under ``code/fl_runtime/`` and explains itself (exact TreeSHAP contributions to the margin).

Requests, one provider per row, raw values as the data CSVs hold them (finite, not negative; an empty CSV cell or
JSON null is a missing value, which the model imputes):

- ``text/csv``: the model's features in its order, or, when the first line is a header (its first cell is not a
  number, or is empty before column names), columns picked by name: every feature the model needs must be there;
  other columns (the label, an id) are ignored, so rows can be sent straight from a data file.
- ``application/json``: ``{"instances": [[...], ...]}`` in the model's feature order, or instances that are
  objects keyed by feature name (other keys ignored, as in a CSV header); a bare list of instances works too.

Answers (``Accept``; none or ``*/*`` means JSON), each provider's fraud probability, whether it is flagged (at
or above the threshold the run chose on the clients' validation data, carried by the model) and the three
features that pushed its score up most, with their exact contributions to the logit (``explain``):

- ``application/json``: ``{"threshold": t, "predictions": [{"fraud_probability": p, "flagged": true,
  "reasons": [{"feature": name, "contribution": c}, ...]}, ...]}``;
- ``text/csv``: one line per provider, no header (batch transform joins the answers of many requests):
  ``fraud_probability,flagged(1/0),feature_1,contribution_1,feature_2,contribution_2,feature_3,contribution_3``.

A request that cannot be scored raises ``ValueError`` naming the problem (line, column, instance, feature).
sagemaker-containers, which serves this script in the single-model container, wraps any exception of these
functions as its ``ClientError`` and lets it reach Flask, which answers HTTP 500: InvokeEndpoint reports a
``ModelError`` and the message, with its traceback, is in the endpoint's CloudWatch log.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from typing import Any

import explain  # type: ignore[import-not-found]  # code/explain.py, beside this script in model.tar.gz
import joblib
import numpy as np

MODEL_FILE = "model.joblib"
CSV, JSON = "text/csv", "application/json"
REASONS = 3


@dataclass(frozen=True)
class Model:
    pipeline: Any
    features: tuple[str, ...]
    threshold: float


@dataclass(frozen=True)
class Rows:
    """What ``input_fn`` read: each row's values by position (a list) or by name (a dict, from a CSV header or a
    JSON object), and how messages name the row. ``predict_fn`` puts them in the model's feature order: only it
    knows the features, so the values are checked there, each message naming the row and the feature."""

    rows: list[list[Any] | dict[str, Any]]
    labels: list[str]

    def ordered(self, features: tuple[str, ...]) -> np.ndarray:
        return np.asarray([_ordered(row, label, features) for row, label in zip(self.rows, self.labels)])


@dataclass(frozen=True)
class Scored:
    probabilities: np.ndarray  # (rows,)
    reasons: np.ndarray  # (rows, REASONS): feature indices, the strongest push upward first
    contributions: np.ndarray  # (rows, REASONS)
    model: Model

    @property
    def flagged(self) -> np.ndarray:
        return self.probabilities >= self.model.threshold


def model_fn(model_dir: str) -> Model:
    """Load the model and check, at start-up rather than per request, that it is one this script can explain."""
    pipeline = joblib.load(os.path.join(model_dir, MODEL_FILE))
    names = getattr(pipeline, "feature_names_in_", None)
    if names is None:
        raise ValueError(f"{MODEL_FILE} does not name its features: not a model this project published")
    model = Model(pipeline, tuple(str(name) for name in names), explain.threshold(pipeline))
    explain.explain(pipeline, np.zeros((1, len(model.features))))  # its steps are the ones explain reads
    return model


def input_fn(request_body: str | bytes, content_type: str) -> Rows:
    if isinstance(request_body, bytes | bytearray):
        try:
            request_body = bytes(request_body).decode("utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"the request body is not UTF-8 text ({error})") from None
    kind = _media_type(content_type)
    if kind == CSV:
        rows = _csv_rows(request_body)
    elif kind == JSON:
        rows = _json_rows(request_body)
    else:
        raise ValueError(f"content type {content_type!r} is not supported: send {CSV} or {JSON}")
    if not rows.rows:
        raise ValueError("the request holds no rows")
    return rows


def predict_fn(data: Rows, model: Model) -> Scored:
    explained = explain.explain(model.pipeline, data.ordered(model.features))
    reasons, contributions = explained.top(REASONS)
    return Scored(explained.probabilities, reasons, contributions, model)


def output_fn(prediction: Scored, accept: str | None) -> tuple[str, str]:
    """(body, content type): the container answers with the tuple's content type."""
    kind = _accepted(accept)
    features = prediction.model.features
    rows = list(zip(prediction.probabilities, prediction.flagged, prediction.reasons, prediction.contributions))
    if kind == JSON:
        predictions = [
            {
                "fraud_probability": float(probability),
                "flagged": bool(flagged),
                "reasons": [{"feature": features[i], "contribution": float(c)} for i, c in zip(reasons, values)],
            }
            for probability, flagged, reasons, values in rows
        ]
        return json.dumps({"threshold": prediction.model.threshold, "predictions": predictions}), JSON
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    for probability, flagged, reasons, values in rows:
        pairs = [item for i, c in zip(reasons, values) for item in (features[i], repr(float(c)))]
        writer.writerow([repr(float(probability)), int(flagged), *pairs])
    return text.getvalue(), CSV


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def _accepted(accept: str | None) -> str:
    """The first of JSON and CSV that ``accept`` admits, in its order; JSON when it names no type."""
    for item in (accept or "*/*").split(","):
        kind = _media_type(item)
        if kind in (JSON, CSV):
            return kind
        if kind in ("*/*", "application/*", ""):
            return JSON
        if kind == "text/*":
            return CSV
    raise ValueError(f"accept {accept!r} is not supported: ask for {JSON} or {CSV}")


def _csv_rows(text: str) -> Rows:
    """A first line whose first cell is not a number is a header (the rows are then read by name); so is one whose
    first cell is empty and that names columns after it (pandas writes its index so), where a data row's empty
    first cell is a missing value."""
    lines = [(number, [cell.strip() for cell in row]) for number, row in enumerate(csv.reader(io.StringIO(text)), 1)]
    lines = [(number, row) for number, row in lines if any(row)]
    if not lines or not _is_header(lines[0][1]):
        return Rows([row for _, row in lines], [f"CSV line {number}" for number, _ in lines])
    (_, header), *lines = lines
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ValueError(f"the CSV header names {', '.join(repeated)} more than once")
    for number, row in lines:
        if len(row) != len(header):
            raise ValueError(f"CSV line {number} has {len(row)} values, the header names {len(header)} columns")
    return Rows([dict(zip(header, row)) for _, row in lines], [f"CSV line {number}" for number, _ in lines])


def _json_rows(text: str) -> Rows:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"the request body is not JSON ({error})") from None
    instances = document.get("instances") if isinstance(document, dict) else document
    if not isinstance(instances, list):
        raise ValueError('the JSON request is neither {"instances": [...]} nor a list of instances')
    for index, instance in enumerate(instances, 1):
        if not isinstance(instance, list | dict):
            raise ValueError(f"instance {index} is neither a list of values nor an object keyed by feature name")
    return Rows(instances, [f"instance {index}" for index in range(1, len(instances) + 1)])


def _ordered(row: list[Any] | dict[str, Any], label: str, features: tuple[str, ...]) -> list[float]:
    if isinstance(row, dict):
        absent = [name for name in features if name not in row]
        if absent:
            listed = ", ".join(absent[:5]) + (", ..." if len(absent) > 5 else "")
            raise ValueError(f"{label} has no value for {len(absent)} of the model's features: {listed}")
        return [_number(row[name], f"{label}, {name}") for name in features]
    if len(row) != len(features):
        raise ValueError(
            f"{label} has {len(row)} values; the model takes {len(features)}, its features in order "
            "(or name them: a CSV header, JSON objects)"
        )
    return [_number(value, f"{label}, value {i} ({name})") for i, (value, name) in enumerate(zip(row, features), 1)]


def _is_header(cells: list[str]) -> bool:
    first, rest = cells[0], cells[1:]
    if first:
        return not _is_number(first)
    return any(cell and not _is_number(cell) for cell in rest)


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _number(value: Any, where: str) -> float:
    """A raw feature value as the data contract has them: a finite number, not negative; missing (an empty CSV
    cell, JSON null) is NaN, which the model imputes."""
    if value is None or value == "":
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{where}: {value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{where}: {value!r} is not a finite, non-negative number")
    return number
