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
    assert "a run starts with every member, and not every one announced its keys" in done.stderr
    for client in ("client_1", "client_2", "client_3"):
        assert f"{client}: refused: {reason}" in done.stderr
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


def test_a_clientapp_error_reaches_the_server_as_its_type_only_and_its_words_stay_in_the_clients_log(
    tmp_path, monkeypatch, capsys
):
    import io
    import zipfile

    from fl_runtime.errors import DataError
    from fl_runtime.launch import flower_runtime, runner
    from fl_runtime.launch.fab import app_files

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in app_files().items():
            archive.writestr(name, content)
    told_the_server: list[str] = []

    Task = _stand_in_task(buffer.getvalue(), told_the_server, [])

    def client_app(message, context):
        raise DataError("train.csv: column 'total_drug_cost', line 88: '1234.5x' is not a number")

    monkeypatch.setattr(flower_runtime, "Task", Task)
    serving = runner.Runner("127.0.0.1:1", b"secret", (app_content_hash(),), tmp_path / "apps")
    monkeypatch.setattr(serving, "_client_app", lambda app_hash, incoming: client_app)
    assert serving.handle("token") is None  # a failed task, not a refusal: the runner goes on
    assert told_the_server == ["the ClientApp failed (DataError); the details stay in the client's own log"]
    assert "'1234.5x' is not a number" in capsys.readouterr().err


def test_a_fab_too_large_to_hash_is_refused_unpacked_and_the_server_is_told_the_limit(tmp_path, monkeypatch):
    import io
    import zipfile

    from fl_runtime.launch import fab, flower_runtime, runner

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:  # 64 MiB and one byte of zeros, deflated
        archive.writestr("fl_runtime/app/client_app.py", bytes(fab.MAX_FAB_BYTES + 1))
    told_the_server: list[str] = []
    finished: list[str | None] = []

    Task = _stand_in_task(buffer.getvalue(), told_the_server, finished)

    def never(*args):
        raise AssertionError("the runner unpacked or loaded a FAB it could not hash")

    monkeypatch.setattr(flower_runtime, "Task", Task)
    monkeypatch.setattr(runner, "unpack_fab", never)
    serving = runner.Runner("127.0.0.1:1", b"secret", (app_content_hash(),), tmp_path / "apps")
    monkeypatch.setattr(serving, "_client_app", never)
    reason = serving.handle("token")
    assert reason == (
        f"app not approved by this account: the FAB declares {fab.MAX_FAB_BYTES + 1} bytes inflated, more than a "
        f"client reads of an app before approving it ({fab.MAX_FAB_BYTES} bytes, fab.MAX_FAB_BYTES)"
    )
    assert told_the_server == finished == [reason]  # a refusal: serve() exits with EXIT_REFUSED on it
    assert not (tmp_path / "apps").exists()


def test_a_runner_whose_supernode_dies_stops_instead_of_polling_a_dead_port(tmp_path):
    """Two runners were once found orphaned 19 and 43 minutes after their SuperNodes died: now one stops at once."""
    import time

    (tmp_path / "secret").write_bytes(b"s" * 32)
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # plays the SuperNode
    runner = subprocess.Popen(
        [sys.executable, "-m", "fl_runtime.launch.runner", "--runtime-api", "127.0.0.1:9", "--auth-secret-file",
         str(tmp_path / "secret"), "--apps", str(tmp_path / "apps"), "--approve", app_content_hash(),
         "--supernode-pid", str(stand_in.pid)],
        cwd=PROJECT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(1.0)
        assert runner.poll() is None  # serving while its SuperNode lives
        stand_in.kill()
        stand_in.wait()
        started = time.monotonic()
        _, stderr = runner.communicate(timeout=10)
        assert runner.returncode == 4 and time.monotonic() - started < 5
        assert f"its SuperNode (pid {stand_in.pid}) is gone: this runner stops with it" in stderr
    finally:  # a runner that did not stop is this test's failure, not a process left to the machine
        for process in (runner, stand_in):
            process.kill()
            process.wait()


def _stand_in_task(fab: bytes, told_the_server: list[str], finished: list[str | None]) -> type:
    """The SuperNode's side of one task, as ``flower_runtime.Task`` offers it: hands out ``fab`` and records
    what the runner tells the server (a refusal) and how it finishes."""
    import types

    class Task:
        started = 0.0

        def __init__(self, address: str, token: str) -> None:
            pass

        def pull(self):
            return types.SimpleNamespace(fab=fab, message=None, context=None, run=None)

        def refuse(self, incoming, reason: str) -> None:
            told_the_server.append(reason)

        def finish(self, context, failure=None) -> None:
            finished.append(failure)

        def close(self) -> None:
            pass

    return Task
