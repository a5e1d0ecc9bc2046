"""Starting client jobs from the server account: the request, and real boto3 over HTTP against moto."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import boto3
import pytest

from fl_runtime.aws.kickoff import JobPlan, KickoffSession, public_key_parameter_uri, training_job_request
from fl_runtime.launch.pki import create_tls
from tests import aws_emulator as aws
from tests.helpers import PROJECT
from tests.rehearsal import client_settings, server_settings

pytestmark = pytest.mark.slow
CLIENTS = {"insurer-a": "111111111111", "insurer-b": "222222222222"}


@pytest.fixture
def plan(tmp_path) -> JobPlan:
    tls = create_tls(tmp_path / "tls", ["10.0.1.25"])
    return JobPlan("20261125-010203", "10.0.1.25:9092", tls.ca_certificate.read_bytes(), 900, 3600)


def test_the_request_follows_the_reference_script_mode_contract(plan):
    settings = client_settings("insurer-a", "111111111111")
    request = training_job_request(settings, plan, "us-east-1", public_key_parameter_uri(settings, "job"))
    assert request["TrainingJobName"] == "fl-client-20261125-010203-insurer-a"
    assert request["AlgorithmSpecification"] == {"TrainingImage": settings.training_image, "TrainingInputMode": "File"}
    assert request["RoleArn"] == settings.execution_role_arn
    hyper = request["HyperParameters"]
    assert hyper["sagemaker_program"] == "sagemaker_client.py"
    assert (
        hyper["sagemaker_submit_directory"] == "s3://code-insurer-a/code/source.tar.gz"
    )  # the client's own code bucket
    assert hyper["superlink"] == "10.0.1.25:9092" and hyper["client-name"] == "insurer-a"
    assert base64.b64decode(hyper["root-certificate"]) == plan.root_certificate
    assert all(isinstance(v, str) and len(v) <= 2500 for v in hyper.values())  # SageMaker's limit per value
    [channel] = request["InputDataConfig"]
    assert channel["ChannelName"] == "train"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == "s3://data-insurer-a/data_prep/"
    assert request["OutputDataConfig"] == {
        "S3OutputPath": "s3://artifacts-insurer-a/client_artifact/",
        "KmsKeyId": settings.data_key_arn,
    }
    assert request["VpcConfig"] == {"SecurityGroupIds": ["sg-0training"], "Subnets": ["subnet-0a", "subnet-0b"]}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert int(hyper["run-timeout"]) < 3600  # the job gives up before SageMaker kills it


def test_no_secret_travels_in_hyperparameters(plan):
    settings = client_settings("insurer-a", "111111111111")
    text = json.dumps(training_job_request(settings, plan, "us-east-1", "ssm:/p/k"))
    assert "PRIVATE KEY" not in text and "BEGIN OPENSSH" not in text and "SecretAccessKey" not in text


def test_a_job_name_keeps_prefix_run_and_client_whole_and_is_never_truncated():
    from fl_runtime.aws.contract import job_name

    longest = job_name("p" * 21, "r" * 20, "insurer-with-20-char")  # the most the config and --run-name allow
    assert len(longest) == 63 and longest.endswith("-insurer-with-20-char")
    assert job_name("fl-client", "20261125-010203", "insurer-a") == "fl-client-20261125-010203-insurer-a"
    with pytest.raises(ValueError, match="is not 1-63 letters"):
        job_name("p" * 22, "r" * 20, "insurer-with-20-char")


def _client_entry(name: str):
    [entry] = [e for e in _server_settings().clients if e.name == name]
    return entry


def _server_settings(port: int = 9092):
    """What ServerStack publishes for CLIENTS."""
    return server_settings(
        [client_settings(name, account) for name, account in CLIENTS.items()], port=port, region="us-east-1"
    )


def _publish_client_settings():
    """As each ClientStack would: settings in SSM of the client's own account."""
    sts = boto3.client("sts")
    for name, account in CLIENTS.items():
        credentials = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/setup", RoleSessionName="setup")[
            "Credentials"
        ]
        session = boto3.Session(
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"],
            region_name="us-east-1",
        )
        session.client("ssm").put_parameter(
            Name=f"/fl-fraud/client/{name}/settings", Value=client_settings(name, account).to_json(), Type="String"
        )


