import numpy as np
import pytest

from fl_runtime.app.client_app import NodeSettings
from fl_runtime.errors import DataError, OptionsError
from fl_runtime.learning.data import MIN_CLIENT_ROWS, MIN_ROWS_PER_CLASS, check_trainable, write_csv
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
        {
            "train-path": str(tmp_path / "train.csv"),
            "validation-path": str(tmp_path / "validation.csv"),
            "pins-file": str(tmp_path / "pins.json"),
        }
    )
    data = node.client_data(seed=0)
    assert (data.train.n_rows, data.validation.n_rows) == (split.train.n_rows, split.validation.n_rows)
    write_csv(
        tmp_path / "validation.csv", split.validation.subset(np.flatnonzero(split.validation.y == 0), "validation.csv")
    )
    with pytest.raises(DataError, match=r"train\.csv \+ .*validation\.csv: \d+ data rows together"):
        node.client_data(seed=0)


def test_a_node_without_its_members_pinned_settings_is_refused_naming_the_key(tmp_path):
    with pytest.raises(OptionsError, match="needs pins-file: the member's pinned settings"):
        NodeSettings.of({"data-path": str(tmp_path / "client.csv")})
