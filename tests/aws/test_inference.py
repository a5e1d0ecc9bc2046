"""The published model's inference script, called as SageMaker's scikit-learn container calls it, on a model.tar.gz
that ``model_archive`` wrote: every accepted request form, both answer formats, and bad requests named."""

from __future__ import annotations

import csv
import io
import json
import sys

import joblib
import numpy as np
import pytest

from fl_runtime.aws.model_package import INFERENCE_SCRIPT, model_archive
from fl_runtime.learning.data import write_csv
from fl_runtime.learning.explain import THRESHOLD_ATTRIBUTE
from fl_runtime.learning.model import Weights, build_pipeline
from tests.helpers import imports_of
from tests.learning import test_sklearn_compat
from tests.sklearn_container import serving

THRESHOLD = 0.4


def _pipeline(data, threshold: float | None = THRESHOLD):
    """A model as the ServerApp saves it: this project's pipeline, some weights, the run's threshold on it."""
    logged = np.log1p(data.X)
    weights = Weights(np.random.default_rng(3).normal(size=(1, len(data.features))), np.array([-0.5]))
    pipeline = build_pipeline(data.features, logged.mean(axis=0), logged.std(axis=0) + 1.0, weights, -1.0)
    if threshold is not None:
        setattr(pipeline, THRESHOLD_ATTRIBUTE, threshold)
    return pipeline


@pytest.fixture(scope="module")
def model(synthetic, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    joblib.dump(_pipeline(synthetic), folder / "model.joblib")
    return folder


@pytest.fixture(scope="module")
def served(model, tmp_path_factory):
    archive = model_archive(model / "model.joblib", model / "model.tar.gz")
    with serving(archive, tmp_path_factory.mktemp("opt-ml-model")) as container:
        yield container


@pytest.fixture(scope="module")
def rows(synthetic):
    return synthetic.subset(np.arange(40))


def _plain_csv(X) -> str:
    return "\n".join(",".join(repr(float(v)) for v in row) for row in X) + "\n"


def _requests(rows, tmp_path) -> dict[str, tuple[str | bytes, str]]:
    """The same providers in every form the script accepts."""
    write_csv(tmp_path / "rows.csv", rows)  # as a data file holds them: a header, the label column first
    reordered = list(reversed(rows.features))
    named = [dict(zip(reordered, row[::-1].tolist()), provider=f"P{i}") for i, row in enumerate(rows.X)]
    return {
        "csv without header": (_plain_csv(rows.X), "text/csv"),
        "csv data file, label and header": ((tmp_path / "rows.csv").read_bytes(), "text/csv; charset=utf-8"),
        "json instances": (json.dumps({"instances": rows.X.tolist()}), "application/json"),
        "json objects by name": (json.dumps(named), "application/json"),
    }


def test_every_request_form_scores_each_provider_as_predict_proba_does(served, model, rows, tmp_path):
    expected = joblib.load(model / "model.joblib").predict_proba(rows.X)[:, 1]
    for form, (body, content_type) in _requests(rows, tmp_path).items():
        answer, kind = served.invoke(body, content_type, "application/json")
        assert kind == "application/json", form
        probabilities = [p["fraud_probability"] for p in json.loads(answer)["predictions"]]
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-9, err_msg=form)


def test_a_missing_value_empty_csv_cell_or_json_null_is_imputed_as_the_pipeline_imputes_it(served, model, rows):
    X = rows.X[:5].copy()
    X[0, 0], X[1, 3], X[4, -1] = np.nan, np.nan, np.nan
    expected = joblib.load(model / "model.joblib").predict_proba(X)[:, 1]
    as_csv = "\n".join(",".join("" if np.isnan(v) else repr(float(v)) for v in row) for row in X) + "\n"
    as_json = json.dumps({"instances": [[None if np.isnan(v) else float(v) for v in row] for row in X]})
    for body, content_type in ((as_csv, "text/csv"), (as_json, "application/json")):
        answer = json.loads(served.invoke(body, content_type, "application/json")[0])
        probabilities = [p["fraud_probability"] for p in answer["predictions"]]
        np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-9, err_msg=content_type)


def _contributions(pipeline, X) -> np.ndarray:
    """Coefficient x standardised value, computed here from the fitted steps, not by the script's explain."""
    steps = pipeline.named_steps
    standardised = (np.log1p(X) - steps["standardise"].mean_) / steps["standardise"].scale_
    return standardised * steps["logistic_regression"].coef_[0]


