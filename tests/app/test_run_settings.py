"""The run config a launcher sends and the ServerApp reads: one spelling, checked values, defaults from one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from fl_runtime import defaults
from fl_runtime.app.run_settings import RunSettings, default_run_config, node_label, read_node_names, write_node_names
from fl_runtime.errors import OptionsError
from fl_runtime.learning.task import TrainConfig, TrainingPlan


@pytest.fixture
def settings(tmp_path) -> RunSettings:
    return RunSettings(
        TrainingPlan(4, TrainConfig(0.5, "l1"), tolerance=0.01),
        min_clients=2,
        expected_clients=3,
        node_wait_timeout=60.0,
        round_timeout=30.0,
        test_data=tmp_path / "test.csv",
        out_dir=tmp_path / "out",
        data_description="synthetic",
        reply_poll_seconds=0.05,
        node_names=tmp_path / "node-names.json",
        expected_members=("insurer-a", "insurer-b", "clinic-c"),
    )


def test_the_run_config_a_launcher_sends_reads_back_as_the_same_settings(settings):
    assert RunSettings.from_run_config(settings.to_run_config()) == settings
    without_names = RunSettings(**{**settings.__dict__, "node_names": None})
    assert RunSettings.from_run_config(without_names.to_run_config()) == without_names
    assert Path(settings.to_run_config()["test-data"]).is_absolute()


def test_the_fabs_defaults_cover_every_key_and_come_from_the_defaults_module(settings):
    config = default_run_config()
    assert set(config) == set(settings.to_run_config())
    assert (config["num-server-rounds"], config["C"], config["penalty"], config["family"]) == (
        defaults.ROUNDS,
        defaults.C,
        defaults.PENALTY,
        "logistic",
    )
    assert (config["round-timeout"], config["reply-poll-seconds"], config["convergence-tolerance"]) == (
        defaults.ROUND_TIMEOUT,
        defaults.REPLY_POLL_SECONDS,
        defaults.CONVERGENCE_TOLERANCE,
    )
    assert "seed" not in config  # each member's own
    with pytest.raises(
        OptionsError, match="run config 'test-data' must be an absolute path on the SuperLink's machine, got ''"
    ):
        RunSettings.from_run_config(config)  # a run submitted without a launcher stops at once, naming the key


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("num-server-rounds", 0, "run config 'num-server-rounds' must be a positive whole number, got 0"),
        ("num-server-rounds", 2.5, "run config 'num-server-rounds' must be a positive whole number, got 2.5"),
        ("round-timeout", -1.0, "run config 'round-timeout' must be a positive number, got -1.0"),
        ("min-clients", True, "run config 'min-clients' must be a positive whole number, got True"),
        (
            "out-dir",
            "relative/out",
            "run config 'out-dir' must be an absolute path on the SuperLink's machine, got 'relative/out'",
        ),
        ("C", -1.0, "C must be a positive number, got -1.0"),
        (
            "convergence-tolerance",
            -0.001,
            "run config 'convergence-tolerance' must be a number of at least 0, got -0.001",
        ),
    ],
)
def test_a_bad_run_config_value_is_refused_naming_the_key(settings, key, value, message):
    with pytest.raises(OptionsError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        RunSettings.from_run_config({**settings.to_run_config(), key: value})


def test_node_names_written_by_a_launcher_read_back_and_unknown_nodes_get_their_id(tmp_path):
    write_node_names(tmp_path / "node-names.json", {2: "insurer-b", 3: "hospital-c"})
    known = read_node_names(tmp_path / "node-names.json")
    assert known == {2: "insurer-b", 3: "hospital-c"}
    assert read_node_names(tmp_path / "absent.json") == {} and read_node_names(None) == {}
    assert (node_label(2, known), node_label(9, known)) == ("insurer-b", "node 9")
