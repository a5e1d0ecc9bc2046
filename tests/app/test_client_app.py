import numpy as np
import pytest

from fl_runtime.app.client_app import NodeSettings
from fl_runtime.errors import DataError
from fl_runtime.learning.data import MIN_CLIENT_ROWS, MIN_ROWS_PER_CLASS, check_trainable, read_csv, write_csv
from fl_runtime.learning.task import ClientData


def test_a_node_accepts_every_staged_split_that_stage_data_accepts_and_names_the_files_of_one_it_does_not(
    tmp_path, synthetic
):
    positives, negatives = np.flatnonzero(synthetic.y == 1), np.flatnonzero(synthetic.y == 0)
    smallest = synthetic.subset(
        np.r_[negatives[: MIN_CLIENT_ROWS - MIN_ROWS_PER_CLASS], positives[:MIN_ROWS_PER_CLASS]], "client.csv"
    )
    check_trainable(smallest)
    split = ClientData.split(smallest, seed=0)  # its training part alone has fewer than MIN_CLIENT_ROWS rows
    assert split.train.n_rows < MIN_CLIENT_ROWS
    write_csv(tmp_path / "train.csv", split.train)
    write_csv(tmp_path / "validation.csv", split.validation)
    node = NodeSettings.of(
        {"train-path": str(tmp_path / "train.csv"), "validation-path": str(tmp_path / "validation.csv")}
    )
    data = node.client_data(seed=0)
    assert (data.train.n_rows, data.validation.n_rows) == (split.train.n_rows, split.validation.n_rows)
    write_csv(
        tmp_path / "validation.csv", split.validation.subset(np.flatnonzero(split.validation.y == 0), "validation.csv")
    )
    with pytest.raises(DataError, match=r"train\.csv \+ .*validation\.csv: \d+ data rows together"):
        node.client_data(seed=0)


def test_a_warm_client_reads_its_csv_once_per_run_and_never_serves_rows_of_another_run_or_node_config(
    tmp_path, synthetic, monkeypatch
):
    from flwr.app import Context, RecordDict

    from fl_runtime.app import client_app
    from fl_runtime.learning.stats import GlobalStats

    reads = []
    monkeypatch.setattr(client_app, "read_csv", lambda path: reads.append(path) or read_csv(path))
    write_csv(tmp_path / "a.csv", synthetic.subset(range(1000)))
    write_csv(tmp_path / "b.csv", synthetic.subset(range(1000, 2000)))

    def context(run_id: int, csv: str) -> Context:
        node_config = {"data-path": str(tmp_path / csv)}
        return Context(run_id=run_id, node_id=7, node_config=node_config, state=RecordDict(), run_config={"seed": 0})

    first = context(1, "a.csv")
    split = client_app._client_data(first)  # the moments query
    stats = GlobalStats.from_moments([split.moments()])
    prepared = client_app._prepared(first, stats)  # round 1
    assert client_app._prepared(first, stats).train_Z is prepared.train_Z  # round 2: the same rows, in memory
    assert reads == [tmp_path / "a.csv"]
    other_file = client_app._client_data(context(1, "b.csv"))
    assert reads[-1] == tmp_path / "b.csv" and other_file.train.n_rows == split.train.n_rows
    assert not np.array_equal(other_file.train.X, split.train.X)
    client_app._prepared(context(2, "a.csv"), stats)  # a new run starts from the file again
    assert reads[-1] == tmp_path / "a.csv" and len(reads) == 3
