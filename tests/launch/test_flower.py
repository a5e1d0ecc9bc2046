"""The SuperLink as the launchers start it: TLS only, and only registered SuperNodes get in."""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.request

import pytest

from fl_runtime.errors import ProcessError
from fl_runtime.launch.flower import CONNECTION, SuperLink, SuperNodeSpec, flower_env, free_port
from fl_runtime.launch.pki import create_node_key, create_tls
from fl_runtime.launch.processes import Supervisor

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def superlink(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("superlink")
    supervisor = Supervisor(workspace / "logs")
    link = SuperLink(
        supervisor, workspace, create_tls(workspace / "tls", ["127.0.0.1"]), "127.0.0.1", free_port(), "127.0.0.1"
    )
    link.start()
    yield link
    supervisor.stop_all()


def test_the_superlink_speaks_only_verified_tls(superlink):
    trusted = ssl.create_default_context(cafile=str(superlink.tls.ca_certificate))
    with urllib.request.urlopen(f"https://{superlink.address}/health", context=trusted, timeout=5) as answer:
        assert answer.status == 200
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"https://{superlink.address}/health", context=ssl.create_default_context(), timeout=5)
    plain = http.client.HTTPConnection("127.0.0.1", superlink.port, timeout=5)
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        plain.request("GET", "/health")
        plain.getresponse().read()


def _start_supernode(superlink: SuperLink, name: str, key) -> None:
    """A SuperNode alone (no runner): enough to see whether the SuperLink lets it in."""
    workspace = superlink.workspace
    secret = workspace / f"{name}.secret"
    secret.write_bytes(b"s" * 32)
    spec = SuperNodeSpec(superlink.address, superlink.tls.ca_certificate, key, {"data-path": "/nonexistent.csv"}, 20)
    superlink.supervisor.start(
        name,
        spec.command(free_port(), secret),
        flower_env(workspace / f"home-{name}"),
        workspace / name,
    )


def test_an_unregistered_supernode_is_refused_and_exits(superlink):
    stranger = create_node_key(superlink.workspace / "keys", "stranger")
    _start_supernode(superlink, "stranger", stranger)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "stranger" not in superlink.supervisor.exited():
        time.sleep(0.5)
    assert superlink.supervisor.exited().get("stranger", 0) != 0
    assert "Failed to activate SuperNode" in superlink.supervisor.log_tail("stranger", 40)


def test_a_registered_supernode_comes_online(superlink):
    member = create_node_key(superlink.workspace / "keys", "member")
    node_id = superlink.register(member.public_key)
    _start_supernode(superlink, "member", member)
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        nodes = superlink.cli("supernode", "list", CONNECTION).get("nodes", [])
        status = next((n.get("status") for n in nodes if int(n.get("node-id", -1)) == node_id), None)
        if status == "online":
            break
        time.sleep(1)
    assert status == "online"
    assert "member" not in superlink.supervisor.exited()


def test_cli_errors_surface_as_process_errors(superlink):
    with pytest.raises(ProcessError, match="flwr stop 123 federation"):
        superlink.cli("stop", "123", CONNECTION)


def test_the_idle_poll_is_the_launchers_setting_and_a_bad_one_is_named(monkeypatch):
    from fl_runtime import defaults
    from fl_runtime.launch.flower import IDLE_POLL_ENV, idle_poll, task_poll_environment

    monkeypatch.delenv(IDLE_POLL_ENV, raising=False)
    assert idle_poll(defaults.TASK_POLL_SECONDS) == defaults.TASK_POLL_SECONDS
    monkeypatch.setenv(IDLE_POLL_ENV, "0.25")
    assert idle_poll(defaults.TASK_POLL_SECONDS) == 0.25
    assert task_poll_environment() == {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.25"}
    for bad in ("fast", "0", "60"):
        monkeypatch.setenv(IDLE_POLL_ENV, bad)
        with pytest.raises(ProcessError, match=f"environment variable FL_IDLE_POLL_SECONDS: '{bad}' is not"):
            idle_poll(defaults.TASK_POLL_SECONDS)
