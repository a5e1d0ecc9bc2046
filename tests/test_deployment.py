"""The SuperLink as the launchers start it: TLS only, and only registered SuperNodes get in."""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.error
import urllib.request

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

from fl_runtime.deployment import CONNECTION, DeploymentError, SuperLink, Supervisor, flower_env, free_port, supernode_command
from fl_runtime.pki import create_node_key, create_tls

pytestmark = pytest.mark.slow


def test_throwaway_credentials_verify_and_private_keys_are_private(tmp_path):
    tls = create_tls(tmp_path / "tls", ["10.0.1.25", "notebook.internal"])
    ca = x509.load_pem_x509_certificate(tls.ca_certificate.read_bytes())
    server = x509.load_pem_x509_certificate(tls.server_certificate.read_bytes())
    server.verify_directly_issued_by(ca)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"10.0.1.25", "127.0.0.1"}
    assert set(names.get_values_for_type(x509.DNSName)) == {"notebook.internal", "localhost"}
    key = create_node_key(tmp_path / "keys", "client_1")
    assert load_ssh_private_key(key.private_key.read_bytes(), password=None).curve.name == "secp384r1"
    load_ssh_public_key(key.public_key.read_bytes())
    for private in (tls.server_key, key.private_key):
        assert private.stat().st_mode & 0o777 == 0o600


@pytest.fixture(scope="module")
def superlink(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("superlink")
    supervisor = Supervisor(workspace / "logs")
    link = SuperLink(supervisor, workspace, create_tls(workspace / "tls", ["127.0.0.1"]), "127.0.0.1", free_port(), "127.0.0.1")
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
    workspace = superlink.workspace
    superlink.supervisor.start(
        name,
        supernode_command(superlink.address, superlink.tls.ca_certificate, key, {"data-path": "/nonexistent.csv"}, free_port(), 20),
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


def test_cli_errors_surface_as_deployment_errors(superlink):
    with pytest.raises(DeploymentError, match="flwr stop 123 federation"):
        superlink.cli("stop", "123", CONNECTION)


def test_stopping_a_process_also_stops_the_descendants_it_detached_into_their_own_sessions(tmp_path):
    import os
    import sys

    from fl_runtime.deployment import descendants, process_status

    detached = tmp_path / "detached.pid"
    spawner = (
        "import subprocess, sys, time\n"
        f"child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        f"open({str(detached)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(600)\n"
    )
    supervisor = Supervisor(tmp_path / "logs", grace=2.0)
    leader = supervisor.start("spawner", [sys.executable, "-c", spawner], dict(os.environ), tmp_path)
    deadline = time.monotonic() + 30
    while not (detached.exists() and detached.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    child = int(detached.read_text())
    assert list(descendants(leader.pid)) == [child] and os.getpgid(child) != os.getpgid(leader.pid)
    assert process_status(child).state in "RS"
    supervisor.stop_all()
    assert leader.poll() is not None
    status = process_status(child)
    assert status is None or status.state == "Z"  # gone, or dead and awaiting init
