"""A client's launcher: the server asks for a run's job and nothing else; the account builds the job itself.
Hostile requests are refused naming the field, with real boto3 against the moto server where SageMaker is called;
so are a run's second job and the jobs past the account's daily limit, and a CA certificate that is not one."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json

import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

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
    assert request["Environment"] == {
        "FL_APPROVED_APP_HASHES": settings.approved_app_hashes[0],
        "FL_MEMBER_PINS": f"ssm:{settings.pins_parameter}",  # where its pins are, in its own account: not the pins
    }
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
    """A SageMaker that fails the test on any call: a request refused by its fields must make none."""

    def __getattr__(self, name: str):
        raise AssertionError(f"a refused request called SageMaker's {name}")


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


def _not_found(operation: str) -> ClientError:
    """What boto3 raises when SageMaker has no job of the name asked for."""
    return ClientError(
        {"Error": {"Code": "ValidationException", "Message": "Requested resource not found."}}, operation
    )


class _ReadOnlyJobs:
    """A SageMaker with no jobs that records what it is asked and fails the test on a create or a stop."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def describe_training_job(self, *, TrainingJobName: str) -> dict:
        self.calls.append(f"describe {TrainingJobName}")
        raise _not_found("DescribeTrainingJob")

    def list_training_jobs(self, **request) -> dict:
        self.calls.append(f"list {request['NameContains']}")
        return {"TrainingJobSummaries": []}

    def __getattr__(self, name: str):
        raise AssertionError(f"a dry run called SageMaker's {name}")


def test_a_dry_run_answers_the_job_it_would_start_and_the_approved_hashes_and_creates_nothing(settings, ca_pem):
    jobs = _ReadOnlyJobs()
    answer = launcher.handle(start(ca_pem, action="dry-run"), settings, jobs)
    assert answer == {"job": "fl-client-run1-insurer-a", "approved_app_hashes": list(settings.approved_app_hashes)}
    assert jobs.calls == ["describe fl-client-run1-insurer-a", "list fl-client"]  # a start's checks, reads only
    assert set(launcher.FIELDS["dry-run"]) == set(launcher.FIELDS["start"])


# --- what starts may cost the account: one job per run, max_jobs_per_day in 24 hours --------------------------------


def test_a_second_start_for_a_run_is_refused_naming_its_job_and_creates_nothing(local_aws, settings, ca_pem):
    recorder, endpoint = local_aws
    sagemaker = _in_account(endpoint)
    assert launcher.handle(start(ca_pem), settings, sagemaker)["job"] == "fl-client-run1-insurer-a"
    again = launcher.handle(start(ca_pem), settings, sagemaker)
    dry_run = launcher.handle(start(ca_pem, action="dry-run"), settings, sagemaker)
    status = sagemaker.describe_training_job(TrainingJobName="fl-client-run1-insurer-a")["TrainingJobStatus"]
    assert again == {
        "error": "client insurer-a's launcher refused the request: run run1 already has job fl-client-run1-insurer-a "
        f"(status {status}); a run gets one job per client"
    }
    assert dry_run == again  # a dry run says what the start would do
    assert len(recorder.of("SageMaker.CreateTrainingJob")) == 1
    another_run = launcher.handle(start(ca_pem, run="run2"), settings, sagemaker)
    assert another_run["job"] == "fl-client-run2-insurer-a"  # the bound is per run


def test_a_start_past_the_daily_limit_is_refused_naming_it_and_other_clients_jobs_do_not_count(
    local_aws, settings, ca_pem
):
    recorder, endpoint = local_aws
    sagemaker = _in_account(endpoint)
    limited = dataclasses.replace(settings, max_jobs_per_day=2)
    other_client = dataclasses.replace(settings, client="insurer-b")
    for run in ("other1", "other2"):  # jobs of the same prefix in this account, but not this client's
        sagemaker.create_training_job(**launcher.training_job_request(other_client, run, "10.0.1.25:9092", ca_pem))
    assert launcher.handle(start(ca_pem, run="run1"), limited, sagemaker)["job"] == "fl-client-run1-insurer-a"
    assert launcher.handle(start(ca_pem, run="run2"), limited, sagemaker)["job"] == "fl-client-run2-insurer-a"
    third = launcher.handle(start(ca_pem, run="run3"), limited, sagemaker)
    dry_run = launcher.handle(start(ca_pem, run="run3", action="dry-run"), limited, sagemaker)
    assert third == {
        "error": "client insurer-a's launcher refused the request: client insurer-a already started 2 federation "
        "jobs in the last 24 hours; its limit (max_jobs_per_day) is 2"
    }
    assert dry_run == third
    created = [call.body["TrainingJobName"] for call in recorder.of("SageMaker.CreateTrainingJob")]
    assert created == [
        "fl-client-other1-insurer-b",
        "fl-client-other2-insurer-b",
        "fl-client-run1-insurer-a",
        "fl-client-run2-insurer-a",
    ]
    listed = recorder.of("SageMaker.ListTrainingJobs")[-1].body
    since = dt.datetime.fromtimestamp(listed["CreationTimeAfter"], dt.UTC)
    assert listed["NameContains"] == "fl-client"
    assert abs(dt.datetime.now(dt.UTC) - dt.timedelta(hours=24) - since) < dt.timedelta(minutes=1)


