"""`federate` when things go wrong: a client killed mid-run, Ctrl-C, and a server that sends an app the clients
did not approve (local jobs standing in for SageMaker)."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from fl_runtime.launch.flower import free_port
from tests.aws.conftest import NAMES, federate
from tests.helpers import ctrl_c
from tests.rehearsal import rehearsal

pytestmark = pytest.mark.slow


def test_a_client_killed_mid_run_is_dropped_and_the_run_completes_with_two(split, tmp_path):
    test, clients = split
    description = rehearsal(tmp_path, test, clients, port=free_port(), min_members=2)
    process = federate(
        description, tmp_path / "out", "--rounds", 4, "--min-clients", 2, "--round-timeout", 15, "--run-name", "run2"
    )
    events = tmp_path / ".out.partial" / "events.jsonl"
    deadline = time.monotonic() + 300
    while (
        time.monotonic() < deadline
        and process.poll() is None
        and not (events.exists() and '"round": 2' in events.read_text())
    ):
        time.sleep(0.5)
    if process.poll() is not None:
        out, err = process.communicate()
        pytest.fail(f"federate ended before round 2 (exit {process.returncode}):\n{err[-3000:]}\n{out[-3000:]}")
    assert events.exists(), "the run never reached round 2"
    killed = subprocess.run(["pkill", "-9", "-f", "fl-client-run2-hospital-c"], capture_output=True)
    assert killed.returncode == 0
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:] + out[-3000:]
    metrics = json.loads((tmp_path / "results" / "model" / "run2" / "metrics.json").read_text())
    [dropout] = metrics["dropouts"]
    assert dropout["member"] == "hospital-c" and dropout["attempt"] == 1
    assert dropout["question"] in ("round 3", "round 4", "the evaluation of the round-4 model")  # killed after round 2
    assert metrics["rounds"][-1]["members"] == ["insurer-a", "insurer-b"] or dropout["question"].startswith("the eval")
    report = (tmp_path / "results" / "model" / "run2" / "report.md").read_text()
    assert f"- hospital-c: {dropout['question']}, attempt 1" in report
    assert "client hospital-c: job fl-client-run2-hospital-c Failed" in out
    assert "member hospital-c dropped out of" in out


def test_through_privatelink_jobs_join_by_their_private_name_and_ctrl_c_stops_every_job(split, tmp_path):
    """The members' jobs dial the name their own account gives (no address from the server: each launcher would
    refuse one), TLS verifies it against the certificate federate made for it, and the run reaches round 1; then
    Ctrl-C stops every job and publishes nothing."""
    test, clients = split
    port = free_port()
    description = rehearsal(tmp_path, test, clients, port=port, private_name="localhost")
    # no early stop: the run is still going when Ctrl-C comes
    process = federate(description, tmp_path / "out", "--rounds", 50, "--tolerance", 0, "--run-name", "run3")
    events = tmp_path / ".out.partial" / "events.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (events.exists() and '"round": 1' in events.read_text()):
        time.sleep(0.5)
    assert events.exists(), "the run never reached round 1"
    jobs = subprocess.run(["pgrep", "-af", "fl-client-run3-"], capture_output=True, text=True).stdout.splitlines()
    dialing = [line for line in jobs if "--superlink" in line]  # each job, and the SuperNode it started
    assert len([line for line in dialing if "sagemaker_client.py" in line]) == 3
    assert all(f"--superlink localhost:{port}" in line for line in dialing)
    _out, err = ctrl_c(process, timeout=240)  # seconds here; generous for a loaded machine
    assert process.returncode == 130, err[-3000:]
    assert "interrupted: every process started by this command was stopped" in err
    leftovers = subprocess.run(["pgrep", "-f", "fl-client-run3-"], capture_output=True, text=True).stdout.split()
    assert leftovers == []  # each job, and the SuperNode it started, is gone
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.partial").exists()
    assert not (tmp_path / "results" / "model").exists()


def test_a_server_sending_a_modified_app_is_refused_by_every_client_account(split, tmp_path):
    from fl_runtime.launch.fab import app_content_hash
    from tests.helpers import hostile_app

    test, clients = split
    description = rehearsal(tmp_path, test, clients, port=free_port())
    marker = tmp_path / "stolen.csv"
    app = hostile_app(tmp_path / "hostile", marker)
    process = federate(description, tmp_path / "out", "--rounds", 2, "--run-name", "run4", "--app", app)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 1, err[-3000:] + out[-3000:]
    assert not marker.exists()  # not one line of the server's app ran in any client's job
    said = out + err
    for name in NAMES:
        refusals = [line for line in said.splitlines() if name in line and "is not approved by this account" in line]
        assert refusals, f"{name} is not named as refusing:\n{said[-4000:]}"
        assert f"(approved: {app_content_hash()})" in refusals[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "results" / "model").exists()