def test_the_answer_flags_at_the_models_threshold_and_names_the_three_strongest_reasons(served, model, rows):
    pipeline = joblib.load(model / "model.joblib")
    probabilities = pipeline.predict_proba(rows.X)[:, 1]
    contributions = _contributions(pipeline, rows.X)
    answer = json.loads(served.invoke(_plain_csv(rows.X), "text/csv", None)[0])  # no Accept: JSON
    assert answer["threshold"] == THRESHOLD
    flagged = [p["flagged"] for p in answer["predictions"]]
    assert flagged == (probabilities >= THRESHOLD).tolist() and any(flagged) and not all(flagged)
    for prediction, row in zip(answer["predictions"], contributions):
        strongest = np.argsort(-row)[:3]
        assert [r["feature"] for r in prediction["reasons"]] == [rows.features[i] for i in strongest]
        np.testing.assert_allclose([r["contribution"] for r in prediction["reasons"]], row[strongest], atol=1e-9)
    text, kind = served.invoke(_plain_csv(rows.X), "text/csv", "text/csv;q=0.9, application/json")
    lines = list(csv.reader(io.StringIO(text)))
    assert kind == "text/csv" and len(lines) == rows.n_rows and all(len(line) == 8 for line in lines)
    for line, prediction in zip(lines, answer["predictions"]):
        reasons = [(r["feature"], r["contribution"]) for r in prediction["reasons"]]
        assert float(line[0]) == prediction["fraud_probability"] and line[1] == str(int(prediction["flagged"]))
        assert [(line[i], float(line[i + 1])) for i in (2, 4, 6)] == reasons


def _bad_requests(features) -> list[tuple[str | bytes, str, str, str]]:
    first, last = features[0], features[-1]
    width = len(features)
    row = ["1"] * width
    return [
        (",".join(["1", "2", "x", *row[3:]]), "text/csv", "CSV line 1, value 3", "'x' is not a number"),
        (",".join(row) + "\n1,2,3\n", "text/csv", "CSV line 2 has 3 values", f"takes {width}"),
        (",".join(["-1", *row[1:]]), "text/csv", f"CSV line 1, value 1 \\({first}\\)", "non-negative"),
        (f"{','.join(features[:-1])}\n{','.join(row[:-1])}\n", "text/csv", "CSV line 2 has no value for 1", last),
        (f"{first},{first}\n1,2\n", "text/csv", "the CSV header names", f"{first} more than once"),
        ("{not json", "application/json", "the request body is not JSON", ""),
        (json.dumps({"rows": [row]}), "application/json", "neither", "instances"),
        (json.dumps({"instances": []}), "application/json", "the request holds no rows", ""),
        (json.dumps([row, 7]), "application/json", "instance 2 is neither a list", "keyed by feature name"),
        (json.dumps([dict.fromkeys(features, "abc")]), "application/json", f"instance 1, {first}", "not a number"),
        ('{"instances": [[NaN]]}', "application/json", "instance 1 has 1 values", f"takes {width}"),
        ("[[" + ",".join(["NaN", *row[1:]]) + "]]", "application/json", "instance 1, value 1", "non-negative"),
        (b"\xff\xfe", "text/csv", "the request body is not UTF-8", ""),
        (",".join(row), "application/x-npy", "content type 'application/x-npy' is not supported", "text/csv"),
    ]


def test_a_request_that_cannot_be_scored_raises_value_error_naming_the_problem(served, synthetic):
    for body, content_type, where, what in _bad_requests(synthetic.features):
        with pytest.raises(ValueError, match=f"{where}.*{what}"):
            served.invoke(body, content_type, "application/json")
    with pytest.raises(ValueError, match="accept 'application/xml' is not supported: ask for application/json"):
        served.invoke(",".join(["1"] * len(synthetic.features)), "text/csv", "application/xml")


def test_a_model_without_its_decision_threshold_is_refused_when_the_container_starts(synthetic, tmp_path):
    joblib.dump(_pipeline(synthetic, threshold=None), tmp_path / "model.joblib")
    archive = model_archive(tmp_path / "model.joblib", tmp_path / "model.tar.gz")
    with pytest.raises(ValueError, match="carries no decision threshold"), serving(archive, tmp_path / "opt"):
        pass


def test_the_script_needs_only_the_standard_library_numpy_joblib_and_its_explain():
    """The container has its own Python with scikit-learn, NumPy and joblib: no fl_runtime, nothing else."""
    outside = {name.split(".")[0] for name in imports_of(INFERENCE_SCRIPT)} - set(sys.stdlib_module_names)
    assert outside == {"explain", "joblib", "numpy"}


old_python = test_sklearn_compat.old_python  # the virtualenv with the SageMaker image's scikit-learn, 1.4.2

