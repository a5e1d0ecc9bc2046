"""The server's side of each client account, with real boto3 over HTTP against moto: the kickoff role assumed
with the external id, the client's settings read, and the client's launcher invoked (at the HTTP level, with
the launcher's own code answering, as the function would). The server never sends a job request itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import boto3
import pytest

from fl_runtime.aws.kickoff import KickoffSession
from fl_runtime.launch.flower import free_port
from fl_runtime.launch.pki import create_tls
from tests import aws_emulator as aws
from tests.helpers import PROJECT
from tests.rehearsal import client_settings, server_settings

pytestmark = pytest.mark.slow
CLIENTS = {"insurer-a": "111111111111", "insurer-b": "222222222222"}


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory) -> bytes:
    return create_tls(tmp_path_factory.mktemp("tls") / "tls", ["10.0.1.25"]).ca_certificate.read_bytes()


def _settings(name: str, port: int = 9092):
    return client_settings(name, CLIENTS[name], port=port, server_vpc_cidr="127.0.0.0/8")


def _server_settings(port: int = 9092):
    """What ServerStack publishes for CLIENTS."""
    return server_settings([_settings(name, port) for name in CLIENTS], port=port, region="us-east-1")


def _client_entry(name: str):
    [entry] = [e for e in _server_settings().clients if e.name == name]
    return entry


def _publish_client_settings(recorder, endpoint: str, port: int = 9092) -> None:
    """As each client stack would: its settings in SSM of its own account, and its launcher function."""
    launchers = {}
    for name, account in CLIENTS.items():
        settings = _settings(name, port)
        session = aws.account_session(endpoint, account)
        session.client("ssm").put_parameter(
            Name=f"/fl-fraud/client/{name}/settings", Value=settings.to_json(), Type="String"
        )
        launchers[settings.launcher_arn] = settings.launch
    recorder.rules.append(aws.launcher_rule(endpoint, launchers))


def test_kickoff_assumes_each_role_with_its_external_id_and_asks_each_launcher_for_the_runs_job(local_aws, ca_pem):
    recorder, endpoint = local_aws
    _publish_client_settings(recorder, endpoint)
    sts = boto3.client("sts")
    for name in CLIENTS:
        session = KickoffSession.assume(sts, _client_entry(name), "us-east-1", "fl-federate-test")
        assert session.settings == _settings(name)
        started = session.launcher.start("run1", "127.0.0.1:9092", ca_pem)
        assert started.job == f"fl-client-run1-{name}"
        assert started.public_key_uri == f"ssm:/fl-fraud/client/{name}/supernode-keys/{started.job}"
        assert session.launcher.status("run1")[0] in ("InProgress", "Completed")
    assume = recorder.of("AssumeRole")
    kickoffs = [(c.body["RoleArn"], c.body.get("ExternalId")) for c in assume if "FL-kickoff" in c.body["RoleArn"]]
    assert kickoffs == [(f"arn:aws:iam::{a}:role/FL-kickoff-client-job", f"fl-{n}-x1") for n, a in CLIENTS.items()]
    invoked = [json.loads(c.raw) for c in recorder.calls if aws.INVOCATION.match(c.path)]
    assert [request["action"] for request in invoked] == ["start", "describe", "start", "describe"]
    assert all(set(request) <= {"action", "run", "superlink", "ca_certificate"} for request in invoked)
    created = recorder.of("SageMaker.CreateTrainingJob")
    assert [c.body["TrainingJobName"] for c in created] == [f"fl-client-run1-{n}" for n in CLIENTS]


def test_the_kickoff_session_renews_its_credentials_before_they_expire(local_aws, monkeypatch):
    """A chained role session lasts an hour at most; runs can be longer. Near expiry, calls re-assume the role."""
    from fl_runtime.aws import kickoff

    recorder, endpoint = local_aws
    _publish_client_settings(recorder, endpoint)
    monkeypatch.setattr(kickoff, "SESSION_SECONDS", 900)  # inside botocore's 15-minute refresh window from the start
    session = KickoffSession.assume(boto3.client("sts"), _client_entry("insurer-a"), "us-east-1", "fl-renew")
    before = len(recorder.of("AssumeRole"))
    assert session.launcher.status("nothing")[0] == "Unknown"  # any call will do
    assert session.launcher.read_public_key("ssm:/fl-fraud/client/insurer-a/supernode-keys/fl-client-nothing") is None
    renewed = [
        c for c in recorder.of("AssumeRole")[before:] if c.body["RoleArn"].endswith(":role/FL-kickoff-client-job")
    ]
    assert renewed and all(c.body["ExternalId"] == "fl-insurer-a-x1" for c in renewed)


def _server(recorder, endpoint, tmp_path, port: int):
    """The server account's side in moto: its settings in SSM and the staged test set in S3."""
    from fl_runtime.learning.data import write_csv
    from fl_runtime.learning.synthetic import generate

    settings = _server_settings(port)
    boto3.client("ssm").put_parameter(Name="/fl-fraud/server/settings", Value=settings.to_json(), Type="String")
    boto3.client("s3").create_bucket(Bucket=settings.results_bucket)
    write_csv(tmp_path / "test.csv", generate(300, seed=1))
    boto3.client("s3").upload_file(str(tmp_path / "test.csv"), settings.results_bucket, "data/test.csv")
    _publish_client_settings(recorder, endpoint, port)


def _federate(endpoint, tmp_path):
    command = [sys.executable, "-m", "fl_runtime", "federate", "--address", "127.0.0.1", "--connect-timeout", "30"]
    return subprocess.run(
        [*command, "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env={**os.environ, **aws.boto_env(endpoint)},
        timeout=300,
    )


def _stop_rule(call):
    return (200, {}) if call.operation == "SageMaker.StopTrainingJob" else None  # moto 5.2.5 answers 500


@pytest.mark.parametrize(
    "code, message, expected",
    [
        (
            "AccessDeniedException",
            "not authorized to perform sagemaker:CreateTrainingJob",
            "client insurer-b's launcher: SageMaker refused: An error occurred (AccessDeniedException)",
        ),
        (
            "ThrottlingException",
            "Rate exceeded",
            "client insurer-b's launcher: SageMaker refused: An error occurred (ThrottlingException)",
        ),
    ],
)
def test_a_job_a_client_cannot_start_names_the_client_and_the_jobs_already_started_are_stopped(
    local_aws, tmp_path, code, message, expected
):
    recorder, endpoint = local_aws
    _server(recorder, endpoint, tmp_path, free_port())
    recorder.rules[:0] = [
        _stop_rule,
        lambda c: (
            aws.error(code, message)
            if c.operation == "SageMaker.CreateTrainingJob" and "insurer-b" in c.body.get("TrainingJobName", "")
            else None
        ),
    ]
    done = _federate(endpoint, tmp_path)
    assert done.returncode == 1, done.stderr
    assert expected in done.stderr
    [first] = [
        c.body["TrainingJobName"]
        for c in recorder.of("SageMaker.CreateTrainingJob")
        if "insurer-a" in c.body["TrainingJobName"]
    ]
    assert [c.body for c in recorder.of("SageMaker.StopTrainingJob")] == [{"TrainingJobName": first}]
    stops = [c.path for c in recorder.calls if aws.INVOCATION.match(c.path) and json.loads(c.raw)["action"] == "stop"]
    assert stops == [f"/2015-03-31/functions/{_settings('insurer-a').launcher_arn}/invocations"]  # only the one started
    assert not (tmp_path / "out").exists()
