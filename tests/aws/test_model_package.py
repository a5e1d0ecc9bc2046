"""The published model for SageMaker: model.tar.gz written reproducibly, and each run's registration as the next
version of the server's model package group, against moto (SageMaker's calls seen at the HTTP level too)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import boto3
import pytest
from botocore.session import get_session
from botocore.validate import ParamValidator
from rich.console import Console

from fl_runtime.aws.federate import publish_run, register_run
from fl_runtime.aws.model_package import INFERENCE_SCRIPT, TREE_MODULES, model_archive, registration_request
from fl_runtime.aws.server_account import AwsServer, RehearsalServer
from fl_runtime.errors import FederationError
from fl_runtime.learning import explain
from tests.rehearsal import SKLEARN_IMAGE, publish_server_settings, server_settings

SETTINGS = server_settings([], region="us-east-1")
GROUP = SETTINGS.model_package_group


def metrics_document(clients: dict[str, int]) -> dict:
    """The parts of a run's metrics.json (app.report.metrics_document) that registration reads: totals only."""
    return {
        "federation": {
            "members": list(clients),
            "min-clients": 2,
            "training-rows": sum(clients.values()),
            "training-positives": 110,
        },
        "test-set": {"rows": 1200, "positives": 110},
        "model": {"family": "logistic", "version": "round", "description": "log1p, ..."},
        "final": {"round": 7, "roc-auc": 0.8567123, "pr-auc": 0.4012, "threshold": 0.2345678, "f1": 0.45},
    }


