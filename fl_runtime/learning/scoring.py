"""Scoring providers with a published model: fraud probability, the flag at the run's threshold, three reasons.

The rows to score follow the training data's contract (``data``: a header, numeric non-negative cells, each
error naming the file, the column and the line), with two differences: the label column is optional (when the
file has it, the model is also measured on the rows), and one named column that is not a feature, a provider
id, may be carried to the output verbatim. The feature columns must be the model's, in the model's order: a
file with the same columns in another order was not made for this model's pipeline, so it is refused, naming
the first misplaced column, rather than silently reordered.

Files of any size stream: Arrow reads ``BLOCK_BYTES`` of the file at a time, and each block is scored and
written before the next is read, so memory stays bounded by the block, not the file (``bench/bench_score.py``).
A file with labels is the exception the metrics need: its labels and probabilities are kept (9 bytes a row),
and scikit-learn's ranking metrics on them take about 100 MB more per million rows. A block that Arrow's column
reader does not accept as it stands sends the file through ``data``'s row-by-row reader from the start, which
names the offending cell (or scores the file, if the cell only looked unusual). The output is written
atomically: a failure leaves no file.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fl_runtime.errors import DataError
from fl_runtime.files import atomic_path
from fl_runtime.learning.csv_blocks import Block, arrow_options, checked_block
from fl_runtime.learning.data import LABEL, column_difference, read_header, reading, row_blocks
from fl_runtime.learning.explain import explain, threshold
from fl_runtime.learning.metrics import decision_metrics, ranking_metrics

REASONS = 3  # features named per provider: what an investigator reads first
PROBABILITY, FLAGGED = "fraud_probability", "flagged"
# CSV text per block, about 3,400 CMS rows. Arrow's streaming reader buffers dozens of blocks ahead whatever its
# threading (measured: 40 MiB at 1 MiB blocks, 440 MiB at 32 MiB), and larger blocks score no faster.
BLOCK_BYTES = 1 << 20


@dataclass(frozen=True)
class Model:
    """A published model, checked: its Pipeline, the columns it scores and the threshold it flags at."""

    pipeline: Any
    features: tuple[str, ...]
    threshold: float
    source: str


@dataclass(frozen=True)
class Scored:
    """What scoring a file found: rows, flagged rows, and the model's quality when the file has labels."""

    rows: int
    flagged: int
    threshold: float
    metrics: dict[str, float] | None  # ranking_metrics and decision_metrics at the threshold


def load_model(path: Path) -> Model:
    """A ``model.joblib`` the ServerApp published. Loading unpickles, which runs code: load only models you
    trust, such as your own run's."""
    import joblib

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        pipeline = joblib.load(path)
    except Exception as error:  # unpickling a file that is not a model can raise any kind of error
        raise DataError(
            f"{path}: not a model of this project: joblib cannot load it ({type(error).__name__}: {error})"
        ) from None
    return Model(pipeline, _features(path, pipeline), _threshold(path, pipeline), str(path))


def _features(path: Path, pipeline) -> tuple[str, ...]:
    """The columns the model scores, in its order; checks on the way that it is the Pipeline this project builds."""
    names = getattr(pipeline, "feature_names_in_", None)
    if names is None:
        raise DataError(f"{path}: not a model of this project (a {type(pipeline).__name__} naming no feature columns)")
    features = tuple(str(name) for name in names)
    try:
        explain(pipeline, np.zeros((1, len(features))))  # the steps and shapes every score relies on
    except ValueError as error:
        raise DataError(f"{path}: {error}") from None
    except (AttributeError, IndexError, TypeError) as error:
        raise DataError(f"{path}: not a model of this project ({type(error).__name__}: {error})") from None
    return features


def _threshold(path: Path, pipeline) -> float:
    try:
        return threshold(pipeline)
    except ValueError as error:
        raise DataError(
            f"{path}: {error}. A client's copy of the final model has none (the server chooses the threshold "
            "afterwards, on every client's validation data): score with the model.joblib of the run's outputs"
        ) from None


@dataclass(frozen=True)
class Layout:
    """The columns of a file to score: its header, whether it has the label, the column carried verbatim."""

    source: Path
    header: list[str]
    labelled: bool
    carried: str | None


