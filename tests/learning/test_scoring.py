"""Scoring with the model a real local run published: the pipeline's own probabilities, the run's threshold,
exact reasons, an id carried verbatim, files streamed in blocks, and what is refused."""

from __future__ import annotations

import csv
import json

import joblib
import numpy as np
import pytest

from fl_runtime.errors import DataError
from fl_runtime.learning import scoring
from fl_runtime.learning.data import LABEL, read_csv
from fl_runtime.learning.metrics import decision_metrics, ranking_metrics
from fl_runtime.learning.scoring import load_model, score_csv
from tests.helpers import read_rows, run_cli, write_rows

pytestmark = pytest.mark.slow  # the published_run fixture runs a real federation


@pytest.fixture(scope="module")
def published(published_run):
    """The run's model as scoring loads it, the pipeline as joblib loads it, and the rows of its test set."""
    path = published_run.out / "model.joblib"
    return load_model(path), joblib.load(path), read_csv(published_run.test_csv)


def scores_of(path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def scored_test_set(published_run, published, tmp_path_factory):
    """The run's test set scored once: what ``score_csv`` returned, and the output file."""
    model, _, _ = published
    out = tmp_path_factory.mktemp("scored") / "scores.csv"
    return score_csv(model, published_run.test_csv, out), out


def test_the_scores_are_the_pipelines_predict_proba(published, scored_test_set):
    _, pipeline, test = published
    probabilities = np.array([float(row["fraud_probability"]) for row in scores_of(scored_test_set[1])])
    assert len(probabilities) == test.n_rows
    np.testing.assert_allclose(probabilities, pipeline.predict_proba(test.X)[:, 1], rtol=0, atol=1e-9)


def test_the_published_model_flags_at_the_threshold_the_run_chose(published_run, published, scored_test_set):
    model, pipeline, test = published
    final = json.loads((published_run.out / "metrics.json").read_text())["final"]
    assert model.threshold == final["threshold"]
    scored, out = scored_test_set
    expected = pipeline.predict_proba(test.X)[:, 1] >= final["threshold"]
    assert [int(row["flagged"]) for row in scores_of(out)] == expected.astype(int).tolist()
    assert scored.flagged == expected.sum() and scored.rows == test.n_rows


def test_every_features_contribution_plus_the_intercept_is_the_logit_and_the_reasons_are_the_three_largest(
    published, scored_test_set
):
    model, pipeline, test = published
    classifier = pipeline.named_steps["logistic_regression"]
    contributions = pipeline[:-1].transform(test.X) * classifier.coef_[0]  # coefficient x standardised value
    probability = pipeline.predict_proba(test.X)[:, 1]
    np.testing.assert_allclose(
        contributions.sum(axis=1) + classifier.intercept_[0], np.log(probability / (1 - probability)), atol=1e-9
    )
    largest = np.argsort(-contributions, axis=1)[:, :3]
    for row, top, values in zip(scores_of(scored_test_set[1]), largest, contributions):
        assert [row[f"reason_{k}"] for k in (1, 2, 3)] == [model.features[index] for index in top]
        reported = [float(row[f"reason_{k}_contribution"]) for k in (1, 2, 3)]
        np.testing.assert_allclose(reported, values[top], atol=1e-12)


def test_labelled_rows_also_measure_the_model_as_the_run_measured_its_test_set(
    published_run, published, scored_test_set
):
    model, pipeline, test = published
    probabilities = pipeline.predict_proba(test.X)[:, 1]
    expected = {**ranking_metrics(test.y, probabilities), **decision_metrics(test.y, probabilities, model.threshold)}
    metrics = scored_test_set[0].metrics
    assert metrics == pytest.approx(expected, abs=1e-12)
    final = json.loads((published_run.out / "metrics.json").read_text())["final"]
    assert metrics["roc-auc"] == pytest.approx(final["roc-auc"], abs=1e-9)
    assert metrics["recall"] == pytest.approx(final["recall"], abs=1e-9)


def test_rows_without_the_label_are_scored_the_same_and_not_measured(
    published_run, published, scored_test_set, tmp_path
):
    model, _, _ = published
    header, rows = read_rows(published_run.test_csv)
    keep = [index for index, column in enumerate(header) if column != LABEL]
    unlabelled = write_rows(
        tmp_path / "unlabelled.csv", [header[i] for i in keep], [[r[i] for i in keep] for r in rows]
    )
    assert score_csv(model, unlabelled, tmp_path / "scores.csv").metrics is None
    assert (tmp_path / "scores.csv").read_bytes() == scored_test_set[1].read_bytes()


def test_the_id_column_is_carried_verbatim_as_the_first_output_column(published_run, published, tmp_path):
    model, _, _ = published
    header, rows = read_rows(published_run.test_csv)
    ids = [f'00{number}, ward "{number % 7}" ' if number % 2 else f"P{number}" for number in range(len(rows))]
    with (tmp_path / "with-ids.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([["provider_id", *header], *([id_, *row] for id_, row in zip(ids, rows))])
    score_csv(model, tmp_path / "with-ids.csv", tmp_path / "scores.csv", id_column="provider_id")
    scores = scores_of(tmp_path / "scores.csv")
    assert list(scores[0])[:3] == ["provider_id", "fraud_probability", "flagged"]
    assert [row["provider_id"] for row in scores] == ids


def test_a_file_read_in_many_blocks_scores_exactly_as_in_one(
    published_run, published, scored_test_set, tmp_path, monkeypatch
):
    model, _, _ = published
    blocks: list[int] = []
    explain = scoring.explain
    monkeypatch.setattr(scoring, "explain", lambda pipeline, rows: blocks.append(len(rows)) or explain(pipeline, rows))
    monkeypatch.setattr(scoring, "BLOCK_BYTES", 16 << 10)
    score_csv(model, published_run.test_csv, tmp_path / "many-blocks.csv")
    assert len(blocks) > 10 and max(blocks) < 100
    assert (tmp_path / "many-blocks.csv").read_bytes() == scored_test_set[1].read_bytes()


def test_a_row_of_blank_cells_after_many_blocks_sends_the_file_to_the_row_reader_which_scores_it_the_same(
    published_run, published, scored_test_set, tmp_path, monkeypatch
):
    """Arrow's column reader refuses a cell of spaces; the row-by-row reader, which skips such a row, scores the
    file again from its start, and the blocks written before are not kept twice."""
    model, _, _ = published
    monkeypatch.setattr(scoring, "BLOCK_BYTES", 16 << 10)
    header, rows = read_rows(published_run.test_csv)
    spaced = write_rows(tmp_path / "spaced.csv", header, [*rows[:-5], [" "] * len(header), *rows[-5:]])
    score_csv(model, spaced, tmp_path / "scores.csv")
    assert (tmp_path / "scores.csv").read_bytes() == scored_test_set[1].read_bytes()


def test_a_text_cell_after_many_blocks_is_named_with_its_line_and_leaves_no_output(
    published_run, published, tmp_path, monkeypatch
):
    model, _, _ = published
    monkeypatch.setattr(scoring, "BLOCK_BYTES", 16 << 10)
    header, rows = read_rows(published_run.test_csv)
    rows[-3][header.index("bene_count_sum")] = "n/a"
    data = write_rows(tmp_path / "data.csv", header, rows)
    line = len(rows) - 3 + 2  # the header is line 1
    with pytest.raises(DataError, match=f"data.csv: column 'bene_count_sum', line {line}: 'n/a' is not a number"):
        score_csv(model, data, tmp_path / "scores.csv")
    assert [path.name for path in tmp_path.iterdir()] == ["data.csv"]


def test_a_clients_copy_of_the_model_has_no_threshold_and_is_refused_naming_the_file(published_run, tmp_path):
    pipeline = joblib.load(published_run.out / "model.joblib")
    del pipeline.fraud_threshold  # what a client's model-dir receives: saved before the server chose it
    joblib.dump(pipeline, tmp_path / "model.joblib")
    with pytest.raises(DataError, match=r"model.joblib: the model carries no decision threshold .* run's outputs$"):
        load_model(tmp_path / "model.joblib")


@pytest.mark.parametrize(
    "id_column, expected",
    [
        ("npi", "no id column 'npi'"),
        ("female", "id column 'female' is a feature of the model"),
        (LABEL, f"id column '{LABEL}' is the label"),
    ],
)
def test_an_id_column_must_be_a_column_of_the_file_that_the_model_does_not_use(
    published_run, published, tmp_path, id_column, expected
):
    model, _, _ = published
    with pytest.raises(DataError, match=expected):
        score_csv(model, published_run.test_csv, tmp_path / "scores.csv", id_column=id_column)
    assert list(tmp_path.iterdir()) == []


def test_a_file_with_a_header_and_no_rows_is_refused_and_leaves_no_output(published, tmp_path):
    model, _, _ = published
    header_only = write_rows(tmp_path / "header-only.csv", [LABEL, *model.features], [])
    with pytest.raises(DataError, match="header-only.csv: no data rows after the header"):
        score_csv(model, header_only, tmp_path / "scores.csv")
    assert [path.name for path in tmp_path.iterdir()] == ["header-only.csv"]


# The command line, on the same run (one real federation per test process)


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


def test_score_refuses_to_overwrite_its_output(published_run, tmp_path):
    (tmp_path / "scores.csv").write_text("earlier scores\n")
    done = run_cli(
        "score", "--model", published_run.out, "--data", published_run.test_csv, "--out", tmp_path / "scores.csv"
    )
    assert done.returncode == 2 and "scores.csv: already exists" in done.stderr
    assert (tmp_path / "scores.csv").read_text() == "earlier scores\n"
