"""A client's launcher: the server asks for a run's job and nothing else; the account builds the job itself.
Hostile requests are refused naming the field, with real boto3 against the moto server where SageMaker is called."""

from __future__ import annotations

import base64
import json

import pytest

from fl_runtime.aws import launcher
from fl_runtime.errors import RequestRefused
from fl_runtime.launch.pki import create_tls
from tests.rehearsal import client_settings

pytestmark = pytest.mark.slow
ACCOUNT = "222222222222"


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory) -> str:
    return create_tls(tmp_path_factory.mktemp("tls") / "tls", ["10.0.1.25"]).ca_certificate.read_text()


@pytest.fixture
def settings():
    return client_settings("insurer-a", ACCOUNT, server_vpc_cidr="10.0.0.0/16").launch


def start(ca_pem: str, **changes) -> dict:
    request = {"action": "start", "run": "run1", "superlink": "10.0.1.25:9092", "ca_certificate": ca_pem}
    return {**request, **changes}


def test_the_job_is_built_from_the_accounts_settings_and_the_runs_three_values(settings, ca_pem):
    request = launcher.training_job_request(settings, "run1", "10.0.1.25:9092", ca_pem)
    assert request["TrainingJobName"] == "fl-client-run1-insurer-a"
    assert request["AlgorithmSpecification"] == {"TrainingImage": settings.training_image, "TrainingInputMode": "File"}
    assert request["RoleArn"] == settings.execution_role_arn
    hyper = request["HyperParameters"]
    assert hyper["sagemaker_program"] == "sagemaker_client.py"
    assert hyper["sagemaker_submit_directory"] == "s3://code-insurer-a/code/source.tar.gz"  # the client's own bucket
    assert hyper["superlink"] == "10.0.1.25:9092" and hyper["client-name"] == "insurer-a"
    assert base64.b64decode(hyper["root-certificate"]).decode() == ca_pem
    assert hyper["public-key-uri"] == "ssm:/fl-fraud/client/insurer-a/supernode-keys/fl-client-run1-insurer-a"
    assert all(isinstance(v, str) and len(v) <= 2500 for v in hyper.values())  # SageMaker's limit per value
    assert request["Environment"] == {"FL_APPROVED_APP_HASHES": settings.approved_app_hashes[0]}
    [channel] = request["InputDataConfig"]
    assert channel["ChannelName"] == "train" and channel["DataSource"]["S3DataSource"]["S3Uri"] == settings.data_uri
    assert request["OutputDataConfig"] == {"S3OutputPath": settings.output_uri, "KmsKeyId": settings.data_key_arn}
    assert request["ResourceConfig"]["InstanceType"] == "ml.m5.large"
    assert request["ResourceConfig"]["VolumeKmsKeyId"] == settings.data_key_arn
    assert request["VpcConfig"] == {"SecurityGroupIds": ["sg-0training"], "Subnets": ["subnet-0a", "subnet-0b"]}
    assert request["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600} and int(hyper["run-timeout"]) < 3600
    text = json.dumps(request)
    assert "PRIVATE KEY" not in text and "SecretAccessKey" not in text  # no secret travels


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"TrainingImage": "attacker.dkr.ecr.us-east-1.amazonaws.com/x:1"}, "field 'TrainingImage' is not accepted"),
        ({"image": "python:3.12"}, "field 'image' is not accepted"),
        ({"Environment": {"PIP_INDEX_URL": "https://evil.example"}}, "field 'Environment' is not accepted"),
        ({"HyperParameters": {"sagemaker_program": "steal.py"}}, "field 'HyperParameters' is not accepted"),
        (
            {"sagemaker_submit_directory": "s3://attacker/code.tar.gz"},
            "field 'sagemaker_submit_directory' is not accepted",
        ),
        ({"InstanceType": "ml.p4d.24xlarge"}, "field 'InstanceType' is not accepted"),
        ({"superlink": "10.9.0.7:9092"}, "field 'superlink': 10.9.0.7 is outside the server VPC 10.0.0.0/16"),
        ({"superlink": "198.51.100.7:9092"}, "field 'superlink': 198.51.100.7 is outside the server VPC"),
        ({"superlink": "10.0.1.25:443"}, "field 'superlink': port 443 is not the federation's port 9092"),
        ({"superlink": "evil.example.com:9092"}, "is not an IPv4 address and port"),
        ({"run": "../../etc"}, "field 'run': '../../etc' is not a run name"),
        ({"run": "r" * 21}, "is not a run name"),
        ({"ca_certificate": "not a certificate"}, "field 'ca_certificate' must be one PEM certificate"),
        ({"action": "exec"}, "field 'action' must be one of start, describe, stop"),
        ({"action": ["start"]}, "field 'action' must be one of start, describe, stop"),
        ({"run": "run1\n"}, "is not a run name"),
        ({"run": 7}, "field 'run' must be a non-empty string"),
        ({"ca_certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n\n"}, "one PEM certificate"),
    ],
)
def test_a_request_with_anything_but_a_run_an_address_and_a_ca_is_refused_naming_the_field(
    settings, ca_pem, changes, message
):
    with pytest.raises(RequestRefused, match=message):
        launcher.check_request(start(ca_pem, **changes), settings)
    answer = launcher.handle(start(ca_pem, **changes), settings, jobs=None)  # type: ignore[arg-type] - never reached
    assert answer["error"].startswith("client insurer-a's launcher refused the request: ")


def test_describe_and_stop_carry_only_the_run(settings):
    with pytest.raises(RequestRefused, match="field 'TrainingJobName' is not accepted: a stop request carries only"):
        launcher.check_request({"action": "stop", "run": "run1", "TrainingJobName": "someone-elses-job"}, settings)
    assert launcher.check_request({"action": "describe", "run": "run1"}, settings) == {
        "action": "describe",
        "run": "run1",
    }


