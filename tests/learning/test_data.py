"""The CSV contract: what is accepted, and bad input rejected with the file, column and line named."""

from __future__ import annotations

import numpy as np
import pytest

from fl_runtime.errors import DataError
from fl_runtime.learning.data import (
    CMS_FEATURES,
    LABEL,
    MIN_CLIENT_ROWS,
    MIN_ROWS_PER_CLASS,
    SMOTE_NEIGHBOURS,
    check_same_columns,
    check_split,
    check_trainable,
    read_client_csvs,
    read_csv,
    write_csv,
)
from tests.helpers import write_rows


def test_cms_dataset_reads_with_its_49_features_and_9_percent_positives(cms):
    assert cms.features == CMS_FEATURES
    assert cms.X.shape == (5500, 49)
    assert cms.n_positive == 500
    assert np.all(cms.X >= 0)


def test_written_csv_reads_back_identically(tmp_path, synthetic):
    path = tmp_path / "out" / "copy.csv"
    write_csv(path, synthetic)
    again = read_csv(path)
    assert again.features == synthetic.features
    np.testing.assert_array_equal(again.y, synthetic.y)
    np.testing.assert_array_equal(again.X, synthetic.X)


def test_label_column_may_be_anywhere_and_blank_lines_are_ignored(tmp_path):
    path = write_rows(tmp_path / "a.csv", ["x1", LABEL, "x2"], [[1, 0, 2.5], [3, 1, 4]])
    path.write_text(path.read_text() + "\n\n")
    data = read_csv(path)
    assert data.features == ("x1", "x2")
    np.testing.assert_array_equal(data.y, [0, 1])
    np.testing.assert_array_equal(data.X, [[1, 2.5], [3, 4]])


@pytest.mark.parametrize(
    "header, rows, expected",
    [
        (["x1", "x2"], [[1, 2]], f"missing label column '{LABEL}'"),
        ([LABEL, "x1"], [[0, "abc"]], "column 'x1', line 2: 'abc' is not a number"),
        ([LABEL, "x1"], [[0, 1], [1, "nan"]], "column 'x1', line 3: 'nan' is not a finite number"),
        ([LABEL, "x1"], [[0, "inf"]], "column 'x1', line 2: 'inf' is not a finite number"),
        ([LABEL, "x1"], [[0, 1], ["", 1]], f"column '{LABEL}', line 3: label '' is not 0 or 1"),
        ([LABEL, "x1"], [[2, 1]], f"column '{LABEL}', line 2: label '2' is not 0 or 1"),
        ([LABEL, "x1"], [["yes", 1]], f"column '{LABEL}', line 2: label 'yes' is not 0 or 1"),
        ([LABEL, "x1"], [[0, -5]], "column 'x1', line 2: -5 is negative"),
        ([LABEL, "x1"], [[0, 1], [0, "2e19"]], "column 'x1', line 3: 2e19 is 2^64 or more"),
        ([LABEL, "x1", "x1"], [[0, 1, 2]], "column 'x1' appears twice"),
        ([LABEL, "x1"], [[0, 1, 9]], "line 2 has 3 cells, the header has 2"),
        ([LABEL], [[0]], "no feature columns"),
        ([LABEL, "x1"], [], "no data rows"),
    ],
)
def test_bad_cells_are_rejected_naming_file_column_and_line(tmp_path, header, rows, expected):
    path = write_rows(tmp_path / "bad.csv", header, rows)
    with pytest.raises(DataError) as error:
        read_csv(path)
    assert str(path) in str(error.value)
    assert expected in str(error.value)


def test_an_empty_feature_cell_is_a_missing_value_in_both_readers_and_written_back_empty(tmp_path):
    rows = [[0, "", 2], [1, 3, ""], [0, 4, 5]]
    fast = read_csv(write_rows(tmp_path / "fast.csv", [LABEL, "x1", "x2"], rows))
    expected = np.array([[np.nan, 2], [3, np.nan], [4, 5]])
    np.testing.assert_array_equal(fast.X, expected)  # NaN where the cell is empty
    # a cell Arrow does not take as it stands (" 4 ") sends the file through the row-by-row reader: the same
    slow = read_csv(write_rows(tmp_path / "slow.csv", [LABEL, "x1", "x2"], [*rows[:2], [0, " 4 ", 5]]))
    np.testing.assert_array_equal(slow.X, expected)
    write_csv(tmp_path / "again.csv", fast)
    assert (tmp_path / "again.csv").read_text().splitlines()[1:3] == ["0,,2", "1,3,"]
    np.testing.assert_array_equal(read_csv(tmp_path / "again.csv").X, expected)


