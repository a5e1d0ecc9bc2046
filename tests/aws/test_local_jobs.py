"""LocalJobs, SageMaker's stand-in: the script-mode contract a training job sees, and its life cycle, through
the four calls a client's launcher makes, answered as boto3 answers them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import sys
import tarfile
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from fl_runtime.aws import launcher
from fl_runtime.aws.local_jobs import LocalJobs, LocalLauncher
from fl_runtime.errors import BadInput
from fl_runtime.launch.flower import IDLE_POLL_ENV
from fl_runtime.launch.pki import create_tls
from stacks.bundle.builder import write_tarball

PROGRAM = """
import json, os, sys, time
args = sys.argv[1:]
model = os.environ["SM_MODEL_DIR"]
seen = {
    "args": args,
    "cwd": os.getcwd(),
    "env": {k: v for k, v in os.environ.items() if k.startswith(("SM_", "FL_")) or k == "TRAINING_JOB_NAME"},
    "train": sorted(os.listdir(os.environ["SM_CHANNEL_TRAIN"])),
    "code": sorted(os.listdir(".")),
    "pip": os.environ.get("PIP_INDEX_URL"),
}
open(os.path.join(model, "seen.json"), "w").write(json.dumps(seen))
mode = dict(zip(args[::2], args[1::2])).get("--mode")
if mode == "fail":
    print("something went wrong in the job")
    sys.exit(3)
if mode == "wait":
    time.sleep(120)