def _layout(model: Model, path: Path, id_column: str | None) -> Layout:
    header = read_header(path, needs_label=False)
    if id_column is not None:
        if id_column == LABEL or id_column in model.features:
            what = "the label" if id_column == LABEL else "a feature of the model"
            raise DataError(f"{path}: id column '{id_column}' is {what}; name a column the model does not use")
        if id_column not in header:
            raise DataError(f"{path}: no id column '{id_column}' (columns: {', '.join(header[:5])}, ...)")
    features = [column for column in header if column not in (LABEL, id_column)]
    difference = column_difference(model.features, features)
    if difference:
        raise DataError(f"{path}: columns differ from the model's ({model.source}): {difference}")
    return Layout(path, header, LABEL in header, id_column)


def score_csv(model: Model, data: Path, out: Path, id_column: str | None = None) -> Scored:
    """Score every row of ``data`` into ``out`` (see the module docstring); DataError naming the problem, and no
    ``out``, if the file or a cell breaks the contract."""
    with reading(data):
        layout = _layout(model, data, id_column)
        with atomic_path(out) as temporary:
            try:
                return _write_scores(model, layout, _column_blocks(data, layout, model.features), temporary)
            except _NeedsRowReader:
                return _write_scores(model, layout, row_blocks(data, model.features, id_column), temporary)


class _NeedsRowReader(Exception):
    """A block Arrow's column reader does not accept as it stands: the row-by-row reader names the cell."""


def _column_blocks(path: Path, layout: Layout, features: tuple[str, ...]) -> Iterator[Block]:
    import pyarrow
    from pyarrow import csv as arrow_csv

    try:
        for batch in arrow_csv.open_csv(path, **arrow_options(layout.header, layout.carried, BLOCK_BYTES)):
            block = checked_block(batch, features, LABEL, layout.carried)
            if block is None:
                raise _NeedsRowReader
            yield block
    except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError):
        raise _NeedsRowReader from None


def _schema(carried: str | None, reasons: int):
    """The output's columns: the carried id, probability, flag, then each reason and its contribution."""
    import pyarrow

    ranked = [
        field
        for k in range(1, reasons + 1)
        for field in ((f"reason_{k}", pyarrow.string()), (f"reason_{k}_contribution", pyarrow.float64()))
    ]
    carried_field = [(carried, pyarrow.string())] if carried else []
    return pyarrow.schema([*carried_field, (PROBABILITY, pyarrow.float64()), (FLAGGED, pyarrow.int8()), *ranked])


def _write_scores(model: Model, layout: Layout, blocks: Iterable[Block], temporary: Path) -> Scored:
    import pyarrow
    from pyarrow import csv as arrow_csv

    reasons = min(REASONS, len(model.features))
    schema = _schema(layout.carried, reasons)
    features = pyarrow.array(model.features)
    rows = flagged = 0
    labels: list[np.ndarray] = []
    probabilities: list[np.ndarray] = []
    options = arrow_csv.WriteOptions(quoting_style="needed")
    with arrow_csv.CSVWriter(str(temporary), schema, write_options=options) as writer:
        for block in blocks:
            scores = explain(model.pipeline, block.X)
            flags = scores.probabilities >= model.threshold
            order, contributions = scores.top(reasons)
            columns = [
                *([pyarrow.array(block.carried, pyarrow.string())] if layout.carried else []),
                scores.probabilities,
                flags.astype(np.int8),
                *(part for k in range(reasons) for part in (features.take(order[:, k]), contributions[:, k])),
            ]
            writer.write_batch(pyarrow.record_batch(columns, schema=schema))
            rows, flagged = rows + block.n_rows, flagged + int(flags.sum())
            if block.y is not None:
                labels.append(block.y)
                probabilities.append(scores.probabilities)
    if rows == 0:
        raise DataError(f"{layout.source}: no data rows after the header")
    return Scored(rows, flagged, model.threshold, _metrics(labels, probabilities, model.threshold) if labels else None)


def _metrics(labels: list[np.ndarray], probabilities: list[np.ndarray], cut: float) -> dict[str, float]:
    y, p = np.concatenate(labels), np.concatenate(probabilities)
    return {**ranking_metrics(y, p), **decision_metrics(y, p, cut)}