def test_missing_and_empty_files_are_rejected(tmp_path):
    with pytest.raises(DataError, match="nowhere.csv: file not found"):
        read_csv(tmp_path / "nowhere.csv")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty.csv: empty file"):
        read_csv(tmp_path / "empty.csv")


def test_client_columns_must_match_the_servers_in_name_and_order(tmp_path, synthetic):
    server = synthetic.subset(range(100), "test.csv")
    write_csv(tmp_path / "client.csv", synthetic)
    missing = write_rows(tmp_path / "missing.csv", [LABEL, *synthetic.features[:-1]], [[0, *synthetic.X[0, :-1]]])
    swapped = [LABEL, synthetic.features[1], synthetic.features[0], *synthetic.features[2:]]
    reordered = write_rows(tmp_path / "reordered.csv", swapped, [[0, *synthetic.X[0]]])
    check_same_columns(server, read_csv(tmp_path / "client.csv"))
    with pytest.raises(
        DataError, match=f"missing.csv: columns differ from test.csv: missing column '{synthetic.features[-1]}'"
    ):
        check_same_columns(server, read_csv(missing))
    with pytest.raises(DataError, match=f"feature 1 is '{synthetic.features[1]}', expected '{synthetic.features[0]}'"):
        check_same_columns(server, read_csv(reordered))


def test_a_client_needs_both_classes_and_enough_rows(synthetic):
    positives = np.flatnonzero(synthetic.y == 1)
    negatives = np.flatnonzero(synthetic.y == 0)
    one_class = synthetic.subset(negatives[:300], "one_class.csv")
    few_positives = synthetic.subset(np.r_[negatives[:300], positives[: MIN_ROWS_PER_CLASS - 1]], "few.csv")
    tiny = synthetic.subset(np.r_[negatives[:20], positives[:20]], "tiny.csv")
    with pytest.raises(DataError, match=f"one_class.csv: column '{LABEL}' has only one class with value 1"):
        check_trainable(one_class)
    with pytest.raises(
        DataError, match=f"few.csv: column '{LABEL}' has only {MIN_ROWS_PER_CLASS - 1} rows with value 1"
    ):
        check_trainable(few_positives)
    with pytest.raises(DataError, match=f"tiny.csv: 40 data rows, a client needs at least {MIN_CLIENT_ROWS}"):
        check_trainable(tiny)
    check_trainable(synthetic)


def test_a_split_that_splitting_a_trainable_csv_gives_is_accepted_and_others_are_named(synthetic):
    from fl_runtime.learning.task import ClientData

    positives = np.flatnonzero(synthetic.y == 1)
    negatives = np.flatnonzero(synthetic.y == 0)
    smallest = synthetic.subset(
        np.r_[negatives[: MIN_CLIENT_ROWS - MIN_ROWS_PER_CLASS], positives[:MIN_ROWS_PER_CLASS]], "client.csv"
    )
    check_trainable(smallest)
    split = ClientData.split(smallest, seed=0)
    check_split(split.train, split.validation)  # whatever stage-data uploads, the job accepts
    train = synthetic.subset(np.r_[negatives[:200], positives[:SMOTE_NEIGHBOURS]], "train.csv")
    validation = synthetic.subset(np.r_[negatives[200:260], positives[20:30]], "validation.csv")
    with pytest.raises(
        DataError,
        match=f"train.csv: column '{LABEL}' has only {SMOTE_NEIGHBOURS} rows with value 1; SMOTE needs at least",
    ):
        check_split(train, validation)
    no_positives = synthetic.subset(negatives[200:260], "validation.csv")
    with pytest.raises(DataError, match=f"validation.csv: column '{LABEL}' has no rows with value 1"):
        check_split(synthetic.subset(np.r_[negatives[:200], positives[:20]], "train.csv"), no_positives)
    with pytest.raises(DataError, match="train.csv \\+ validation.csv: 40 data rows together"):
        check_split(
            synthetic.subset(np.r_[negatives[:20], positives[:10]], "train.csv"),
            synthetic.subset(np.r_[negatives[20:28], positives[10:12]], "validation.csv"),
        )