def _in_account(endpoint: str):
    from tests.aws_emulator import account_session

    return account_session(endpoint, ACCOUNT).client("sagemaker", endpoint_url=endpoint)


def test_against_sagemaker_an_honest_request_starts_exactly_the_accounts_job_and_a_hostile_one_starts_nothing(
    local_aws, settings, ca_pem
):
    recorder, endpoint = local_aws
    sagemaker = _in_account(endpoint)
    hostile = launcher.handle(start(ca_pem, HyperParameters={"sagemaker_program": "steal.py"}), settings, sagemaker)
    assert "field 'HyperParameters' is not accepted" in hostile["error"]
    assert recorder.of("SageMaker.CreateTrainingJob") == []
    answer = launcher.handle(start(ca_pem), settings, sagemaker)
    assert answer == {"job": "fl-client-run1-insurer-a", "public_key": launcher.public_key_uri(settings, answer["job"])}
    [created] = recorder.of("SageMaker.CreateTrainingJob")
    assert created.body == launcher.training_job_request(settings, "run1", "10.0.1.25:9092", ca_pem)
    described = launcher.handle({"action": "describe", "run": "run1"}, settings, sagemaker)
    assert described["job"] == "fl-client-run1-insurer-a" and described["status"] in ("InProgress", "Completed")
    arn = sagemaker.describe_training_job(TrainingJobName=answer["job"])["TrainingJobArn"]
    assert arn.split(":")[4] == ACCOUNT  # in the client's own account


def test_the_lambda_entry_point_reads_the_accounts_settings_from_its_environment(
    local_aws, settings, ca_pem, monkeypatch
):
    monkeypatch.setenv(launcher.SETTINGS_ENV, settings.to_json())
    refused = launcher.handler(start(ca_pem, superlink="10.0.1.25:22"), None)
    assert "port 22 is not the federation's port 9092" in refused["error"]
    missing = launcher.handler({"action": "describe", "run": "none"}, None)  # SageMaker's own refusal, as an answer
    assert missing["error"].startswith("client insurer-a's launcher: SageMaker refused:")


class _FailedJobs:
    """SageMaker's answer for a job that failed with these words in its FailureReason."""

    def __init__(self, failure: str) -> None:
        self.failure = failure

    def describe_training_job(self, *, TrainingJobName: str) -> dict:
        return {"TrainingJobName": TrainingJobName, "TrainingJobStatus": "Failed", "FailureReason": self.failure}


@pytest.mark.parametrize(
    "failure, told",
    [
        (
            f"AlgorithmError: ExecuteUserScriptError: exit code 1\nerror: app {'ab' * 32} is not approved by this "
            f"account (approved: {'cd' * 32})",
            f"app {'ab' * 32} is not approved by this account (approved: {'cd' * 32})",
        ),
        (
            "AlgorithmError: error: could not join the federation within 900 s: cannot reach the SuperLink",
            "could not join the federation within 900 s",
        ),
        (
            "AlgorithmError: error: train.csv: column 'total_drug_cost', line 88: '1234.5x' is not a number",
            "the reason stays in client insurer-a's account (log group /aws/sagemaker/TrainingJobs, "
            "fl-client-run1-insurer-a)",
        ),
        (
            "AlgorithmError: Traceback ...\nValueError: row 17 = [0, 4, 1999.25, ...]",
            "the reason stays in client insurer-a's account",
        ),
    ],
)
def test_a_failed_jobs_reason_reaches_the_server_only_as_a_data_free_statement(settings, failure, told):
    described = launcher.handle({"action": "describe", "run": "run1"}, settings, _FailedJobs(failure))  # type: ignore[arg-type]
    assert described["status"] == "Failed"
    assert described["detail"].startswith(told)
    assert "1234.5x" not in described["detail"] and "1999.25" not in described["detail"]


class _NoJobs:
    """A SageMaker that fails the test on any call: a dry run must make none."""

    def __getattr__(self, name: str):
        raise AssertionError(f"a dry run called SageMaker's {name}")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"superlink": "10.9.0.7:9092"}, "field 'superlink': 10.9.0.7 is outside the server VPC 10.0.0.0/16"),
        ({"superlink": "10.0.1.25:443"}, "field 'superlink': port 443 is not the federation's port 9092"),
        ({"ca_certificate": "not a certificate"}, "field 'ca_certificate' must be one PEM certificate"),
        ({"run": "../../etc"}, "field 'run': '../../etc' is not a run name"),
        ({"image": "python:3.12"}, "field 'image' is not accepted: a dry-run request carries only action, run,"),
    ],
)
def test_a_dry_run_is_refused_exactly_as_the_same_start_would_be(settings, ca_pem, changes, message):
    dry_run = launcher.handle(start(ca_pem, action="dry-run", **changes), settings, _NoJobs())  # type: ignore[arg-type]
    as_start = launcher.handle(start(ca_pem, **changes), settings, _NoJobs())  # type: ignore[arg-type]
    assert message in dry_run["error"]
    assert dry_run["error"].replace("dry-run", "start") == as_start["error"]


def test_a_dry_run_answers_the_job_it_would_start_and_the_approved_hashes_and_calls_no_sagemaker(settings, ca_pem):
    answer = launcher.handle(start(ca_pem, action="dry-run"), settings, _NoJobs())  # type: ignore[arg-type]
    assert answer == {"job": "fl-client-run1-insurer-a", "approved_app_hashes": list(settings.approved_app_hashes)}
    assert set(launcher.FIELDS["dry-run"]) == set(launcher.FIELDS["start"])
