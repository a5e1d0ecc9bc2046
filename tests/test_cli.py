"""The command line contract: prepare-data and compare; exit codes; bad input writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fl_runtime.errors import DataError, FederationError, OptionsError
from fl_runtime.learning.data import LABEL, read_csv
from tests.helpers import PROJECT, read_rows, write_rows


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "fl_runtime", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or PROJECT,
        timeout=300,
    )


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
    assert f"Class balance {run['chosen']} (by validation PR-AUC" in done.stdout
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


@pytest.mark.slow  # published_run: a real local federation
def test_score_writes_a_row_per_provider_with_its_id_and_prints_the_summary_and_the_metrics(published_run, tmp_path):
    header, rows = read_rows(published_run.test_csv)
    with_ids = write_rows(
        tmp_path / "providers.csv", [*header, "npi"], [[*row, f"{1000 + n}"] for n, row in enumerate(rows)]
    )
    done = run_cli(
        "score",
        "--model",
        published_run.out,
        "--data",
        with_ids,
        "--out",
        tmp_path / "scores.csv",
        "--id-column",
        "npi",
    )
    assert done.returncode == 0, done.stderr
    columns, scores = read_rows(tmp_path / "scores.csv")
    assert columns[:3] == ["npi", "fraud_probability", "flagged"]
    assert [row[0] for row in scores] == [f"{1000 + n}" for n in range(len(rows))]
    flagged = sum(int(row[2]) for row in scores)
    threshold = json.loads((published_run.out / "metrics.json").read_text())["final"]["threshold"]
    summary, metrics = done.stdout.splitlines()
    assert (
        summary.startswith(f"Scored {len(rows)} rows of {with_ids}: {flagged} flagged")
        and f"threshold {threshold:.3f}" in summary
    )
    assert metrics.startswith(f"Label '{LABEL}' present: ROC-AUC 0.") and "precision" in metrics and "recall" in metrics


@pytest.mark.slow  # published_run: a real local federation
def test_score_takes_the_model_file_itself_and_prints_no_metrics_without_the_label(published_run, tmp_path):
    header, rows = read_rows(published_run.test_csv)
    keep = [index for index, column in enumerate(header) if column != LABEL]
    unlabelled = write_rows(
        tmp_path / "providers.csv", [header[i] for i in keep], [[row[i] for i in keep] for row in rows]
    )
    done = run_cli(
        "score", "--model", published_run.out / "model.joblib", "--data", unlabelled, "--out", tmp_path / "scores.csv"
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 1 and "ROC-AUC" not in done.stdout
    assert len(read_rows(tmp_path / "scores.csv")[1]) == len(rows)


def _missing_column(run, folder):
    header, rows = read_rows(run.test_csv)
    gone = header.index("tot_suplrs_mean")
    data = write_rows(
        folder / "data.csv", header[:gone] + header[gone + 1 :], [row[:gone] + row[gone + 1 :] for row in rows]
    )
    return (
        run.out,
        data,
        f"{data}: columns differ from the model's ({run.out / 'model.joblib'}): missing column 'tot_suplrs_mean'",
    )


def _text_cell(run, folder):
    header, rows = read_rows(run.test_csv)
    rows[40][header.index("female")] = "unknown"
    data = write_rows(folder / "data.csv", header, rows)
    return run.out, data, f"{data}: column 'female', line 42: 'unknown' is not a number"


def _columns_swapped(run, folder):
    header, rows = read_rows(run.test_csv)
    first, second = header.index("tot_suplrs_mean"), header.index("tot_suplrs_sum")
    order = list(range(len(header)))
    order[first], order[second] = second, first
    data = write_rows(folder / "data.csv", [header[i] for i in order], [[row[i] for i in order] for row in rows])
    # the CMS features start: female, tot_suplrs_standard_deviation, tot_suplrs_mean, tot_suplrs_sum
    expected = "feature 3 is 'tot_suplrs_sum', expected 'tot_suplrs_mean' (same columns, other order)"
    return run.out, data, f"{data}: columns differ from the model's ({run.out / 'model.joblib'}): {expected}"


def _empty_file(run, folder):
    data = folder / "data.csv"
    data.write_text("")
    return run.out, data, f"{data}: empty file, expected a header row"


def _a_data_file_as_the_model(run, folder):
    return run.test_csv, run.test_csv, f"{run.test_csv}: not a model of this project: joblib cannot load it"


def _another_pipeline(run, folder):
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    test = read_csv(run.test_csv)
    joblib.dump(make_pipeline(StandardScaler(), LogisticRegression()).fit(test.X, test.y), folder / "model.joblib")
    return folder / "model.joblib", run.test_csv, f"{folder / 'model.joblib'}: not a model of this project"


@pytest.mark.slow  # published_run: a real local federation
@pytest.mark.parametrize(
    "bad_input",
    [_missing_column, _text_cell, _columns_swapped, _empty_file, _a_data_file_as_the_model, _another_pipeline],
)
def test_score_refuses_bad_input_with_exit_2_naming_the_problem_and_writes_nothing(published_run, tmp_path, bad_input):
    model, data, expected = bad_input(published_run, tmp_path)
    before = sorted(tmp_path.iterdir())
    done = run_cli("score", "--model", model, "--data", data, "--out", tmp_path / "scores.csv")
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr and done.stderr.startswith("error: ")
    assert sorted(tmp_path.iterdir()) == before


@pytest.mark.slow  # published_run: a real local federation
def test_score_refuses_to_overwrite_its_output(published_run, tmp_path):
    (tmp_path / "scores.csv").write_text("earlier scores\n")
    done = run_cli(
        "score", "--model", published_run.out, "--data", published_run.test_csv, "--out", tmp_path / "scores.csv"
    )
    assert done.returncode == 2 and "scores.csv: already exists" in done.stderr
    assert (tmp_path / "scores.csv").read_text() == "earlier scores\n"
