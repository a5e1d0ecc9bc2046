"""CSV contract for provider data: reading, validating and writing one party's rows.

Every party (the server with its test set, each client with its own data) holds a CSV with a header,
the label column ``fraudulent_provider`` (0/1) and numeric feature columns: the schema of the curated
CMS Medicare provider dataset. An empty feature cell is a missing value. Validation happens before anything
trains or uploads, and each error names the file, the column and, where it applies, the 1-based CSV line,
because the person reading it has to open that file and fix that cell.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fl_runtime.errors import DataError
from fl_runtime.files import atomic_path
from fl_runtime.learning.csv_blocks import MAX_VALUE, Block, arrow_options, checked_block

LABEL = "fraudulent_provider"

# The 49 features of the curated CMS dataset, in its column order. The synthetic generator produces
# exactly these; real CSVs may carry any numeric columns as long as every party has the same ones.
CMS_FEATURES: tuple[str, ...] = (
    "female",
    *(
        f"{measure}_{stat}"
        for measure in (
            "tot_suplrs",
            "tot_suplr_benes",
            "tot_suplr_clms",
            "tot_suplr_srvcs",
            "avg_suplr_sbmtd_chrg",
            "avg_suplr_mdcr_pymt_amt",
        )
        for stat in ("standard_deviation", "mean", "sum")
    ),
    *(
        f"{measure}_{stat}"
        for measure in (
            "bene_unique_cnt",
            "line_svc_cnt",
            "bene_day_srvc_cnt",
            "average_submitted_chrg_amt",
            "average_medicare_payment_amt",
            "total_claim_count",
            "total_30_day_fill_count",
            "total_day_supply",
            "total_drug_cost",
            "bene_count",
        )
        for stat in ("mean", "sum", "standard_deviation")
    ),
)

# A client needs enough rows of each class for a stratified train/validation split, SMOTE's
# neighbours (k=5) among its training positives, and positives left over for validation.
MIN_ROWS_PER_CLASS = 10
MIN_CLIENT_ROWS = 50
SMOTE_NEIGHBOURS = 5  # a client's training part needs more real positives than this
ROWS_PER_BLOCK = 65_536  # the row-by-row reader converts this many rows at a time


@dataclass(frozen=True)
class LabelledData:
    """Rows of one CSV: raw feature matrix, 0/1 labels, column names and where they came from."""

    features: tuple[str, ...]
    X: np.ndarray
    y: np.ndarray
    source: str

    def __post_init__(self) -> None:
        if self.X.shape != (len(self.y), len(self.features)):
            raise ValueError(
                f"{self.source}: X has shape {self.X.shape}, expected ({len(self.y)}, {len(self.features)})"
            )

    @property
    def n_rows(self) -> int:
        return len(self.y)

    @property
    def n_positive(self) -> int:
        return int(self.y.sum())

    def subset(self, rows: np.ndarray, source: str | None = None) -> LabelledData:
        return LabelledData(self.features, self.X[rows], self.y[rows], source or self.source)


def read_csv(path: str | os.PathLike) -> LabelledData:
    """Read and validate one party's CSV; raise DataError naming the file, column and line.

    An empty feature cell is a missing value (NaN: claims extracts have them; the model families handle them);
    every other cell must be a number. A well-formed file is parsed column by column (Arrow's CSV reader,
    multi-threaded): a million rows in seconds. Anything it does not accept as it stands (a cell that is not a
    plain number, a non-finite cell, an empty or other label than 0/1, a negative value, a ragged line) sends
    the file through the row-by-row reader, which applies the same rules cell by cell and names the first
    offending line.
    """
    path = Path(path)
    with reading(path):
        header = read_header(path)
        return _read_columns(path, str(path), header) or _read_rows(path, str(path))


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Reading ``path`` as a CSV: a missing file, bytes that are not UTF-8 or a broken CSV become a DataError
    naming the file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        yield
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not a UTF-8 text file (byte {error.start}: {error.reason})") from None
    except csv.Error as error:
        raise DataError(f"{path}: not a readable CSV file ({error})") from None


def read_columns(path: str | os.PathLike) -> tuple[str, ...]:
    """The feature columns of a CSV, from its header alone (checked as ``read_csv`` checks it)."""
    header = read_header(Path(path))
    return tuple(column for column in header if column != LABEL)


def read_header(path: Path, *, needs_label: bool = True) -> list[str]:
    """The header's column names, stripped and checked; ``needs_label=False`` for rows to score, whose label
    (if any) is only there to measure the model."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), None)
    expected = f"'{LABEL}' and feature columns" if needs_label else "the feature columns"
    if not header:
        raise DataError(f"{path}: empty file, expected a header row with {expected}")
    header = [column.strip() for column in header]
    if needs_label:
        _check_header(str(path), header)
    else:
        _check_names(str(path), header)
    return header