ON_THE_IMAGES_SCIKIT_LEARN = r"""
import json, pathlib, sys, tempfile
import joblib, numpy as np, sklearn
from fl_runtime.aws.model_package import model_archive
from fl_runtime.learning.explain import THRESHOLD_ATTRIBUTE
from fl_runtime.learning.model import Weights, build_pipeline
from fl_runtime.learning.synthetic import generate
from tests.sklearn_container import serving
data, folder = generate(300, seed=5), pathlib.Path(tempfile.mkdtemp())
logged = np.log1p(data.X)
weights = Weights(np.random.default_rng(3).normal(size=(1, len(data.features))), np.array([-0.5]))
pipeline = build_pipeline(data.features, logged.mean(axis=0), logged.std(axis=0) + 1.0, weights, -1.0)
setattr(pipeline, THRESHOLD_ATTRIBUTE, 0.4)
joblib.dump(pipeline, folder / "model.joblib")  # as the notebook saves it: its lock pins scikit-learn 1.4.2
with serving(model_archive(folder / "model.joblib", folder / "model.tar.gz"), folder / "opt-ml-model") as served:
    answer, _ = served.invoke(json.dumps({"instances": data.X.tolist()}), "application/json", None)
print(json.dumps({
    "version": sklearn.__version__,
    "served": [p["fraud_probability"] for p in json.loads(answer)["predictions"]],
    "expected": pipeline.predict_proba(data.X)[:, 1].tolist(),
}))
"""


@pytest.mark.slow
def test_the_archive_serves_on_the_scikit_learn_of_the_sagemaker_image(old_python):
    result = test_sklearn_compat.run_script(old_python, ON_THE_IMAGES_SCIKIT_LEARN)
    assert result["version"] == "1.4.2"
    np.testing.assert_allclose(result["served"], result["expected"], rtol=0, atol=1e-9)


def _tree_model(data, folder):
    """A tree model as the ServerApp saves it (a few trees on these rows, the run's threshold)."""
    from fl_runtime.learning import binning, trees
    from fl_runtime.learning.tree_model import BoostedTreesModel

    settings = trees.TreeSettings(trees=8, depth=3, learning_rate=0.3)
    edges = tuple(binning.agree_edges([data.X], settings.min_rows_leaf))
    ensemble = trees.boost(binning.bin_codes(data.X, edges), data.y.astype(float), settings)
    joblib.dump(BoostedTreesModel(data.features, edges, ensemble, THRESHOLD), folder / "model.joblib")
    return folder / "model.joblib"


def test_a_tree_model_is_served_with_its_exact_reasons(synthetic, rows, tmp_path):
    model = _tree_model(synthetic, tmp_path)
    archive = model_archive(model, tmp_path / "model.tar.gz")
    tree = joblib.load(model)
    with serving(archive, tmp_path / "opt-ml-model") as served:
        answer = json.loads(served.invoke(_plain_csv(rows.X), "text/csv", "application/json")[0])
    probabilities = [p["fraud_probability"] for p in answer["predictions"]]
    np.testing.assert_allclose(probabilities, tree.predict_proba(rows.X)[:, 1], rtol=0, atol=1e-12)
    top, values = tree.explain(rows.X).top(3)
    for prediction, indices, contributions in zip(answer["predictions"], top, values):
        assert [r["feature"] for r in prediction["reasons"]] == [rows.features[i] for i in indices]
        np.testing.assert_allclose([r["contribution"] for r in prediction["reasons"]], contributions, atol=1e-12)


ON_THE_IMAGE_WITHOUT_THIS_PROJECT = r"""
import json, sys, tarfile
archive, model_dir, body = sys.argv[1:4]
with tarfile.open(archive) as packed:
    packed.extractall(model_dir, filter="data")
sys.path.insert(0, model_dir + "/code")  # what the container does with SAGEMAKER_SUBMIT_DIRECTORY
import numpy, sklearn, inference, fl_runtime
model = inference.model_fn(model_dir)
answer, _ = inference.output_fn(inference.predict_fn(inference.input_fn(body, "application/json"), model), None)
print(json.dumps({"numpy": numpy.__version__, "sklearn": sklearn.__version__, "package": fl_runtime.__file__,
                  "served": json.loads(answer)["predictions"]}))
"""


@pytest.mark.slow
def test_a_tree_archive_serves_on_the_images_versions_with_nothing_of_this_project_installed(
    old_python, synthetic, rows, tmp_path
):
    """The image's scikit-learn (1.4.2) with only the archive on the path: the tree model unpickles from the
    modules the archive carries, and scores and explains as it does here."""
    import subprocess

    model = _tree_model(synthetic, tmp_path)
    archive = model_archive(model, tmp_path / "model.tar.gz")
    body = json.dumps({"instances": rows.X.tolist()})
    done = subprocess.run(
        [old_python, "-c", ON_THE_IMAGE_WITHOUT_THIS_PROJECT, archive, tmp_path / "opt-ml-model", body],
        capture_output=True, text=True, cwd=tmp_path, env={}, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["sklearn"] == "1.4.2"  # the image's; numpy is test_sklearn_compat's OLD_STACK pin
    assert result["package"].startswith(str(tmp_path / "opt-ml-model" / "code"))
    tree = joblib.load(model)
    served = [p["fraud_probability"] for p in result["served"]]
    np.testing.assert_allclose(served, tree.predict_proba(rows.X)[:, 1], rtol=0, atol=1e-12)
    top, _ = tree.explain(rows.X).top(3)
    assert [[r["feature"] for r in p["reasons"]] for p in result["served"]] == [
        [rows.features[i] for i in row] for row in top
    ]