def test_reading_client_csvs_checks_each_against_the_test_set(tmp_path, synthetic):
    test = synthetic.subset(range(100), "test.csv")
    good = tmp_path / "good.csv"
    write_csv(good, synthetic)
    bad = write_rows(tmp_path / "bad.csv", [LABEL, "other"], [[0, 1]] * 60)
    assert len(read_client_csvs([good], test)) == 1
    with pytest.raises(DataError, match="bad.csv: columns differ"):
        read_client_csvs([good, bad], test)


def test_a_bad_cell_deep_in_a_large_file_is_named_by_its_line(tmp_path, synthetic):
    path = tmp_path / "large.csv"
    write_csv(path, synthetic)
    lines = path.read_text().splitlines()
    lines.insert(10, "")  # blank lines count as lines of the file
    cells = lines[2500].split(",")
    cells[3] = "-3"
    lines[2500] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError) as error:
        read_csv(path)
    assert str(error.value) == (
        f"{path}: column '{synthetic.features[2]}', line 2501: -3 is negative; features are counts or amounts "
        "(the model takes log1p of them)"
    )


def test_cells_written_in_other_ways_read_as_the_numbers_they_spell(tmp_path):
    path = tmp_path / "odd.csv"
    text = f'\ufeff{LABEL}, x1 ,x2\r\n0, 1.5 ,"2"\r\n,,\r\n1,1_000,+3e2\r\n1.0,.5,7.\r\n'
    path.write_bytes(text.encode("utf-8"))
    data = read_csv(path)
    assert data.features == ("x1", "x2")
    np.testing.assert_array_equal(data.y, [0, 1, 1])
    np.testing.assert_array_equal(data.X, [[1.5, 2.0], [1000.0, 300.0], [0.5, 7.0]])


def test_a_file_that_is_not_csv_text_is_rejected_naming_it(tmp_path, synthetic):
    import gzip

    path = tmp_path / "claims.csv"
    write_csv(tmp_path / "real.csv", synthetic)
    path.write_bytes(gzip.compress((tmp_path / "real.csv").read_bytes()))
    with pytest.raises(DataError, match=f"{path}: not a UTF-8 text file"):
        read_csv(path)


def test_the_column_reader_and_the_row_reader_agree_on_the_cms_data(cms_path, monkeypatch):
    from fl_runtime.learning import data
    from fl_runtime.learning.data import _read_rows

    monkeypatch.setattr(data, "ROWS_PER_BLOCK", 997)  # several blocks and a partial one
    fast, exact = read_csv(cms_path), _read_rows(cms_path, str(cms_path))
    assert fast.features == exact.features
    np.testing.assert_array_equal(fast.X, exact.X)
    np.testing.assert_array_equal(fast.y, exact.y)


def test_rows_of_empty_cells_as_spreadsheets_export_them_are_skipped_without_the_slow_reader(
    tmp_path, synthetic, monkeypatch
):
    from fl_runtime.learning import data

    path = tmp_path / "exported.csv"
    write_csv(path, synthetic)
    blank = "," * len(synthetic.features)
    path.write_text(path.read_text() + f"{blank}\n{blank}\n")

    def row_by_row(path, name):
        raise AssertionError("a file with blank rows only went through the row-by-row reader")

    monkeypatch.setattr(data, "_read_rows", row_by_row)
    again = read_csv(path)
    np.testing.assert_array_equal(again.X, synthetic.X)
    np.testing.assert_array_equal(again.y, synthetic.y)


def test_the_columns_of_a_csv_come_from_its_header_alone(tmp_path):
    from fl_runtime.learning.data import read_columns

    path = write_rows(tmp_path / "a.csv", ["x1", LABEL, "x2"], [[1, 0, "not even read"]])
    assert read_columns(path) == ("x1", "x2")
    with pytest.raises(DataError, match=f"missing label column '{LABEL}'"):
        read_columns(write_rows(tmp_path / "b.csv", ["x1"], [[1]]))