def _read_columns(path: Path, name: str, header: list[str]) -> LabelledData | None:
    """The fast path: the file parsed as float columns; None when any cell needs the row-by-row rules."""
    import pyarrow
    from pyarrow import csv as arrow_csv

    try:
        table = arrow_csv.read_csv(path, **arrow_options(header))
    except (pyarrow.ArrowInvalid, pyarrow.ArrowNotImplementedError):
        return None
    features = tuple(column for column in header if column != LABEL)
    block = checked_block(table, features, LABEL)
    del table
    pyarrow.default_memory_pool().release_unused()  # hand the table's memory back, not keep it for Arrow
    if block is None:
        return None
    if block.n_rows == 0:
        raise DataError(f"{name}: no data rows after the header")
    return LabelledData(features, block.X, block.labels(), name)


def _read_rows(path: Path, name: str) -> LabelledData:
    features = read_columns(path)
    blocks = list(row_blocks(path, features))
    if not blocks:
        raise DataError(f"{name}: no data rows after the header")
    X = np.concatenate([block.X for block in blocks])
    return LabelledData(features, X, np.concatenate([block.labels() for block in blocks]), name)


def row_blocks(path: Path, features: Sequence[str], carried: str | None = None) -> Iterator[Block]:
    """The row-by-row reader: each cell by the contract's rules, the first bad one named with its line; blocks of
    ROWS_PER_BLOCK rows (Python lists of floats take 4 times the memory of float64 blocks). The label is read if
    the file has it; ``carried`` names a column passed through unchecked."""
    name = str(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [column.strip() for column in next(reader)]
        labelled = LABEL in header
        label_index = header.index(LABEL) if labelled else -1
        feature_index = [header.index(column) for column in features]
        carried_index = -1 if carried is None else header.index(carried)
        labels: list[int] = []
        rows: list[list[float]] = []
        cells: list[str] = []
        for line_number, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise DataError(f"{name}: line {line_number} has {len(row)} cells, the header has {len(header)}")
            if labelled:
                labels.append(_parse_label(name, line_number, row[label_index]))
            if carried is not None:
                cells.append(row[carried_index])
            rows.append([_parse_feature(name, line_number, header[i], row[i]) for i in feature_index])
            if len(rows) == ROWS_PER_BLOCK:
                yield _block(rows, labels if labelled else None, cells)
                labels, rows, cells = [], [], []
    if rows:
        yield _block(rows, labels if labelled else None, cells)


def _block(rows: list[list[float]], labels: list[int] | None, cells: list[str]) -> Block:
    return Block(np.asarray(rows, dtype=np.float64), None if labels is None else np.asarray(labels, np.int64), cells)


def _check_header(name: str, header: list[str]) -> list[str]:
    if LABEL not in header:
        raise DataError(f"{name}: missing label column '{LABEL}' (columns: {', '.join(header[:5])}, ...)")
    _check_names(name, header)
    features = [column for column in header if column != LABEL]
    if not features:
        raise DataError(f"{name}: no feature columns besides '{LABEL}'")
    return features


def _check_names(name: str, header: list[str]) -> None:
    seen: set[str] = set()
    for column in header:
        if not column:
            raise DataError(f"{name}: the header has an empty column name")
        if column in seen:
            raise DataError(f"{name}: column '{column}' appears twice in the header")
        seen.add(column)


def _parse_label(name: str, line_number: int, cell: str) -> int:
    text = cell.strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if value not in (0.0, 1.0):
        raise DataError(f"{name}: column '{LABEL}', line {line_number}: label {text!r} is not 0 or 1")
    return int(value)


def _parse_feature(name: str, line_number: int, column: str, cell: str) -> float:
    """A feature cell's value; an empty cell is a missing value (NaN), anything else must be a number >= 0."""
    text = cell.strip()
    if not text:
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"{name}: column '{column}', line {line_number}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(f"{name}: column '{column}', line {line_number}: {text!r} is not a finite number")
    if value >= MAX_VALUE:
        raise DataError(f"{name}: column '{column}', line {line_number}: {text} is 2^64 or more, too large for a count")
    if value < 0:
        raise DataError(
            f"{name}: column '{column}', line {line_number}: {text} is negative; features are counts or "
            "amounts (the model takes log1p of them)"
        )
    return value


def column_difference(expected: Sequence[str], actual: Sequence[str]) -> str | None:
    """How ``actual`` feature columns differ from ``expected`` (None if identical, order included)."""
    expected, actual = list(expected), list(actual)
    if actual == expected:
        return None
    missing = [c for c in expected if c not in actual]
    extra = [c for c in actual if c not in expected]
    parts = []
    if missing:
        parts.append(f"missing column '{missing[0]}'" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    if extra:
        parts.append(f"unexpected column '{extra[0]}'" + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))
    if not parts:
        first = next(i for i, (a, b) in enumerate(zip(expected, actual)) if a != b)
        parts.append(
            f"feature {first + 1} is '{actual[first]}', expected '{expected[first]}' (same columns, other order)"
        )
    return "; ".join(parts)


def check_same_columns(reference: LabelledData, other: LabelledData) -> None:
    """Every party must hold the same feature columns in the same order as the server's test set."""
    difference = column_difference(reference.features, other.features)
    if difference:
        raise DataError(f"{other.source}: columns differ from {reference.source}: {difference}")


def check_trainable(data: LabelledData) -> None:
    """A client must be able to split, oversample and validate on its own rows."""
    if data.n_rows < MIN_CLIENT_ROWS:
        raise DataError(f"{data.source}: {data.n_rows} data rows, a client needs at least {MIN_CLIENT_ROWS}")
    for label in (0, 1):
        count = int((data.y == label).sum())
        if count < MIN_ROWS_PER_CLASS:
            what = "only one class" if count == 0 else f"only {count} rows"
            raise DataError(
                f"{data.source}: column '{LABEL}' has {what} with value {label}; a client needs at least "
                f"{MIN_ROWS_PER_CLASS} rows of each class (for its train/validation split and SMOTE)"
            )


def check_has_both_classes(data: LabelledData) -> None:
    """A validation part needs both classes, or ranking metrics and thresholds mean nothing."""
    for label in (0, 1):
        if not (data.y == label).any():
            raise DataError(
                f"{data.source}: column '{LABEL}' has no rows with value {label}; a validation part needs both classes"
            )


def check_split(train: LabelledData, validation: LabelledData) -> None:
    """A client's staged train/validation parts: what splitting a trainable CSV guarantees.

    ``stage-data`` checks what it uploads with this, and a training job checks what it downloaded, so a
    split made by other means fails the same way, naming the file, before anything connects.
    """
    check_same_columns(train, validation)
    where = f"{train.source} + {validation.source}"
    rows = train.n_rows + validation.n_rows
    if rows < MIN_CLIENT_ROWS:
        raise DataError(f"{where}: {rows} data rows together, a client needs at least {MIN_CLIENT_ROWS}")
    for label in (0, 1):
        count = int((train.y == label).sum() + (validation.y == label).sum())
        if count < MIN_ROWS_PER_CLASS:
            raise DataError(
                f"{where}: column '{LABEL}' has only {count} rows with value {label}; a client needs at least "
                f"{MIN_ROWS_PER_CLASS}"
            )
    positives = int((train.y == 1).sum())
    if positives <= SMOTE_NEIGHBOURS:
        raise DataError(
            f"{train.source}: column '{LABEL}' has only {positives} rows with value 1; SMOTE needs at least "
            f"{SMOTE_NEIGHBOURS + 1} in the training part"
        )
    check_has_both_classes(validation)


def read_client_csv(path: str | os.PathLike, reference: LabelledData) -> LabelledData:
    """Read one client's CSV and check it against the server's test set before anything starts."""
    data = read_csv(path)
    check_same_columns(reference, data)
    check_trainable(data)
    return data


def read_client_csvs(paths: Sequence[str | os.PathLike], reference: LabelledData) -> list[LabelledData]:
    return [read_client_csv(path, reference) for path in paths]


def write_csv(path: str | os.PathLike, data: LabelledData) -> None:
    """Label first, then the features; integers without a decimal point, other numbers in their shortest
    round-trippable form. Written atomically: a reader never sees half a file, a failure leaves none."""
    import pyarrow
    from pyarrow import csv as arrow_csv

    columns = {LABEL: pyarrow.array(data.y, pyarrow.int64())}
    columns.update(  # a missing value (NaN) is written as an empty cell
        (name, pyarrow.array(data.X[:, index], mask=np.isnan(data.X[:, index])))
        for index, name in enumerate(data.features)
    )
    with atomic_path(path) as temporary:
        arrow_csv.write_csv(
            pyarrow.table(columns), temporary, arrow_csv.WriteOptions(quoting_style="needed", batch_size=65536)
        )
