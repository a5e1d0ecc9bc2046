"""`federate` end to end, with local jobs standing in for SageMaker (the very requests SageMaker would get)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pytest

from fl_runtime.launch.flower import free_port
from fl_runtime.learning.data import LabelledData, write_csv
from tests.aws.conftest import NAMES, federate
from tests.rehearsal import client_settings, rehearsal, server_settings
from tests.sklearn_container import serving

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Completed:
    folder: Path  # the rehearsal: its buckets, jobs and model registry
    out: str
    err: str

    @property
    def published(self) -> Path:
        return self.folder / "results" / "model" / "run1"


@pytest.fixture(scope="module")
def run1(split, tmp_path_factory) -> Completed:
    """The module's one completed federation (three clients, three rounds), for every test of what it leaves."""
    test, clients = split
    folder = tmp_path_factory.mktemp("run1")
    description = rehearsal(folder, test, clients, port=free_port())
    process = federate(description, folder / "out", "--rounds", 3, "--run-name", "run1")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:] + out[-3000:]
    return Completed(folder, out, err)


def test_three_clients_complete_and_every_output_lands(run1):
    out, results = run1.out, run1.published
    for name in NAMES:
        assert f"client {name}: training job fl-client-run1-{name} created" in out
        assert f"client {name}: SuperNode key registered" in out
        assert f"client {name}: job fl-client-run1-{name} Completed" in out
    outputs = {"model.joblib", "metrics.json", "report.md", "roc_pr_curves.png", "model.tar.gz", "model-package.json"}
    for folder in (results, run1.folder / "out"):  # the server bucket and the local run folder
        assert outputs <= {p.name for p in folder.iterdir()}
    metrics = json.loads((results / "metrics.json").read_text())
    assert [r["round"] for r in metrics["rounds"]] == [1, 2, 3] and metrics["dropouts"] == []
    assert metrics["final"]["roc-auc"] > 0.8
    server_model = joblib.load(results / "model.joblib")
    for name in NAMES:  # each job saved the final global model to SM_MODEL_DIR; "SageMaker" packed it
        artifact = (
            run1.folder / f"artifacts-{name}" / "client_artifact" / f"fl-client-run1-{name}" / "output" / "model.tar.gz"
        )
        with tarfile.open(artifact) as archive:
            archive.extractall(run1.folder / name, filter="data")
        client_model = joblib.load(run1.folder / name / "model.joblib")
        assert (
            client_model.named_steps["logistic_regression"].coef_
            == server_model.named_steps["logistic_regression"].coef_
        ).all()
    assert "Done: final model ROC-AUC" in out


def test_each_clients_job_leaves_its_own_view_and_signed_transcript_in_its_own_artifact_bucket(run1):
    from fl_runtime.app.verify import verify_file

    for name in NAMES:
        job = run1.folder / f"artifacts-{name}" / "client_artifact" / f"fl-client-run1-{name}"
        with tarfile.open(job / "output" / "output.tar.gz") as archive:
            archive.extractall(run1.folder / f"{name}-output", filter="data")
        view = json.loads((run1.folder / f"{name}-output" / "client_view.json").read_text())
        assert view["member"] == name and view["left"] is None and view["final-validation"]["pr-auc"] > 0
        verified = verify_file(run1.folder / f"{name}-output" / "transcript.jsonl")
        assert verified.writer == name and verified.signed and verified.members == tuple(sorted(NAMES))


def _requests(rows: LabelledData, folder: Path) -> list[tuple[str | bytes, str, str]]:
    """The test set's providers as a caller sends them: a data file as it is, plain rows, JSON lists and objects."""
    write_csv(folder / "rows.csv", rows)
    plain = "\n".join(",".join(repr(float(v)) for v in row) for row in rows.X)
    objects = [dict(zip(rows.features, row.tolist())) for row in rows.X]
    return [
        ((folder / "rows.csv").read_bytes(), "text/csv", "application/json"),
        (plain, "text/csv", "text/csv"),
        (json.dumps({"instances": rows.X.tolist()}), "application/json", "application/json"),
        (json.dumps(objects), "application/json", "text/csv"),
    ]


