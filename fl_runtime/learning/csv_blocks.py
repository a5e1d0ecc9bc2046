"""Checked rows of a provider CSV, a block at a time, as Arrow's column reader produces them.

Both readers of the data contract (``data.read_csv``, which keeps every row, and ``scoring``, which streams a
file of any size) parse with the same Arrow options and accept a block only on the same checks; a block they
do not accept as it stands goes to the row-by-row reader in ``data``, which applies the contract cell by cell
and names the first offending line. The label column's name is a parameter, not imported from ``data``,
which builds on this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_VALUE = 2.0**64  # features are counts or amounts: a value at or above this is refused (bounds every answer)


@dataclass(frozen=True)
class Block:
    """Consecutive data rows of a CSV, every cell checked: features, labels, the cells of a carried column."""

    X: np.ndarray
    y: np.ndarray | None  # None when the file has no label column
    carried: list[str]  # a column passed through as text, verbatim (a provider id); empty when none is

    @property
    def n_rows(self) -> int:
        return len(self.X)

    def labels(self) -> np.ndarray:
        if self.y is None:
            raise ValueError("these rows have no label column")
        return self.y


def arrow_options(header: list[str], carried: str | None = None, block_bytes: int | None = None) -> dict:
    """How Arrow reads a CSV under this contract: every column a float but ``carried`` (text), only an empty
    cell is missing, blank lines are skipped; ``block_bytes`` of the file at a time when streaming."""
    import pyarrow
    from pyarrow import csv as arrow_csv

    types = {column: pyarrow.string() if column == carried else pyarrow.float64() for column in header}
    sizing = {} if block_bytes is None else {"block_size": block_bytes}
    return {
        "read_options": arrow_csv.ReadOptions(skip_rows=1, column_names=header, **sizing),
        "parse_options": arrow_csv.ParseOptions(ignore_empty_lines=True),
        "convert_options": arrow_csv.ConvertOptions(column_types=types, null_values=[""]),  # only empty cells
    }


def checked_block(table, features: Sequence[str], label: str, carried: str | None = None) -> Block | None:
    """An Arrow table or record batch read with ``arrow_options`` as a Block, if every cell passes the contract
    as it stands; None if one does not (an empty label, a label other than 0/1, a negative or non-finite value),
    for the row-by-row reader to name it. An empty feature cell is a missing value (NaN); rows of empty cells
    are skipped, as that reader skips them."""
    import pyarrow
    import pyarrow.compute

    numeric = [column for column in table.column_names if column != carried]
    nulls = [table.column(column).is_null().to_numpy(zero_copy_only=False) for column in numeric]
    if any(null.any() for null in nulls):
        blank = np.logical_and.reduce(nulls)
        if carried is not None:
            blank &= pyarrow.compute.equal(table.column(carried), "").to_numpy(zero_copy_only=False)
        table = table.filter(pyarrow.array(~blank))
    labels = table.column(label) if label in table.column_names else None
    if labels is not None and (labels.null_count or not np.isin(labels.to_numpy(), (0.0, 1.0)).all()):
        return None
    X = np.empty((table.num_rows, len(features)))
    for index, column in enumerate(features):
        values = table.column(column)
        X[:, index] = values.to_numpy(zero_copy_only=False)  # an empty cell: NaN
        if values.null_count != int(np.isnan(X[:, index]).sum()):
            return None  # a cell that reads as NaN but is not empty ("nan"): named by the row reader
    present = X[~np.isnan(X)]
    if not (present.min(initial=0.0) >= 0 and present.max(initial=0.0) < MAX_VALUE):
        return None
    cells = table.column(carried).to_pylist() if carried is not None else []
    return Block(X, None if labels is None else labels.to_numpy().astype(np.int64), cells)