def published_folder(folder, clients: dict[str, int] | None = None):
    """A run's outputs as federate has them before publishing: model, metrics and the model archive."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.joblib").write_bytes(b"a model")
    (folder / "metrics.json").write_text(json.dumps(metrics_document(clients or {"insurer-a": 800, "clinic-b": 400})))
    model_archive(folder / "model.joblib", folder / "model.tar.gz")
    return folder


def test_the_archive_holds_the_model_and_both_scripts_byte_for_byte_and_is_reproducible(tmp_path):
    (tmp_path / "model.joblib").write_bytes(b"a model")
    first = model_archive(tmp_path / "model.joblib", tmp_path / "one" / "model.tar.gz")
    second = model_archive(tmp_path / "model.joblib", tmp_path / "two" / "model.tar.gz")
    assert first.read_bytes() == second.read_bytes()
    with tarfile.open(first) as archive:
        members = archive.getmembers()
        contents = {m.name: archive.extractfile(m).read() for m in members}
    trees = [f"code/fl_runtime/{name}" for name in TREE_MODULES]  # what a tree model unpickles from
    assert [m.name for m in members] == sorted(["code/explain.py", "code/inference.py", *trees, "model.joblib"])
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {(0, 0, 0, "", 0o644)}
    assert contents["code/explain.py"] == Path(explain.__file__).read_bytes()
    package = Path(explain.__file__).parent.parent
    assert all(contents[f"code/fl_runtime/{name}"] == (package / name).read_bytes() for name in TREE_MODULES)
    assert contents["code/inference.py"] == INFERENCE_SCRIPT.read_bytes()
    assert contents["model.joblib"] == b"a model"


def test_an_archive_that_cannot_be_written_leaves_nothing_behind(tmp_path):
    with pytest.raises(FileNotFoundError):
        model_archive(tmp_path / "missing.joblib", tmp_path / "out" / "model.tar.gz")
    assert list((tmp_path / "out").iterdir()) == []


def test_the_request_registers_the_published_archive_pending_approval_with_its_metrics_and_the_data_key(tmp_path):
    folder = published_folder(tmp_path / "run1")
    request = registration_request(SETTINGS, "run1", folder)
    shape = get_session().get_service_model("sagemaker").operation_model("CreateModelPackage").input_shape
    assert not ParamValidator().validate(request, shape).has_errors()  # what boto3 checks before sending
    [container] = request["InferenceSpecification"]["Containers"]
    assert container == {
        "Image": SKLEARN_IMAGE,
        "ModelDataUrl": "s3://results/model/run1/model.tar.gz",
        "Environment": {"SAGEMAKER_PROGRAM": "inference.py", "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"},
    }
    assert request["ModelPackageGroupName"] == GROUP and request["ModelApprovalStatus"] == "PendingManualApproval"
    assert request["SecurityConfig"] == {"KmsKeyId": SETTINGS.data_key_arn}
    statistics = request["ModelMetrics"]["ModelQuality"]["Statistics"]
    digest = hashlib.sha256((folder / "metrics.json").read_bytes()).hexdigest()
    assert statistics == {
        "ContentType": "application/json",
        "S3Uri": "s3://results/model/run1/metrics.json",
        "ContentDigest": f"sha256:{digest}",
    }
    assert request["CustomerMetadataProperties"] == {
        "run": "run1",
        "roc-auc": "0.856712",
        "pr-auc": "0.401200",
        "threshold": "0.234568",
        "family": "logistic",
        "rounds": "7",
        "members": "2",
        "min-members": "2",
        "training-rows-total": "1200",
        "training-positives-total": "110",
        "test-rows": "1200",
        "model-sha256": hashlib.sha256((folder / "model.tar.gz").read_bytes()).hexdigest(),
    }  # what the server saw of the members' data: totals over them, never one member's figure
    assert "\n" not in request["ModelPackageDescription"]
    assert "2 client accounts (1200 training rows in total), logistic, 7 rounds" in request["ModelPackageDescription"]
    assert "insurer-a" not in request["ModelPackageDescription"]


def test_with_many_members_the_metadata_stays_within_sagemakers_limits(tmp_path):
    clients = {f"client-{i}": 100 + i for i in range(60)}
    request = registration_request(SETTINGS, "run1", published_folder(tmp_path / "run1", clients))
    assert len(request["CustomerMetadataProperties"]) == 12 and request["CustomerMetadataProperties"]["members"] == "60"
    assert len(request["ModelPackageDescription"]) <= 1024


@pytest.fixture
def server(local_aws):
    publish_server_settings(boto3.client("ssm"), SETTINGS)
    return AwsServer("/fl-fraud")


@pytest.mark.slow
def test_each_registration_is_the_groups_next_version_pending_approval_encrypted_with_the_data_key(
    server, local_aws, tmp_path
):
    recorder, _ = local_aws
    sagemaker = boto3.client("sagemaker")
    sagemaker.create_model_package_group(ModelPackageGroupName=GROUP)  # as ServerStack does
    requests = [registration_request(SETTINGS, run, published_folder(tmp_path / run)) for run in ("run1", "run2")]
    registered = [server.register(request) for request in requests]
    assert [r.version for r in registered] == [1, 2]
    for entry, request in zip(registered, requests):
        described = sagemaker.describe_model_package(ModelPackageName=entry.where)
        assert described["ModelPackageGroupName"] == GROUP and described["ModelPackageVersion"] == entry.version
        assert described["ModelApprovalStatus"] == "PendingManualApproval"
        assert described["CustomerMetadataProperties"] == request["CustomerMetadataProperties"]
        assert described["ModelMetrics"] == request["ModelMetrics"]
    sent = recorder.of("SageMaker.CreateModelPackage")  # moto 5.2.5 does not keep SecurityConfig: the requests do
    assert [call.body["SecurityConfig"] for call in sent] == [{"KmsKeyId": SETTINGS.data_key_arn}] * 2
    assert [call.body["CustomerMetadataProperties"]["run"] for call in sent] == ["run1", "run2"]


@pytest.mark.slow
def test_a_registration_sagemaker_refuses_says_what_sagemaker_said(server, tmp_path):
    request = registration_request(SETTINGS, "run1", published_folder(tmp_path / "run1"))  # the group was never made
    with pytest.raises(FederationError, match=r"SageMaker refused CreateModelPackage \(ValidationException: .*"):
        server.register(request)


def test_a_rehearsal_keeps_each_request_as_the_next_version_and_refuses_what_boto3_would(tmp_path):
    description = RehearsalServer.describe(
        tmp_path / "rehearsal.json",
        server=SETTINGS,
        clients=[],
        buckets={"results": tmp_path / "results"},
        jobs_folder=tmp_path / "jobs",
        python="python3",
    )
    rehearsal = RehearsalServer(description)
    request = registration_request(SETTINGS, "run1", published_folder(tmp_path / "run1"))
    assert [rehearsal.register(request).version for _ in range(2)] == [1, 2]
    kept = tmp_path / "model-registry" / GROUP
    assert json.loads((kept / "2.json").read_text()) == request
    with pytest.raises(FederationError, match="SageMaker would refuse CreateModelPackage: .*ModelApprovalStatus"):
        rehearsal.register({**request, "ModelApprovalStatus": 1})
    assert sorted(p.name for p in kept.iterdir()) == ["1.json", "2.json"]


class RefusingRegistry:
    """A server account whose bucket takes the outputs and whose model registry refuses them."""

    settings = SETTINGS

    def __init__(self, bucket):
        self.bucket = bucket

    def publish(self, folder, run: str) -> str:
        shutil.copytree(folder, self.bucket / run)
        return f"s3://results/model/{run}/"

    def register(self, request):
        raise FederationError("SageMaker refused CreateModelPackage (AccessDeniedException: not authorized)")


def test_a_refused_registration_keeps_the_published_run_and_says_how_to_register_it(tmp_path):
    out = published_folder(tmp_path / "out")
    console = Console(file=io.StringIO(), width=200)
    with pytest.raises(FederationError) as refused:
        server = RefusingRegistry(tmp_path / "bucket")
        publish_run(server, "run1", out, console)
        register_run(server, "run1", out, console)
    message = str(refused.value)
    assert "run run1 completed and its model is published in s3://results/model/run1/ and" in message
    assert f"registering it in model package group {GROUP} failed: SageMaker refused CreateModelPackage" in message
    assert f"aws sagemaker create-model-package --cli-input-json file://{out / 'model-package.json'}" in message
    assert "Done: final model ROC-AUC 0.8567" in console.file.getvalue()
    for folder in (out, tmp_path / "bucket" / "run1"):  # nothing lost: local and published, the request with them
        assert {"model.joblib", "metrics.json", "model.tar.gz", "model-package.json"} <= {
            p.name for p in folder.iterdir()
        }
    assert json.loads((out / "model-package.json").read_text()) == registration_request(SETTINGS, "run1", out)