class _Pages:
    """ListTrainingJobs as crafted pages (moto cannot backdate a job's CreationTime), recording each request.
    It ignores CreationTimeAfter, as a page holding an older job would: the launcher must not count that job."""

    def __init__(self, pages: list[list[tuple[str, dt.datetime]]]) -> None:
        self.pages = pages
        self.requests: list[dict] = []

    def list_training_jobs(self, **request) -> dict:
        self.requests.append(request)
        index = int(request.get("NextToken", 0))
        summaries = [
            {"TrainingJobName": name, "CreationTime": created, "TrainingJobStatus": "Completed"}
            for name, created in self.pages[index]
        ]
        more = {"NextToken": str(index + 1)} if index + 1 < len(self.pages) else {}
        return {"TrainingJobSummaries": summaries, **more}


def test_jobs_older_than_a_day_of_another_client_or_of_another_prefix_do_not_count_on_any_page(settings):
    """moto sets CreationTime itself, so the 24-hour window is tested here with crafted ListTrainingJobs pages."""
    now = dt.datetime.now(dt.UTC)
    since, hour = now - launcher.DAY, dt.timedelta(hours=1)
    jobs = _Pages(
        [
            [("fl-client-r1-insurer-a", now - hour), ("fl-client-r0-insurer-a", now - 25 * hour)],
            [("fl-client-r2-insurer-b", now - hour), ("old-fl-client-r3-insurer-a", now - hour)],
            [("fl-client-r4-xinsurer-a", now - hour), ("fl-client-r5-insurer-a", since + hour)],
        ]
    )
    assert launcher.jobs_started_since(settings, jobs, since) == 2  # type: ignore[arg-type]  # r1 and r5
    assert [request.get("NextToken") for request in jobs.requests] == [None, "1", "2"]
    assert jobs.requests[0] == {"NameContains": "fl-client", "CreationTimeAfter": since, "MaxResults": 100}


def test_only_sagemakers_answer_that_the_job_does_not_exist_lets_a_start_go_on(local_aws, settings, ca_pem):
    """Any other failure of the check (here: access denied) is SageMaker's refusal, and no job is created."""
    from tests.aws_emulator import error

    recorder, endpoint = local_aws
    denied = error("AccessDeniedException", "not authorized to perform sagemaker:DescribeTrainingJob")
    recorder.rules.append(lambda call: denied if call.operation == "SageMaker.DescribeTrainingJob" else None)
    answer = launcher.answer(start(ca_pem), settings, _in_account(endpoint))
    assert answer["error"].startswith("client insurer-a's launcher: SageMaker refused: An error occurred (AccessDenied")
    assert recorder.of("SageMaker.CreateTrainingJob") == []
    assert launcher.existing_job(_ReadOnlyJobs(), "fl-client-run1-insurer-a") is None


# --- the CA certificate: one X.509 CA certificate whose encoding fits a hyperparameter --------------------------------


def _certificate(
    *, ca: bool | None, cert_sign: bool | None = True, subject_attributes: int = 1, path_length: int | None = 0
) -> str:
    """A self-signed certificate as PEM: BasicConstraints CA:``ca`` (none when None), a key usage allowing
    certificate signing or not (none when None), ``subject_attributes`` organisational units in its subject."""
    key = ec.generate_private_key(ec.SECP256R1())
    units = [
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit {i:03d} " + "x" * 40)
        for i in range(1, subject_attributes)
    ]
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a CA"), *units])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if cert_sign is not None:
        usage = x509.KeyUsage(not cert_sign, False, False, False, False, cert_sign, cert_sign, False, False)
        builder = builder.add_extension(usage, critical=True)
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _armoured(der: bytes) -> str:
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


def _der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_bytes(serialization.Encoding.DER)


def test_the_projects_own_run_ca_is_a_ca_and_is_accepted(settings, ca_pem):
    constraints = x509.load_pem_x509_certificate(ca_pem.encode()).extensions.get_extension_for_class(
        x509.BasicConstraints
    )
    assert constraints.value.ca is True  # create_tls makes a CA, as the launcher requires
    assert launcher.check_request(start(ca_pem), settings)["ca_certificate"] == ca_pem
    assert len(launcher.certificate_hyperparameter(ca_pem)) <= launcher.HYPERPARAMETER_MAX