"""


@pytest.fixture
def buckets(tmp_path) -> dict[str, Path]:
    folders = {name: tmp_path / name for name in ("code", "data", "artifacts")}
    write_tarball(folders["code"] / "code" / "source.tar.gz", {"job.py": PROGRAM.encode(), "helper.txt": b"x"})
    (folders["data"] / "data_prep").mkdir(parents=True)
    (folders["data"] / "data_prep" / "train.csv").write_text("a\n")
    (folders["data"] / "data_prep" / "validation.csv").write_text("b\n")
    return folders


def request(name: str, mode: str) -> dict:
    return {
        "TrainingJobName": name,
        "HyperParameters": {
            "sagemaker_program": "job.py",
            "sagemaker_submit_directory": "s3://code/code/source.tar.gz",
            "sagemaker_region": "us-east-1",
            "mode": mode,
            "client-name": "insurer-a",
            "public-key-uri": "ssm:/fl-fraud/client/insurer-a/supernode-keys/job",
        },
        "Environment": {"FL_APPROVED_APP_HASHES": "ab" * 32},
        "InputDataConfig": [
            {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://data/data_prep/"}}}
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://artifacts/client_artifact/"},
    }


def status(jobs: LocalJobs, name: str) -> tuple[str, str]:
    described = jobs.describe_training_job(TrainingJobName=name)
    return described["TrainingJobStatus"], described["FailureReason"]


def wait_for_end(jobs: LocalJobs, name: str, timeout: float = 60.0) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while status(jobs, name)[0] == "InProgress" and time.monotonic() < deadline:
        time.sleep(0.1)
    return status(jobs, name)


def test_a_job_sees_the_script_mode_contract_and_its_model_is_packed_like_sagemaker_does(
    tmp_path, buckets, monkeypatch
):
    monkeypatch.setenv("PIP_INDEX_URL", "https://example.invalid/simple")  # a job never inherits pip settings
    monkeypatch.delenv(IDLE_POLL_ENV, raising=False)  # the suite's own setting (tests/conftest.py), not SageMaker's
    jobs = LocalJobs(tmp_path / "jobs", buckets, sys.executable)
    assert jobs.create_training_job(**request("fl-client-run-a", "ok"))["TrainingJobArn"].endswith("/fl-client-run-a")
    assert wait_for_end(jobs, "fl-client-run-a") == ("Completed", "")
    artifact = buckets["artifacts"] / "client_artifact" / "fl-client-run-a" / "output" / "model.tar.gz"
    with tarfile.open(artifact) as archive:
        seen = json.loads(archive.extractfile("seen.json").read())
    # sagemaker_* are the toolkit's, not the program's; an SSM parameter is a file of the rehearsal
    key_file = (tmp_path / "jobs" / "ssm" / "fl-fraud/client/insurer-a/supernode-keys/job").as_uri()
    assert seen["args"] == ["--client-name", "insurer-a", "--mode", "ok", "--public-key-uri", key_file]
    assert seen["code"] == ["helper.txt", "job.py"] and Path(seen["cwd"]).name == "code"
    assert seen["train"] == ["train.csv", "validation.csv"]
    assert set(seen["env"]) == {
        "SM_CHANNEL_TRAIN",
        "SM_MODEL_DIR",
        "SM_OUTPUT_DATA_DIR",
        "TRAINING_JOB_NAME",
        "FL_APPROVED_APP_HASHES",
    }
    assert seen["env"]["FL_APPROVED_APP_HASHES"] == "ab" * 32  # the request's environment reaches the program
    assert seen["env"]["TRAINING_JOB_NAME"] == "fl-client-run-a" and seen["pip"] is None


def test_a_failing_job_reports_the_end_of_its_log_and_packs_nothing(tmp_path, buckets):
    jobs = LocalJobs(tmp_path / "jobs", buckets, sys.executable)
    jobs.create_training_job(**request("fl-client-run-b", "fail"))
    status, detail = wait_for_end(jobs, "fl-client-run-b")
    assert status == "Failed" and "something went wrong in the job" in detail
    assert not (buckets["artifacts"] / "client_artifact" / "fl-client-run-b").exists()


def test_a_stopped_job_is_stopped_for_good(tmp_path, buckets):
    jobs = LocalJobs(tmp_path / "jobs", buckets, sys.executable)
    jobs.create_training_job(**request("fl-client-run-c", "wait"))
    assert status(jobs, "fl-client-run-c") == ("InProgress", "")
    jobs.stop_training_job(TrainingJobName="fl-client-run-c")
    assert status(jobs, "fl-client-run-c") == ("Stopped", "stopped by the federation")
    assert jobs.supervisor.exited()["fl-client-run-c"] != 0


def test_a_location_no_folder_stands_in_for_is_refused_naming_the_bucket(tmp_path, buckets):
    jobs = LocalJobs(tmp_path / "jobs", buckets, sys.executable)
    with pytest.raises(BadInput, match="s3://elsewhere/code.tar.gz: no local folder stands in for bucket elsewhere"):
        jobs.local_path("s3://elsewhere/code.tar.gz")


def test_an_unknown_job_is_refused_as_sagemaker_would(tmp_path, buckets):
    jobs = LocalJobs(tmp_path / "jobs", buckets, sys.executable)
    for call in (jobs.describe_training_job, jobs.stop_training_job):
        with pytest.raises(ClientError) as refused:
            call(TrainingJobName="fl-client-none")
        assert refused.value.response["Error"] == {
            "Code": "ValidationException",
            "Message": "Requested resource not found.",
        }
    assert launcher.existing_job(jobs, "fl-client-none") is None  # what the launcher reads as "no such job"


def test_jobs_are_listed_as_sagemaker_lists_them_by_name_creation_time_and_page(tmp_path, buckets):
    jobs = LocalJobs(tmp_path / "jobs", buckets, sys.executable)
    before = dt.datetime.now(dt.UTC)
    for name in ("fl-client-r1-a", "fl-client-r2-a", "other-r3-a"):
        jobs.create_training_job(**request(name, "ok"))
    first = jobs.list_training_jobs(NameContains="fl-client", CreationTimeAfter=before, MaxResults=1)
    second = jobs.list_training_jobs(NameContains="fl-client", CreationTimeAfter=before, NextToken=first["NextToken"])
    [summary] = first["TrainingJobSummaries"]
    assert summary["TrainingJobName"] == "fl-client-r1-a" and summary["TrainingJobArn"].endswith("/fl-client-r1-a")
    assert before < summary["CreationTime"] <= dt.datetime.now(dt.UTC)
    assert summary["TrainingJobStatus"] in ("InProgress", "Completed")
    assert [s["TrainingJobName"] for s in second["TrainingJobSummaries"]] == ["fl-client-r2-a"]
    assert "NextToken" not in second
    later = jobs.list_training_jobs(CreationTimeAfter=dt.datetime.now(dt.UTC))
    assert later == {"TrainingJobSummaries": []}
    with pytest.raises(ClientError, match="Invalid pagination token"):
        jobs.list_training_jobs(NextToken="not-a-token")
    jobs.stop_all()


def test_the_local_launcher_runs_the_launchers_own_checks_and_reads_keys_from_the_rehearsals_ssm(tmp_path, buckets):
    from tests.rehearsal import client_settings

    jobs = LocalJobs(tmp_path / "jobs", buckets, sys.executable)
    launcher = LocalLauncher(client_settings("insurer-a", "222222222222").launch, jobs)
    refused = launcher.call({"action": "start", "run": "r1", "superlink": "127.0.0.1:9092", "image": "x"})
    assert "field 'image' is not accepted" in refused["error"] and jobs.requests == {}
    assert launcher.status("r1") == (
        "Unknown",
        "client insurer-a's launcher: SageMaker refused: An error occurred (ValidationException) when calling the "
        "DescribeTrainingJob operation: Requested resource not found.",
    )
    uri = "ssm:/fl-fraud/client/insurer-a/supernode-keys/fl-client-r1-insurer-a"
    assert launcher.read_public_key(uri) is None
    jobs.parameter_path(uri).parent.mkdir(parents=True)
    jobs.parameter_path(uri).write_bytes(b"ecdsa-sha2-nistp384 AAAA")
    assert launcher.read_public_key(uri) == b"ecdsa-sha2-nistp384 AAAA"


def test_the_local_launcher_refuses_a_runs_second_job_and_jobs_past_the_daily_limit(tmp_path, buckets):
    from tests.rehearsal import client_settings

    settings = dataclasses.replace(client_settings("insurer-a", "222222222222").launch, max_jobs_per_day=2)
    write_tarball(buckets["code"] / "code" / "source.tar.gz", {settings.entry_point: PROGRAM.encode()})
    named = {f"{kind}-insurer-a": folder for kind, folder in buckets.items()}  # the settings' bucket names
    jobs = LocalJobs(tmp_path / "jobs", named, sys.executable)
    client_launcher = LocalLauncher(settings, jobs)
    ca = create_tls(tmp_path / "tls", ["127.0.0.1"]).ca_certificate.read_text()

    def start(run: str, action: str = "start") -> dict:
        return client_launcher.call({"action": action, "run": run, "superlink": "127.0.0.1:9092", "ca_certificate": ca})

    assert start("r1")["job"] == "fl-client-r1-insurer-a"
    again = start("r1")["error"]
    assert re.fullmatch(
        r"client insurer-a's launcher refused the request: run r1 already has job fl-client-r1-insurer-a "
        r"\(status (InProgress|Completed)\); a run gets one job per client",
        again,
    )
    assert start("r2")["job"] == "fl-client-r2-insurer-a"
    limit = "client insurer-a already started 2 federation jobs in the last 24 hours; its limit (max_jobs_per_day) is 2"
    assert start("r3")["error"].endswith(limit) and start("r3", "dry-run")["error"].endswith(limit)
    assert list(jobs.requests) == ["fl-client-r1-insurer-a", "fl-client-r2-insurer-a"]
    jobs.stop_all()