def _probabilities_and_flags(answer: str, kind: str) -> tuple[list[float], list[bool]]:
    if kind == "application/json":
        predictions = json.loads(answer)["predictions"]
        return [p["fraud_probability"] for p in predictions], [p["flagged"] for p in predictions]
    lines = list(csv.reader(io.StringIO(answer)))
    return [float(line[0]) for line in lines], [line[1] == "1" for line in lines]


def test_the_published_model_tar_gz_serves_the_test_set_as_the_saved_pipeline_scores_it(run1, split, tmp_path):
    """model_fn on the extracted archive, then input_fn -> predict_fn -> output_fn per request, as the container."""
    test, _ = split
    model = joblib.load(run1.published / "model.joblib")
    expected = model.predict_proba(test.X)[:, 1]
    threshold = json.loads((run1.published / "metrics.json").read_text())["final"]["threshold"]
    with serving(run1.published / "model.tar.gz", tmp_path / "opt-ml-model") as served:
        for body, content_type, accept in _requests(test, tmp_path):
            data = served.script.input_fn(body, content_type)
            answer, kind = served.script.output_fn(served.script.predict_fn(data, served.model), accept)
            probabilities, flagged = _probabilities_and_flags(answer, kind)
            assert kind == accept
            np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-9)
            assert flagged == (expected >= threshold).tolist()  # the threshold the run's metrics were measured at
            assert any(flagged) and not all(flagged)
        incomplete = json.dumps([dict(zip(test.features[1:], test.X[0, 1:].tolist()))])  # no first feature
        missing = f"instance 1 has no value for 1 of the model's features: {test.features[0]}"
        with pytest.raises(ValueError, match=missing):
            served.invoke(incomplete, "application/json", None)


def test_the_run_is_registered_as_the_groups_first_version_pending_approval_with_its_metrics(run1):
    kept = run1.folder / "model-registry" / "fl-fraud-global-model" / "1.json"
    request = json.loads(kept.read_text())
    assert request == json.loads((run1.published / "model-package.json").read_text())
    assert request["InferenceSpecification"]["Containers"][0]["ModelDataUrl"] == "s3://results/model/run1/model.tar.gz"
    assert request["ModelApprovalStatus"] == "PendingManualApproval"
    metrics_file = (run1.published / "metrics.json").read_bytes()
    digest = request["ModelMetrics"]["ModelQuality"]["Statistics"]["ContentDigest"]
    assert digest == f"sha256:{hashlib.sha256(metrics_file).hexdigest()}"
    metrics, metadata = json.loads(metrics_file), request["CustomerMetadataProperties"]
    assert metadata["roc-auc"] == f"{metrics['final']['roc-auc']:.6f}" and metadata["members"] == "3"
    assert metadata["training-rows-total"] == str(metrics["federation"]["training-rows"])
    assert metadata["min-members"] == "3" and not any(name in key for key in metadata for name in NAMES)
    assert f"Registered as version 1 of model package group fl-fraud-global-model, PendingManualApproval: {kept}" in (
        run1.out
    )


def test_bad_rehearsal_settings_fail_before_any_job_starts(split, tmp_path):
    test, clients = split
    description = rehearsal(tmp_path, test, clients, port=free_port())
    (tmp_path / "results" / "data" / "test.csv").write_text("label\n1\n")
    process = federate(description, tmp_path / "out")
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 2 and "missing label column 'fraudulent_provider'" in err
    jobs = tmp_path / "jobs"
    assert not jobs.exists() or not any(p.name.startswith("fl-client") for p in jobs.iterdir())
    assert os.listdir(tmp_path / "results") == ["data"]


def _server_toward(server_vpc: str, client_vpc: str):
    """Server settings with one client VPC, as the stacks would publish them."""
    import dataclasses

    settings = server_settings([client_settings("a", "222222222222")])
    entry = dataclasses.replace(settings.clients[0], vpc_cidr=client_vpc)
    return dataclasses.replace(settings, server_vpc_cidr=server_vpc, clients=(entry,))


def test_the_address_jobs_dial_is_the_source_of_the_route_toward_the_client_vpcs():
    from fl_runtime.aws.fleet_service import private_address

    settings = _server_toward("127.0.0.0/8", "127.0.2.0/24")
    assert private_address(settings) == "127.0.0.1"  # the loopback route's source, standing in for the VPC's


