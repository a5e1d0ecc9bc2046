"""The command line contract: prepare-data and compare; exit codes; bad input writes nothing."""

from __future__ import annotations

import json

import pytest

from fl_runtime.errors import DataError, FederationError, OptionsError
from fl_runtime.learning.data import LABEL, read_csv
from tests.helpers import run_cli, write_rows


def test_prepare_data_writes_a_test_set_and_one_csv_per_client(tmp_path, cms_path):
    done = run_cli(
        "prepare-data",
        "--data",
        cms_path,
        "--clients",
        3,
        "--partition",
        "non-iid",
        "--seed",
        4,
        "--out",
        tmp_path / "split",
    )
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "split").iterdir())
    assert names == ["client_1.csv", "client_2.csv", "client_3.csv", "test.csv"]
    parts = [read_csv(tmp_path / "split" / name) for name in names]
    assert sum(p.n_rows for p in parts) == 5500 and sum(p.n_positive for p in parts) == 500
    assert "client_1.csv: " in done.stdout and "fraudulent" in done.stdout


def test_prepare_data_is_reproducible_with_seed(tmp_path, cms_path):
    for folder in ("a", "b"):
        assert (
            run_cli(
                "prepare-data",
                "--data",
                cms_path,
                "--clients",
                2,
                "--partition",
                "iid",
                "--seed",
                9,
                "--out",
                tmp_path / folder,
            ).returncode
            == 0
        )
    for name in ("test.csv", "client_1.csv", "client_2.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_prepare_data_without_data_uses_the_synthetic_set_and_says_so(tmp_path):
    done = run_cli("prepare-data", "--clients", 3, "--out", tmp_path / "split")
    assert done.returncode == 0, done.stderr
    assert "SYNTHETIC" in done.stdout


@pytest.mark.parametrize(
    "rows, expected",
    [
        ([[0, "12", "x"]], "column 'b', line 2: 'x' is not a number"),
        ([[0, "12", "nan"]], "column 'b', line 2: 'nan' is not a finite number"),
        ([[3, "12", "1"]], f"column '{LABEL}', line 2: label '3' is not 0 or 1"),
    ],
)
def test_prepare_data_rejects_bad_cells_with_exit_2_and_writes_nothing(tmp_path, rows, expected):
    bad = write_rows(tmp_path / "bad.csv", [LABEL, "a", "b"], rows)
    done = run_cli("prepare-data", "--data", bad, "--clients", 2, "--out", tmp_path / "split")
    assert done.returncode == 2
    assert f"{bad}: {expected}" in done.stderr
    assert not (tmp_path / "split").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_prepare_data_without_label_column_or_file_exits_2(tmp_path):
    no_label = write_rows(tmp_path / "nolabel.csv", ["a", "b"], [[1, 2]])
    done = run_cli("prepare-data", "--data", no_label, "--clients", 2, "--out", tmp_path / "split")
    assert done.returncode == 2 and f"missing label column '{LABEL}'" in done.stderr
    done = run_cli("prepare-data", "--data", tmp_path / "absent.csv", "--clients", 2, "--out", tmp_path / "split")
    assert done.returncode == 2 and "absent.csv: file not found" in done.stderr
    assert not (tmp_path / "split").exists()


def test_prepare_data_refuses_to_overwrite_an_existing_split(tmp_path):
    assert run_cli("prepare-data", "--clients", 2, "--out", tmp_path / "split").returncode == 0
    before = (tmp_path / "split" / "test.csv").read_bytes()
    done = run_cli("prepare-data", "--clients", 2, "--seed", 1, "--out", tmp_path / "split")
    assert done.returncode == 2 and "test.csv: already exists" in done.stderr
    assert (tmp_path / "split" / "test.csv").read_bytes() == before


def test_compare_prints_and_saves_centralised_local_only_and_federated(tmp_path, cms_path):
    done = run_cli("compare", "--data", cms_path, "--partition", "non-iid", "--seeds", 0, 1, "--out", tmp_path / "cmp")
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [(run["split"], run["seed"]) for run in document["runs"]] == [("label skew, alpha 1", s) for s in (0, 1)]
    run = document["runs"][0]
    models = run["models"]
    references = {"centralised plain", "centralised class-weights", "centralised smote"}
    federated = {"federated smote", "federated class-weights", "federated none"}
    assert set(models) == references | federated | {"client_1 alone", "client_2 alone", "client_3 alone"}
    # auto: the method with the best federated validation PR-AUC, reported with the evidence
    assert document["settings"]["class-balance"] == "auto"
    assert run["chosen"] == max(run["validation-pr-auc"], key=run["validation-pr-auc"].get)
    best = max(models[name]["roc-auc"] for name in references)
    assert abs(models[f"federated {run['chosen']}"]["roc-auc"] - best) <= 0.01
    assert "largest |federated - best centralised|" in " ".join(done.stdout.split())
    assert f"logistic class balance {run['chosen']} (by validation PR-AUC" in done.stdout
    assert "| federated none |" in (tmp_path / "cmp" / "compare.md").read_text()
    stop = run["federated-stop"]
    assert stop["converged"] and stop["round"] < document["settings"]["rounds"]
    assert f"Federated training {stop['reason']}" in done.stdout


def test_compare_on_prepared_client_csvs(tmp_path, cms_path):
    assert (
        run_cli("prepare-data", "--data", cms_path, "--clients", 3, "--seed", 2, "--out", tmp_path / "split").returncode
        == 0
    )
    split = tmp_path / "split"
    done = run_cli(
        "compare",
        "--client-data",
        split / "client_1.csv",
        split / "client_2.csv",
        split / "client_3.csv",
        "--test-data",
        split / "test.csv",
        "--out",
        tmp_path / "cmp",
    )
    assert done.returncode == 0, done.stderr
    models = json.loads((tmp_path / "cmp" / "compare.json").read_text())["runs"][0]["models"]
    assert models["federated none"]["roc-auc"] >= 0.80
    assert set(models) >= {"client_1 alone", "client_3 alone"}


def test_compare_without_a_partition_runs_every_standard_split_including_size_and_label_skew(tmp_path):
    done = run_cli("compare", "--rows", 2500, "--class-balance", "none", "--out", tmp_path / "cmp")
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [run["split"] for run in document["runs"]] == [
        "IID",
        "label skew, alpha 1",
        "label skew, alpha 0.5",
        "size skew, alpha 0.5",
        "size and label skew, alpha 1",
    ]
    assert {run["chosen"] for run in document["runs"]} == {"none"}  # as asked: no choice by evidence
    assert "| size and label skew, alpha 1 |" in (tmp_path / "cmp" / "compare.md").read_text()


@pytest.mark.parametrize("command", ["local", "federate", "compare"])
def test_an_unknown_class_balance_is_a_usage_error_naming_the_option(tmp_path, command):
    done = run_cli(command, "--class-balance", "oversample", "--out", tmp_path / "out")
    assert done.returncode == 2
    assert "--class-balance: invalid choice: 'oversample'" in done.stderr
    assert "smote" in done.stderr and "class-weights" in done.stderr and "auto" in done.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_flags_and_values_are_usage_errors():
    assert run_cli("prepare-data", "--clients", 2).returncode == 2  # --out missing
    assert run_cli("compare", "--penalty", "elasticnet").returncode == 2
    done = run_cli("local", "--client-data", "a.csv")
    assert done.returncode == 2 and "--client-data needs --test-data" in done.stderr


@pytest.mark.parametrize("name", ["run_1", "run.1", "a-very-long-run-name-of-25"])
def test_a_run_name_that_cannot_be_part_of_a_job_name_is_refused_before_anything_starts(tmp_path, name):
    done = run_cli("federate", "--run-name", name, "--out", tmp_path / "out")
    assert done.returncode == 2 and "--run-name" in done.stderr and "up to 20 letters" in done.stderr
    assert not (tmp_path / "out").exists()


def test_two_client_csvs_with_the_same_file_name_or_a_non_positive_timeout_are_refused_before_anything_starts(tmp_path):
    done = run_cli(
        "local",
        "--client-data",
        tmp_path / "a" / "claims.csv",
        tmp_path / "b" / "claims.csv",
        "--test-data",
        tmp_path / "test.csv",
        "--out",
        tmp_path / "out",
    )
    assert (
        done.returncode == 2 and "have the same file name 'claims', which names the client; rename one" in done.stderr
    )
    done = run_cli("local", "--round-timeout", -1, "--out", tmp_path / "out")
    assert done.returncode == 2 and "--round-timeout must be positive, got -1.0" in done.stderr
    assert not (tmp_path / "out").exists()


BUG = "internal error (a bug, please report it)"


@pytest.mark.parametrize(
    "error, code, first_line",
    [
        (DataError("x.csv: line 3: bad"), 2, "error: x.csv: line 3: bad"),
        (OptionsError("--rounds must be at least 1, got 0"), 2, "error: --rounds must be at least 1, got 0"),
        (FederationError("client b dropped"), 1, "failed: client b dropped"),
        (ValueError("weights contain NaN"), 1, f"{BUG}: ValueError: weights contain NaN"),
        (KeyError("feature-mean"), 1, f"{BUG}: KeyError: 'feature-mean'"),
    ],
)
def test_bad_input_exits_2_a_failed_run_1_and_a_bug_1_with_its_traceback(monkeypatch, capsys, error, code, first_line):
    from fl_runtime import cli

    def command(args, console):
        raise error

    monkeypatch.setitem(cli.COMMANDS, "prepare-data", command)
    assert cli.main(["prepare-data", "--clients", "2", "--out", "unused"]) == code
    stderr = capsys.readouterr().err
    assert stderr.splitlines()[0] == first_line
    assert ("Traceback (most recent call last)" in stderr) == first_line.startswith("internal error")


def test_a_negative_tolerance_is_refused_before_any_data_is_read(tmp_path):
    done = run_cli("compare", "--data", tmp_path / "absent.csv", "--tolerance", -1, "--out", tmp_path / "cmp")
    assert (
        done.returncode == 2 and "--tolerance must be a number of at least 0 (0: every round), got -1.0" in done.stderr
    )
    assert not (tmp_path / "cmp").exists()
