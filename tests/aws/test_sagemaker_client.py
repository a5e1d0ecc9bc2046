"""The client job's entry point: SageMaker's script-mode contract, and bounded failures."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time

import pytest

from fl_runtime.launch.fab import app_content_hash
from fl_runtime.launch.flower import free_port
from fl_runtime.launch.local import member_pins
from fl_runtime.launch.pki import create_tls
from fl_runtime.learning.data import LABEL, write_csv
from fl_runtime.learning.task import ClientData
from tests.helpers import PROJECT, write_rows

pytestmark = pytest.mark.slow


@pytest.fixture
def job(tmp_path, synthetic):
    """/opt/ml as SageMaker lays it out, with a staged split in the train channel."""
    opt_ml = tmp_path / "opt_ml"
    split = ClientData.split(synthetic, seed=0)
    write_csv(opt_ml / "input" / "data" / "train" / "train.csv", split.train)
    write_csv(opt_ml / "input" / "data" / "train" / "validation.csv", split.validation)
    env = {
        **os.environ,
        "SM_CHANNEL_TRAIN": str(opt_ml / "input" / "data" / "train"),
        "SM_MODEL_DIR": str(opt_ml / "model"),
        "SM_OUTPUT_DATA_DIR": str(opt_ml / "output" / "data"),
        "FL_APPROVED_APP_HASHES": app_content_hash(),  # what the client's launcher puts in the job's environment
    }
    pins = member_pins(["insurer-a", "insurer-b", "insurer-c"], tmp_path / "members", 3, seed=0)["insurer-a"]
    env["FL_MEMBER_PINS"] = pins.as_uri()  # where the launcher says its account's pins are
    certificate = base64.b64encode(create_tls(tmp_path / "tls", ["127.0.0.1"]).ca_certificate.read_bytes()).decode()
    return opt_ml, env, certificate


def entry(env, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fl_runtime.aws.sagemaker_client", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
        env=env,
    )


def arguments(tmp_path, certificate, port, timeout=15):
    return [
        "--superlink",
        f"127.0.0.1:{port}",
        "--root-certificate",
        certificate,
        "--client-name",
        "insurer-a",
        "--public-key-uri",
        (tmp_path / "published" / "supernode.pub").as_uri(),
        "--connect-timeout",
        timeout,
    ]


def _published_while_running(process, read, timeout=60.0) -> bytes | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        key = read()
        if key:
            return key
        time.sleep(0.2)
    return None


def test_a_client_pointed_where_nothing_listens_exits_non_zero_within_the_bound(job, tmp_path):
    _, env, certificate = job
    port = free_port()
    started = time.monotonic()
    process = entry(env, *arguments(tmp_path, certificate, port, timeout=8))
    published = tmp_path / "published" / "supernode.pub"
    key = _published_while_running(process, lambda: published.exists() and published.read_bytes())
    _out, err = process.communicate(timeout=120)
    elapsed = time.monotonic() - started
    assert process.returncode == 1
    assert f"could not join the federation within 8 s: cannot reach the SuperLink at 127.0.0.1:{port}" in err
    assert elapsed < 8 + 20  # the bound plus one SuperNode start-up, never the job's MaxRuntime
    assert key.startswith(b"ecdsa-sha2-nistp384 ") and b"PRIVATE" not in key  # only the public half
    assert not published.exists()  # removed when the job ended
    assert (job[0] / "output" / "data" / "supernode-logs").is_dir()


def test_in_sagemaker_the_public_key_is_an_ssm_parameter_the_server_reads_and_the_job_removes(job, tmp_path, local_aws):
    import boto3

    from fl_runtime.aws.kickoff import LambdaLauncher
    from tests import aws_emulator as aws

    recorder, endpoint = local_aws
    _, env, certificate = job
    uri = "ssm:/fl-fraud/client/insurer-a/supernode-keys/fl-client-20261125-010203-insurer-a"
    args = arguments(tmp_path, certificate, free_port(), timeout=8)
    args[args.index("--public-key-uri") + 1] = uri
    process = entry({**env, **aws.boto_env(endpoint)}, *args)
    server_side = LambdaLauncher("insurer-a", boto3.Session(region_name="us-east-1"), "arn:aws:lambda:::function:x")
    key = _published_while_running(process, lambda: server_side.read_public_key(uri))
    _, err = process.communicate(timeout=120)
    assert process.returncode == 1 and "could not join" in err
    assert key.startswith(b"ecdsa-sha2-nistp384 ") and b"PRIVATE" not in key
    assert server_side.read_public_key(uri) is None  # the job removed it on its way out
    [put] = recorder.of("AmazonSSM.PutParameter")
    assert put.body["Name"] == uri.removeprefix("ssm:") and put.body["Type"] == "String"
    assert [c.body["Name"] for c in recorder.of("AmazonSSM.DeleteParameter")] == [uri.removeprefix("ssm:")]


def test_a_public_key_location_other_than_ssm_or_file_exits_2(job, tmp_path):
    _, env, certificate = job
    args = arguments(tmp_path, certificate, free_port())
    args[args.index("--public-key-uri") + 1] = "s3://artifacts/supernode.pub"
    process = entry(env, *args)
    _, err = process.communicate(timeout=60)
    assert (
        process.returncode == 2
        and "--public-key-uri 's3://artifacts/supernode.pub' must start with ssm:/ or file:///" in err
    )


def test_bad_staged_data_exits_2_before_connecting(job, tmp_path, synthetic):
    opt_ml, env, certificate = job
    write_rows(
        opt_ml / "input" / "data" / "train" / "validation.csv",
        [LABEL, *synthetic.features],
        [[0, *synthetic.X[0]]] * 30,
    )
    process = entry(env, *arguments(tmp_path, certificate, free_port()))
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2
    assert "validation.csv: column 'fraudulent_provider' has no rows with value 1" in err
    assert not (tmp_path / "published").exists()


def test_outside_a_training_job_the_contract_is_named(tmp_path, job):
    _, env, certificate = job
    del env["SM_MODEL_DIR"]
    process = entry(env, *arguments(tmp_path, certificate, free_port()))
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "environment variable SM_MODEL_DIR is not set" in err


@pytest.mark.parametrize(
    "approved, message",
    [
        (None, "environment variable FL_APPROVED_APP_HASHES is not set: this job has no approved app to run"),
        ("", "environment variable FL_APPROVED_APP_HASHES is not set"),
        ("not-a-hash", "FL_APPROVED_APP_HASHES: 'not-a-hash' is not an app content hash"),
    ],
)
def test_a_job_without_an_approved_app_runs_nothing(tmp_path, job, approved, message):
    _, env, certificate = job
    env = {k: v for k, v in env.items() if k != "FL_APPROVED_APP_HASHES"}
    if approved is not None:
        env["FL_APPROVED_APP_HASHES"] = approved
    process = entry(env, *arguments(tmp_path, certificate, free_port()))
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and message in err
    assert not (tmp_path / "published").exists()


def test_sigterm_from_stop_training_job_stops_the_supernode_too(job, tmp_path):
    _, env, certificate = job
    process = entry(env, *arguments(tmp_path, certificate, free_port(), timeout=120))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (tmp_path / "published" / "supernode.pub").exists():
        time.sleep(0.2)
    time.sleep(2)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1 and "stopped (SIGTERM" in err
    assert not (tmp_path / "published" / "supernode.pub").exists()
    time.sleep(1)
    leftovers = subprocess.run(
        ["pgrep", "-f", str(tmp_path / "published")], capture_output=True, text=True
    ).stdout.split()
    assert not [pid for pid in leftovers if pid != str(os.getpid())]
