"""A client account's launcher: the one thing the server may ask of the account, checked, and the training job
the account builds for it from its own settings.

The server asks for exactly four things, as JSON (a Lambda event in AWS, the same dict in a rehearsal):

- ``{"action": "start", "run": R, "superlink": "HOST:PORT", "ca_certificate": PEM}``: start this account's
  federation job for run R, dialing the SuperLink at HOST:PORT and trusting only that CA. Through PrivateLink
  (``superlink_dns_name`` in its settings) a start carries no ``superlink``: the job dials that name, which this
  account's own VPC answers with its own endpoint, and a request naming an address is refused;
- ``{"action": "describe", "run": R}`` and ``{"action": "stop", "run": R}``: the job of run R;
- ``{"action": "dry-run", ...}`` with exactly the fields of a start: every check a start makes, SageMaker's
  included (it reads, and creates nothing; ``python -m fl_runtime doctor --server`` asks it of every client).

Anything else is refused with an answer that names the field: another action, another field (an image,
environment, hyperparameters, a code location, an instance type...), a run name of another shape, a
SuperLink outside the server VPC or on another port than the federation's, a certificate that is not one
X.509 CA certificate (parsed by OpenSSL, through the standard library's ``ssl``) or whose encoding would not
fit a hyperparameter. What starts cost the account is bounded too: a run gets one job, and the account at
most ``max_jobs_per_day`` in any 24 hours. SageMaker itself is the record (the function keeps no state): a
job's name is its run's, so the launcher describes that name before it creates it, and lists the jobs of
the last 24 hours. The job itself (image, code bundle, entry point, environment with the approved app
hashes, instance type, volume, keys, subnets, security group, runtime, data and output locations) comes
from the account's ``LaunchSettings``, which its client stack wrote. Answers are JSON too:
``{"job": ..., "public_key": ...}``, ``{"job": ..., "status": ..., "detail": ...}``, for a dry run the job a start
would create and the app hashes this account approves ``{"job": ..., "approved_app_hashes": [...]}``, or
``{"error": ...}``.

Standard library and boto3 only (the Lambda runtime's); in AWS ``handler`` is the Lambda's entry point.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from fl_runtime.aws.contract import (
    APPROVED_ENV,
    PINS_ENV,
    RUN_NAME,
    LaunchSettings,
    job_name,
    shareable_failure,
)
from fl_runtime.errors import RequestRefused

START_FIELDS = ("action", "run", "superlink", "ca_certificate")
FIELDS = {
    "start": START_FIELDS,
    "describe": ("action", "run"),
    "stop": ("action", "run"),
    "dry-run": START_FIELDS,  # checked as a start is, and nothing started
}
PRIVATE_NAME_START = ("action", "run", "ca_certificate")  # privatelink: the account chooses where its job dials
SETTINGS_ENV = "FL_LAUNCH_SETTINGS"  # the launcher's LaunchSettings, as JSON (the client stack sets it)
PEM = re.compile(r"^-----BEGIN CERTIFICATE-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END CERTIFICATE-----\r?\n?$")
HYPERPARAMETER_MAX = 2500  # SageMaker's limit on one hyperparameter value: the CA travels in one
# DER: basicConstraints' OBJECT IDENTIFIER (2.5.29.19) element, tbsCertificate's [3] extensions tag, BOOLEAN TRUE
BASIC_CONSTRAINTS, EXTENSIONS, BOOLEAN, TRUE = bytes.fromhex("0603551d13"), 0xA3, 0x01, b"\xff"
DAY = timedelta(hours=24)  # the window max_jobs_per_day counts
LIST_PAGE = 100  # ListTrainingJobs' largest page
# SageMaker's answer to describing a job that does not exist: ValidationException "Requested resource not found."
# (moto, the tests' SageMaker: "Could not find training job ...")
NOT_FOUND = re.compile(r"not found|could not find", re.IGNORECASE)


class TrainingJobs(Protocol):
    """The SageMaker calls a launcher makes (boto3's client in AWS, ``local_jobs.LocalJobs`` in a rehearsal)."""

    def create_training_job(self, **request: Any) -> Any: ...
    def describe_training_job(self, *, TrainingJobName: str) -> dict: ...
    def stop_training_job(self, *, TrainingJobName: str) -> Any: ...
    def list_training_jobs(
        self, *, NameContains: str, CreationTimeAfter: datetime, MaxResults: int, NextToken: str = ...
    ) -> dict: ...


def _string(request: dict, field: str) -> str:
    value = request.get(field)
    if not isinstance(value, str) or not value:
        raise RequestRefused(f"field '{field}' must be a non-empty string")
    return value


def check_request(request: Any, settings: LaunchSettings) -> dict[str, str]:
    """The request, if it is one the server may make of this account; RequestRefused otherwise."""
    if not isinstance(request, dict):
        raise RequestRefused("the request must be a JSON object")
    action = request.get("action")
    if not isinstance(action, str) or action not in FIELDS:
        raise RequestRefused(f"field 'action' must be one of {', '.join(FIELDS)}, got {action!r}")
    allowed = FIELDS[action]
    if settings.superlink_dns_name and allowed == START_FIELDS:
        allowed = PRIVATE_NAME_START
        if "superlink" in request:
            raise RequestRefused(
                f"field 'superlink' is not accepted: this account reaches the federation through its own endpoint, "
                f"as {settings.superlink_dns_name}:{settings.flower_port}, never at an address the server sends"
            )
    for field in request:
        if field not in allowed:
            raise RequestRefused(
                f"field '{field}' is not accepted: a {action} request carries only {', '.join(allowed)}"
            )
    if not RUN_NAME.fullmatch(_string(request, "run")):
        raise RequestRefused(
            f"field 'run': {request['run']!r} is not a run name (up to 20 letters, digits and hyphens)"
        )
    if action in ("start", "dry-run"):
        if settings.superlink_dns_name:
            request = {**request, "superlink": f"{settings.superlink_dns_name}:{settings.flower_port}"}
        else:
            _check_superlink(_string(request, "superlink"), settings)
        _check_certificate(_string(request, "ca_certificate"))
    return dict(request)


def _check_superlink(value: str, settings: LaunchSettings) -> None:
    """An address in the server VPC, on the federation's port: a job is never pointed at any other host."""
    host, _, port = value.rpartition(":")
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise RequestRefused(f"field 'superlink': {value!r} is not an IPv4 address and port") from None
    if address not in ipaddress.IPv4Network(settings.server_vpc_cidr):
        raise RequestRefused(f"field 'superlink': {host} is outside the server VPC {settings.server_vpc_cidr}")
    if port != str(settings.flower_port):
        raise RequestRefused(
            f"field 'superlink': port {port or '(none)'} is not the federation's port {settings.flower_port}"
        )


def _check_certificate(value: str) -> None:
    """One PEM certificate, whose encoding fits the job's hyperparameter, that is an X.509 CA certificate."""
    match = PEM.fullmatch(value)
    if not match:
        raise RequestRefused("field 'ca_certificate' must be one PEM certificate (-----BEGIN CERTIFICATE----- ...)")
    encoded = len(certificate_hyperparameter(value))
    if encoded > HYPERPARAMETER_MAX:
        raise RequestRefused(
            f"field 'ca_certificate': the job would receive it base64-encoded in its hyperparameter root-certificate, "
            f"{encoded} characters, over SageMaker's limit of {HYPERPARAMETER_MAX} for a hyperparameter value"
        )
    try:
        der = base64.b64decode("".join(match.group(1).split()), validate=True)
    except binascii.Error:
        raise RequestRefused("field 'ca_certificate': the certificate is not valid base64") from None
    _check_ca(der)


def _check_ca(der: bytes) -> None:
    """One X.509 certificate as OpenSSL parses it (the standard library's ``ssl``: the Lambda runtime has no other
    X.509 parser), that is a CA: BasicConstraints CA:TRUE, and a CA to OpenSSL (its key usage, if any, allows
    signing certificates)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts no certificate until this one is loaded
    try:
        context.load_verify_locations(cadata=der)
        is_ca = _basic_constraints_ca(der)
    except (ssl.SSLError, ValueError, IndexError):
        raise RequestRefused("field 'ca_certificate': not an X.509 certificate") from None
    if not is_ca or context.cert_store_stats()["x509_ca"] != 1:
        raise RequestRefused(
            "field 'ca_certificate': not a CA certificate (a run's CA has BasicConstraints CA:TRUE and may sign "
            "certificates)"
        )


def _basic_constraints_ca(der: bytes) -> bool:
    """Whether a certificate OpenSSL parsed has BasicConstraints with cA TRUE. ``ssl`` reports no extensions, so
    this follows the DER to that one; ValueError (or IndexError) where the DER is not what X.509 says."""
    _, start, end = _element(der, 0)  # Certificate
    if end != len(der):
        raise ValueError("data after the certificate")
    _, start, end = _element(der, start)  # tbsCertificate
    for tag, content, _ in _children(der, start, end):
        if tag == EXTENSIONS:
            _, start, end = _element(der, content)  # SEQUENCE OF Extension
            return any(_is_ca_extension(der, first, last) for _, first, last in _children(der, start, end))
    return False


def _is_ca_extension(der: bytes, start: int, end: int) -> bool:
    """Whether the Extension in der[start:end] (extnID, critical?, extnValue) is BasicConstraints with cA TRUE."""
    fields = list(_children(der, start, end))
    if der[start : fields[0][2]] != BASIC_CONSTRAINTS:
        return False
    _, first, last = _element(der, fields[-1][1])  # BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, ... }
    ca = next(_children(der, first, last), None)
    return ca is not None and ca[0] == BOOLEAN and der[ca[1] : ca[2]] == TRUE


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at ``at``: its tag, where its content starts and where it ends."""
    tag, size, start = der[at], der[at + 1], at + 2
    if size & 0x80:  # the length in the next (size & 0x7f) bytes; 0 would be BER's indefinite length
        count = size & 0x7F
        if not 1 <= count <= 4:
            raise ValueError("not a DER length")
        size, start = int.from_bytes(der[start : start + count], "big"), start + count
    if start + size > len(der):
        raise ValueError("an element runs past the data")
    return tag, start, start + size


def _children(der: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """The elements, one after another, that der[start:end] holds."""
    while start < end:
        tag, content, start = _element(der, start)
        if start > end:
            raise ValueError("an element runs past its parent")
        yield tag, content, start


def certificate_hyperparameter(ca_certificate: str) -> str:
    """The CA as the job receives it: its PEM, base64-encoded, in the hyperparameter ``root-certificate``."""
    return base64.b64encode(ca_certificate.encode("ascii")).decode("ascii")


def check_start_bounds(settings: LaunchSettings, jobs: TrainingJobs, run: str) -> None:
    """What a start may cost the account: the run has no job yet, and fewer than ``max_jobs_per_day`` jobs started
    in the last 24 hours; RequestRefused naming the bound otherwise. Reads SageMaker, creates nothing."""
    job = job_name(settings.training_job_prefix, run, settings.client)
    existing = existing_job(jobs, job)
    if existing is not None:
        raise RequestRefused(
            f"run {run} already has job {job} (status {existing.get('TrainingJobStatus', 'unknown')}); "
            "a run gets one job per client"
        )
    started = jobs_started_since(settings, jobs, datetime.now(UTC) - DAY)
    if started >= settings.max_jobs_per_day:
        raise RequestRefused(
            f"client {settings.client} already started {started} federation jobs in the last 24 hours; its limit "
            f"(max_jobs_per_day) is {settings.max_jobs_per_day}"
        )


def existing_job(jobs: TrainingJobs, job: str) -> dict | None:
    """SageMaker's description of the training job named ``job``, or None when there is none."""
    from botocore.exceptions import ClientError

    try:
        return jobs.describe_training_job(TrainingJobName=job)
    except ClientError as error:
        details = error.response.get("Error", {})
        code, message = details.get("Code"), details.get("Message", "")
        if code == "ResourceNotFound" or (code == "ValidationException" and NOT_FOUND.search(message)):
            return None
        raise


def jobs_started_since(settings: LaunchSettings, jobs: TrainingJobs, since: datetime) -> int:
    """How many of this client's federation jobs (``<prefix>-<run>-<client>``) SageMaker created after ``since``,
    over every page of ListTrainingJobs."""
    prefix, suffix = f"{settings.training_job_prefix}-", f"-{settings.client}"
    request: dict[str, Any] = {
        "NameContains": settings.training_job_prefix,
        "CreationTimeAfter": since,
        "MaxResults": LIST_PAGE,
    }
    count = 0
    while True:
        page = jobs.list_training_jobs(**request)
        for summary in page.get("TrainingJobSummaries", []):
            name = summary["TrainingJobName"]
            if name.startswith(prefix) and name.endswith(suffix) and summary["CreationTime"] > since:
                count += 1
        if not page.get("NextToken"):
            return count
        request["NextToken"] = page["NextToken"]


def public_key_uri(settings: LaunchSettings, job: str) -> str:
    """``ssm:<parameter>`` where the job publishes its SuperNode's public key, in this account."""
    return f"ssm:{settings.public_key_parameter_prefix}/{job}"


def training_job_request(settings: LaunchSettings, run: str, superlink: str, ca_certificate: str) -> dict:
    """The CreateTrainingJob request: script mode, everything from the account's settings but the run's three values."""
    name = job_name(settings.training_job_prefix, run, settings.client)
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": settings.training_image, "TrainingInputMode": "File"},
        "RoleArn": settings.execution_role_arn,
        "HyperParameters": {
            "sagemaker_program": settings.entry_point,
            "sagemaker_submit_directory": settings.source_uri,
            "sagemaker_region": settings.region,
            "superlink": superlink,
            "root-certificate": certificate_hyperparameter(ca_certificate),
            "client-name": settings.client,
            "public-key-uri": public_key_uri(settings, name),
            "connect-timeout": str(settings.connect_seconds),
            "run-timeout": str(settings.max_training_seconds - 60),  # the job gives up before SageMaker stops it
        },
        "Environment": {
            APPROVED_ENV: ",".join(settings.approved_app_hashes),
            PINS_ENV: f"ssm:{settings.pins_parameter}",  # where the pins are: they are too long for the environment
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": settings.data_uri,
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": settings.output_uri, "KmsKeyId": settings.data_key_arn},
        "ResourceConfig": {
            "InstanceType": settings.training_instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": settings.volume_size_gb,
            "VolumeKmsKeyId": settings.data_key_arn,
        },
        "VpcConfig": {"SecurityGroupIds": [settings.training_security_group_id], "Subnets": list(settings.subnet_ids)},
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_training_seconds},
        "EnableNetworkIsolation": False,  # the job dials the server's Fleet API (peering, or this VPC's endpoint)
    }


def handle(request: Any, settings: LaunchSettings, jobs: TrainingJobs) -> dict:
    """Carry out one request; a refusal is an answer too (``{"error": ...}``), never a job."""
    try:
        checked = check_request(request, settings)
        if checked["action"] in ("start", "dry-run"):
            check_start_bounds(settings, jobs, checked["run"])
    except RequestRefused as refusal:
        return {"error": f"client {settings.client}'s launcher refused the request: {refusal}"}
    job = job_name(settings.training_job_prefix, checked["run"], settings.client)
    if checked["action"] == "dry-run":  # the request passed every check a start makes: say what it would do
        return {"job": job, "approved_app_hashes": list(settings.approved_app_hashes)}
    if checked["action"] == "start":
        jobs.create_training_job(
            **training_job_request(settings, checked["run"], checked["superlink"], checked["ca_certificate"])
        )
        return {"job": job, "public_key": public_key_uri(settings, job)}
    if checked["action"] == "stop":
        jobs.stop_training_job(TrainingJobName=job)
        return {"job": job, "stopped": True}
    described = jobs.describe_training_job(TrainingJobName=job)
    failure = described.get("FailureReason")
    if failure:  # the job's own words may quote the data: only a data-free statement leaves the account
        kept = f"the reason stays in client {settings.client}'s account (log group /aws/sagemaker/TrainingJobs, {job})"
        detail = shareable_failure(failure) or kept
    else:
        detail = described.get("SecondaryStatus", "")
    return {"job": job, "status": described["TrainingJobStatus"], "detail": detail}


def answer(request: Any, settings: LaunchSettings, sagemaker: Any) -> dict:
    """``handle`` with boto3's SageMaker: an AWS error answers as an error naming the call, for the server to report."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return handle(request, settings, sagemaker)
    except (ClientError, BotoCoreError) as error:
        return {"error": f"client {settings.client}'s launcher: SageMaker refused: {error}"}


def handler(event: Any, context: Any) -> dict:
    """The Lambda entry point: this account's settings from the function's environment, SageMaker through boto3."""
    import boto3

    settings = LaunchSettings.from_json(os.environ[SETTINGS_ENV], f"the launcher's {SETTINGS_ENV}")
    return answer(event, settings, boto3.client("sagemaker", region_name=settings.region))