@pytest.mark.parametrize(
    "der",
    [
        b"\x30\x82\x01\x00" + bytes(range(256)),  # a SEQUENCE of garbage: the old check (DER starts 0x30) took it
        b"\x30\x03\x02\x01\x01",  # a SEQUENCE holding one INTEGER
    ],
)
def test_garbage_in_valid_pem_armour_is_not_an_x509_certificate(settings, ca_pem, der):
    with pytest.raises(RequestRefused, match="^field 'ca_certificate': not an X.509 certificate$"):
        launcher.check_request(start(ca_pem, ca_certificate=_armoured(der)), settings)


def test_a_certificate_with_data_after_it_or_two_certificates_in_one_armour_are_refused(settings, ca_pem):
    for der in (_der(ca_pem) + b"\x05\x00", _der(ca_pem) + _der(ca_pem)):
        with pytest.raises(RequestRefused, match="not an X.509 certificate"):
            launcher.check_request(start(ca_pem, ca_certificate=_armoured(der)), settings)


def test_a_certificate_that_is_not_a_ca_is_refused(settings, ca_pem, tmp_path):
    leaf = create_tls(tmp_path / "tls", ["10.0.1.25"]).server_certificate.read_text()  # the run's server certificate
    for certificate in (
        leaf,
        _certificate(ca=False),
        _certificate(ca=None),  # key usage allows signing, which OpenSSL alone would call a CA
        _certificate(ca=True, cert_sign=False),  # BasicConstraints CA, but its key may not sign certificates
    ):
        with pytest.raises(RequestRefused, match=r"^field 'ca_certificate': not a CA certificate \(a run's CA has"):
            launcher.check_request(start(ca_pem, ca_certificate=certificate), settings)
    launcher.check_request(start(ca_pem, ca_certificate=_certificate(ca=True, cert_sign=None)), settings)


def test_a_valid_ca_too_long_for_a_hyperparameter_is_refused_naming_the_limit_and_its_length(settings, ca_pem):
    long_ca = _certificate(ca=True, subject_attributes=10)
    encoded = len(base64.b64encode(long_ca.encode()))
    assert encoded > 2500 and len(_der(long_ca)) < 2500  # a real CA, too long only once encoded for SageMaker
    with pytest.raises(RequestRefused) as refused:
        launcher.check_request(start(ca_pem, ca_certificate=long_ca), settings)
    assert str(refused.value) == (
        f"field 'ca_certificate': the job would receive it base64-encoded in its hyperparameter root-certificate, "
        f"{encoded} characters, over SageMaker's limit of 2500 for a hyperparameter value"
    )


@pytest.mark.parametrize(
    "options",
    [
        {"ca": True},
        {"ca": True, "path_length": None},
        {"ca": True, "cert_sign": None},
        {"ca": False},
        {"ca": None},
        {"ca": None, "cert_sign": None},
        {"ca": True, "subject_attributes": 12},
    ],
)
def test_basic_constraints_are_read_from_the_der_as_cryptography_reads_them(options):
    der = _der(_certificate(**options))
    try:
        expected = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        assert launcher._basic_constraints_ca(der) is False
    else:
        assert launcher._basic_constraints_ca(der) is expected.value.ca


# --- through PrivateLink: the account, not the server, says where its job dials ---------------------------------------


@pytest.fixture
def private_settings():
    return client_settings(
        "insurer-a", ACCOUNT, server_vpc_cidr="10.0.0.0/16", private_name="superlink.fl.internal"
    ).launch


@pytest.mark.parametrize("action", ["start", "dry-run"])
def test_through_privatelink_a_server_sent_address_is_refused_even_inside_the_server_vpc(
    private_settings, ca_pem, action
):
    for address in ("10.0.1.25:9092", "superlink.fl.internal:9092", "attacker.example:9092"):
        answer = launcher.handle(start(ca_pem, action=action, superlink=address), private_settings, _NoJobs())  # type: ignore[arg-type]
        assert answer["error"] == (
            "client insurer-a's launcher refused the request: field 'superlink' is not accepted: this account reaches "
            "the federation through its own endpoint, as superlink.fl.internal:9092, never at an address the server "
            "sends"
        )


def test_through_privatelink_the_job_dials_the_accounts_private_name(private_settings, ca_pem):
    request = {"action": "start", "run": "run1", "ca_certificate": ca_pem}
    jobs = _ReadOnlyJobs()
    assert (
        launcher.handle({**request, "action": "dry-run"}, private_settings, jobs)["job"] == "fl-client-run1-insurer-a"
    )
    checked = launcher.check_request(request, private_settings)
    assert checked["superlink"] == "superlink.fl.internal:9092"
    job = launcher.training_job_request(private_settings, "run1", checked["superlink"], ca_pem)
    assert job["HyperParameters"]["superlink"] == "superlink.fl.internal:9092"
    # with peering the same request, without an address, is refused: the address is what the server must send
    peering = client_settings("insurer-a", ACCOUNT, server_vpc_cidr="10.0.0.0/16").launch
    with pytest.raises(RequestRefused, match="field 'superlink' must be a non-empty string"):
        launcher.check_request(request, peering)
