"""The client-owned runner against a hostile server: an app the clients did not approve never runs a line.

The server submits the app with one changed line in the ClientApp: it would copy the client's data into a
marker file. Every client refuses it; the marker never appears; ``local`` exits 1 naming each refusing client;
no process is left behind. The honest app runs end to end (``test_local.py``), warm: one runner process per
client serves every message of the run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from fl_runtime.launch.fab import app_content_hash, content_hash
from fl_runtime.launch.runner import refusal
from tests.helpers import PROJECT, flower_processes_under, hostile_app, in_temp, workspaces

pytestmark = pytest.mark.slow


def test_a_refusal_names_the_app_and_what_this_account_approves():
    assert refusal("ab" * 32, ("cd" * 32, "ef" * 32)) == (
        f"app {'ab' * 32} is not approved by this account (approved: {'cd' * 32}, {'ef' * 32})"
    )


def test_a_server_sending_a_modified_app_is_refused_by_every_client_and_nothing_of_it_runs(tmp_path):
    marker = tmp_path / "stolen.csv"
    app = hostile_app(tmp_path, marker)
    files = {p.relative_to(app).as_posix(): p.read_bytes() for p in app.rglob("*") if p.is_file()}
    hostile_hash = content_hash(files)
    assert hostile_hash != app_content_hash()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "fl_runtime",
            "local",
            "--app",
            str(app),
            "--rounds",
            "2",
            "--out",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=300,
        env=in_temp(tmp_path),
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert not marker.exists()  # not one line of the server's app ran next to the data
    reason = refusal(hostile_hash, (app_content_hash(),))
    for client in ("client_1", "client_2", "client_3"):
        assert f"{client}: failed to compute its statistics: {reason}" in done.stderr
    assert not (tmp_path / "out").exists()
    assert flower_processes_under(workspaces(tmp_path)) == []


def test_an_app_folder_that_is_not_one_is_refused_before_anything_starts(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "fl_runtime", "local", "--app", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=120,
        env={**os.environ},
    )
    assert done.returncode == 2 and f"--app {tmp_path}: not a Flower app folder (no pyproject.toml)" in done.stderr