def test_kickoff_assumes_each_role_with_its_external_id_and_starts_jobs_in_each_account(local_aws, plan):
    recorder, _ = local_aws
    _publish_client_settings()
    sts = boto3.client("sts")
    started = {}
    for name, account in CLIENTS.items():
        client = KickoffSession.assume(sts, _client_entry(name), "us-east-1", "fl-federate-test")
        assert client.settings == client_settings(name, account)
        request = training_job_request(
            client.settings, plan, "us-east-1", public_key_parameter_uri(client.settings, "job")
        )
        started[name] = (client, client.jobs.start(request), request)
    assume = recorder.of("AssumeRole")[-2:]
    assert [(c.body["RoleArn"], c.body["ExternalId"]) for c in assume] == [
        (f"arn:aws:iam::{a}:role/FL-kickoff-client-job", f"fl-{n}-x1") for n, a in CLIENTS.items()
    ]
    assert [c.body["RoleSessionName"] for c in assume] == ["fl-federate-test"] * 2
    created = recorder.of("SageMaker.CreateTrainingJob")
    assert [c.body for c in created] == [request for _, _, request in started.values()]
    for name, (client, job, request) in started.items():
        description = client.jobs.sagemaker.describe_training_job(TrainingJobName=job)
        assert description["TrainingJobArn"] == f"arn:aws:sagemaker:us-east-1:{CLIENTS[name]}:training-job/{job}"
        assert description["VpcConfig"] == request["VpcConfig"]
        assert (
            description["HyperParameters"]["sagemaker_submit_directory"]
            == request["HyperParameters"]["sagemaker_submit_directory"]
        )
        assert client.jobs.status(job)[0] in ("InProgress", "Completed")


def test_the_kickoff_session_renews_its_credentials_before_they_expire(local_aws, monkeypatch):
    """A chained role session lasts an hour at most; runs can be longer. Near expiry, calls re-assume the role."""
    from fl_runtime.aws import kickoff

    recorder, _ = local_aws
    _publish_client_settings()
    monkeypatch.setattr(kickoff, "SESSION_SECONDS", 900)  # inside botocore's 15-minute refresh window from the start
    client = KickoffSession.assume(boto3.client("sts"), _client_entry("insurer-a"), "us-east-1", "fl-renew")
    before = len(recorder.of("AssumeRole"))
    assert client.jobs.status("fl-client-nothing")[0] == "Unknown"  # any call will do
    assert client.jobs.read_public_key("ssm:/fl-fraud/client/insurer-a/supernode-keys/fl-client-nothing") is None
    renewed = recorder.of("AssumeRole")[before:]
    assert renewed and all(
        c.body["RoleArn"].endswith(":role/FL-kickoff-client-job") and c.body["ExternalId"] == "fl-insurer-a-x1"
        for c in renewed
    )


def _server(recorder, tmp_path, port: int):
    """The server account's side in moto: its settings in SSM and the staged test set in S3."""
    from fl_runtime.learning.data import write_csv
    from fl_runtime.learning.synthetic import generate

    settings = _server_settings(port)
    boto3.client("ssm").put_parameter(Name="/fl-fraud/server/settings", Value=settings.to_json(), Type="String")
    boto3.client("s3").create_bucket(Bucket=settings.results_bucket)
    write_csv(tmp_path / "test.csv", generate(300, seed=1))
    boto3.client("s3").upload_file(str(tmp_path / "test.csv"), settings.results_bucket, "data/test.csv")
    _publish_client_settings()


def _federate(endpoint, tmp_path):
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "fl_runtime",
            "federate",
            "--address",
            "127.0.0.1",
            "--connect-timeout",
            "30",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env={**dict(__import__("os").environ), **aws.boto_env(endpoint)},
        timeout=300,
    )


def _stop_rule(call):
    return (200, {}) if call.operation == "SageMaker.StopTrainingJob" else None  # moto 5.2.5 answers 500


@pytest.mark.parametrize(
    "code, message, expected, attempts",
    [
        (
            "AccessDeniedException",
            "not authorized to perform sagemaker:CreateTrainingJob",
            "client insurer-b: CreateTrainingJob was denied (AccessDeniedException",
            1,
        ),
        (
            "ThrottlingException",
            "Rate exceeded",
            "client insurer-b: CreateTrainingJob was throttled by AWS (ThrottlingException) after 4 attempts",
            4,
        ),
    ],
)
def test_a_refused_job_names_the_client_and_stops_the_jobs_already_started(
    local_aws, tmp_path, code, message, expected, attempts
):
    from fl_runtime.launch.flower import free_port

    recorder, endpoint = local_aws
    _server(recorder, tmp_path, free_port())
    recorder.rules += [
        _stop_rule,
        lambda c: (
            aws.error(code, message)
            if c.operation == "SageMaker.CreateTrainingJob" and "insurer-b" in c.body.get("TrainingJobName", "")
            else None
        ),
    ]
    done = _federate(endpoint, tmp_path)
    assert done.returncode == 1
    assert expected in done.stderr
    assert (
        len([c for c in recorder.of("SageMaker.CreateTrainingJob") if "insurer-b" in c.body["TrainingJobName"]])
        == attempts
    )
    [first] = [
        c.body["TrainingJobName"]
        for c in recorder.of("SageMaker.CreateTrainingJob")
        if "insurer-a" in c.body["TrainingJobName"]
    ]
    assert [c.body for c in recorder.of("SageMaker.StopTrainingJob")] == [{"TrainingJobName": first}]
    assert not (tmp_path / "out").exists()
