"""Proof: what a client VPC can reach on the server is the Fleet API, never run submission or registration.

The server listens as ``federate`` sets it up: the SuperLink on 127.0.0.1 only, the Fleet gateway on a
second address (127.0.0.2 here, the notebook's private address in AWS), which is all the client
security groups and routes can reach.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from pathlib import Path

import pytest

from fl_runtime.aws import fleet_gateway
from fl_runtime.errors import ProcessError
from fl_runtime.launch.flower import CONNECTION, SuperLink, SuperNodeSpec, flower_env, free_port
from fl_runtime.launch.pki import create_node_key, create_tls
from fl_runtime.launch.processes import Supervisor

pytestmark = pytest.mark.slow
CLIENT_SIDE = "127.0.0.2"
UNSUPPORTED_MEDIA_TYPE = 415  # what the SuperLink answers a JSON body on a protobuf route


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workspace = tmp_path_factory.mktemp("server")
    supervisor = Supervisor(workspace / "logs")
    tls = create_tls(workspace / "tls", [CLIENT_SIDE])
    link = SuperLink(supervisor, workspace, tls, host="127.0.0.1", port=free_port(), dial_address="127.0.0.1")
    link.start()
    gateway_port = free_port()
    fleet_gateway.start(supervisor, link, f"{CLIENT_SIDE}:{gateway_port}", workspace, timeout=30)
    context = ssl.create_default_context(cafile=str(tls.ca_certificate))
    yield link, gateway_port, context
    supervisor.stop_all()


def _request(context, port, path, body=b"{}", method="POST"):
    """Send ``path`` exactly as written: no client-side normalisation of dot segments or escapes."""
    connection = http.client.HTTPSConnection(CLIENT_SIDE, port, context=context, timeout=10)
    try:
        connection.request(
            method, path, body=body if method == "POST" else None, headers={"Content-Type": "application/json"}
        )
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


def test_the_superlink_listens_on_loopback_only(server):
    link, _, _ = server
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port = local.split(":")
        if state == "0A" and int(port, 16) == link.port:
            listening.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    assert listening == ["127.0.0.1"]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((CLIENT_SIDE, link.port), timeout=5)


@pytest.mark.parametrize(
    "path",
    [
        "/v1/control/start-run",
        "/v1/control/list-runs",
        "/v1/control/register-node",
        "/v1/runtime/acquire-task",
        "/docs",
        "/openapi.json",
    ],
)
def test_control_and_runtime_paths_are_refused_from_the_client_side(server, path):
    _, port, context = server
    status, body = _request(context, port, path)
    assert status == 403 and "only the Fleet API" in body


def test_the_flwr_cli_cannot_submit_or_register_through_the_client_side(server, tmp_path):
    link, port, _ = server
    outsider = SuperLink(link.supervisor, tmp_path, link.tls, host=CLIENT_SIDE, port=port, dial_address=CLIENT_SIDE)
    outsider.cli_home.mkdir(parents=True)
    (outsider.cli_home / "config.toml").write_text(
        f'[superlink]\ndefault = "{CONNECTION}"\n\n[superlink.{CONNECTION}]\naddress = '
        f'"{CLIENT_SIDE}:{port}"\nroot-certificates = "{link.tls.ca_certificate}"\n'
    )
    with pytest.raises(ProcessError):
        outsider.cli("ls", CONNECTION)
    with pytest.raises(ProcessError):
        outsider.register(create_node_key(tmp_path / "keys", "intruder").public_key)
    assert link.cli("ls", CONNECTION)["runs"] == []  # from the notebook itself, the Control API works


@pytest.mark.parametrize(
    "path",
    [
        "/v1/fleet/../control/start-run",
        "/v1/fleet/%2e%2e/control/start-run",
        "/v1/fleet/%2E%2E%2Fcontrol%2Fstart-run",
        "/v1/fleet//../../v1/control/register-node",
        "/v1/fleet/./pull-messages",
        "/v1/fleet/pull-messages/",
        "/v1/fleet/pull%2Dmessages",
        "/v1/fleet/pull-messages?next=/v1/control/start-run",
        "/v1/fleet/",
        "/v1/fleet",
    ],
)
def test_dot_segments_escapes_and_near_misses_of_fleet_routes_are_refused(server, path):
    _, port, context = server
    status, body = _request(context, port, path)
    assert status == 403 and "only the Fleet API" in body


def test_fleet_routes_are_forwarded_only_with_their_own_method(server):
    _, port, context = server
    status, body = _request(context, port, "/v1/fleet/pull-messages", method="GET")
    assert status == 403 and "only the Fleet API" in body


def test_fleet_requests_are_forwarded_to_the_superlink(server):
    _, port, context = server
    status, body = _request(context, port, "/v1/fleet/pull-messages")
    # the SuperLink itself answers (the gateway never sends 415): JSON is not the protobuf it expects
    assert status == UNSUPPORTED_MEDIA_TYPE and "only the Fleet API" not in body


def test_the_gateway_serves_exactly_the_fleet_routes_of_the_installed_flower():
    from fl_runtime.aws.fleet_gateway import fleet_routes

    paths = {path for _, path in fleet_routes()}
    assert {"/v1/fleet/pull-messages", "/v1/fleet/push-messages", "/v1/fleet/get-fab"} <= paths
    assert all(path.startswith("/v1/fleet/") for path in paths)
    assert {method for method, _ in fleet_routes()} == {"POST"}


def test_a_registered_supernode_joins_through_the_gateway(server, tmp_path):
    link, port, _ = server
    key = create_node_key(tmp_path / "keys", "member")
    node_id = link.register(key.public_key)
    (tmp_path / "secret").write_bytes(b"s" * 32)
    spec = SuperNodeSpec(f"{CLIENT_SIDE}:{port}", link.tls.ca_certificate, key, {"data-path": "/x.csv"}, 30)
    link.supervisor.start(
        "member",
        spec.command(free_port(), tmp_path / "secret"),
        flower_env(tmp_path / "home"),
        tmp_path / "member",
    )
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline and status != "online":
        nodes = link.cli("supernode", "list", CONNECTION).get("nodes", [])
        status = next((n.get("status") for n in nodes if int(n.get("node-id", -1)) == node_id), None)
        time.sleep(1)
    assert status == "online"