def test_an_address_outside_the_server_vpc_is_refused_with_the_way_out():
    from fl_runtime.aws.fleet_service import private_address
    from fl_runtime.errors import FederationError

    settings = _server_toward("10.0.0.0/16", "127.0.2.0/24")
    with pytest.raises(
        FederationError,
        match=r"reaches 127\.0\.2\.1 from 127\.0\.0\.1, outside the server VPC 10\.0\.0\.0/16: .*--address",
    ):
        private_address(settings)


def test_more_min_clients_than_configured_is_refused_before_any_job_is_created(split, tmp_path):
    test, clients = split
    description = rehearsal(tmp_path, test, clients, port=free_port())
    process = federate(description, tmp_path / "out", "--min-clients", 4)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2 and "--min-clients 4 exceeds the 3 clients configured" in err
    assert "training job" not in out and not (tmp_path / "out").exists()
    assert not any(p.name.startswith("fl-client") for p in (tmp_path / "jobs").iterdir())


def test_model_auto_federates_each_family_as_its_own_run_and_registers_only_the_chosen_one(tmp_path, monkeypatch):
    """The composition only (each whole federation: the tests above; the choice: tests/launch/test_family_choice):
    run names <tag>-<family>, nothing registered until both completed, then the chosen run's own request."""
    from rich.console import Console

    from fl_runtime.aws import federate as federate_module
    from fl_runtime.aws.contract import RUN_NAME
    from fl_runtime.aws.federate import FederateOptions, federate_each_family
    from fl_runtime.aws.model_package import REQUEST_FILE
    from fl_runtime.aws.server_account import Registered
    from fl_runtime.errors import OptionsError

    calls, registered = [], []

    def one_run(server, options, console, register=True):  # what federate leaves once a run is published
        calls.append((options.run_name, options.plan.family, register, registered[:]))
        out = Path(options.out)
        out.mkdir(parents=True)
        (out / "model.joblib").write_bytes(options.plan.family.encode())
        validation = {"logistic": 0.41, "gbdt": 0.52}[options.plan.family]
        metrics = {"validation": {"pr-auc": validation}, "final": {"roc-auc": 0.9, "pr-auc": 0.5}, "server-saw": []}
        (out / "metrics.json").write_text(json.dumps(metrics))
        (out / REQUEST_FILE).write_text(json.dumps({"ModelPackageGroupName": "g", "ModelApprovalStatus": "x",
                                                    "run": options.run_name}))  # fmt: skip
        return out

    class Server:
        settings = server_settings([])

        def register(self, request):
            registered.append(request["run"])
            return Registered("arn:aws:sagemaker:local:1:model-package/g/1", 1)

    monkeypatch.setattr(federate_module, "federate", one_run)
    options = FederateOptions(run_name="r7", out=tmp_path / "out")
    choice = federate_each_family(Server(), options, Console(file=io.StringIO()))
    assert calls == [("r7-lr", "logistic", False, []), ("r7-gbdt", "gbdt", False, [])]
    assert choice.chosen == "gbdt" and registered == ["r7-gbdt"]
    assert (tmp_path / "out" / "model.joblib").read_bytes() == b"gbdt"
    # the default name (a 15-character UTC timestamp) leaves room for the longest suffix; a longer one is refused
    # before any run starts, as a client's launcher would refuse the start
    calls.clear()
    federate_each_family(Server(), FederateOptions(out=tmp_path / "default"), Console(file=io.StringIO()))
    assert [len(run) for run, *_ in calls] == [18, 20] and all(RUN_NAME.fullmatch(run) for run, *_ in calls)
    calls.clear()
    with pytest.raises(OptionsError, match=r"--run-name 'a-long-run-name1': --model auto names its runs "
                       r"a-long-run-name1-lr, a-long-run-name1-gbdt, .* give a run name of at most 15"):  # fmt: skip
        federate_each_family(Server(), FederateOptions(run_name="a-long-run-name1", out=tmp_path / "long"),
                             Console(file=io.StringIO()))  # fmt: skip
    assert calls == [] and not (tmp_path / "long").exists()
