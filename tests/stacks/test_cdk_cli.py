"""The real CDK CLI (pinned in package.json) and cfn-lint, offline, with no AWS credentials."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from stacks.bundle import builder
from tests.helpers import PROJECT
from tests.stacks.cdk_helpers import THREE_CLIENTS

pytestmark = pytest.mark.slow


def offline_env(tmp_path) -> dict[str, str]:
    """No credentials anywhere, and any attempt to reach the network goes to a dead proxy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_CONFIG_FILE=str(tmp_path / "no-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        HTTPS_PROXY="http://127.0.0.1:9",
        HTTP_PROXY="http://127.0.0.1:9",
        NO_PROXY="",
        CDK_DISABLE_CLI_TELEMETRY="true",
        CDK_DISABLE_VERSION_CHECK="true",
        JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION="20",
    )
    return env


def cdk_synth(tmp_path, *args: str) -> subprocess.CompletedProcess:
    builder.configured()  # the wheel cache is filled before going offline; synth itself must not need the network
    return subprocess.run(
        ["npx", "--no-install", "cdk", "synth", "--no-notices", "-q", "-o", str(tmp_path / "cdk.out"), *args],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env=offline_env(tmp_path),
        timeout=600,
    )


def test_the_pinned_cli_is_the_one_that_runs():
    pinned = json.loads((PROJECT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    done = subprocess.run(
        ["npx", "--no-install", "cdk", "--version"], capture_output=True, text=True, cwd=PROJECT, timeout=120
    )
    assert done.stdout.startswith(pinned)


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory):
    """Two synths through the CLI (each about 35 s of CPU): every stack of three clients in one organisation, and
    one client's own stack in separate organisations. The one-client app's names are the in-process tests'."""
    folders = {}
    separate = ("-c", "federation:deployment_mode=separate-organisations", "-c", "party=client-a")
    three = ("-c", f"federation:clients={json.dumps(THREE_CLIENTS)}")
    for name, args in (("three", three), ("separate-client", separate)):
        folder = tmp_path_factory.mktemp(name)
        done = cdk_synth(folder, *args)
        assert done.returncode == 0, done.stderr[-3000:]
        folders[name] = folder / "cdk.out"
    return folders


def test_synth_succeeds_offline_without_credentials_for_three_clients_and_for_one_clients_own_party(synthesized):
    assert sorted(p.name for p in synthesized["three"].glob("*.template.json")) == [
        "ClientStack-hospital-c.template.json",
        "ClientStack-insurer-a.template.json",
        "ClientStack-insurer-b.template.json",
        "ServerStack.template.json",
    ]
    # separate organisations: a client party synthesizes its own stack and nothing of the server's
    assert [p.name for p in synthesized["separate-client"].glob("*.template.json")] == ["ClientStack.template.json"]
    manifest = json.loads((synthesized["three"] / "manifest.json").read_text())
    assert sorted(manifest["artifacts"]["ServerStack"]["dependencies"])[:3] == [
        "ClientStack-hospital-c",
        "ClientStack-insurer-a",
        "ClientStack-insurer-b",
    ]


def test_cfn_lint_reports_no_errors_on_the_synthesized_templates(synthesized, default):
    """The CLI's templates and the one-client app's (synthesized in process, as app.py does it)."""
    folders = [*synthesized.values(), default.outdir]
    templates = [str(p) for folder in folders for p in folder.glob("*.template.json")]
    done = subprocess.run(
        ["cfn-lint", "--non-zero-exit-code", "error", *templates], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:]


@pytest.mark.parametrize(
    "override, message",
    [  # one CLI synth (about 16 s): the messages of each field are the in-process tests' (test_config.py)
        (
            f"federation:clients={json.dumps(THREE_CLIENTS[:2])}",
            "clients[0].min_members: missing: the federation has 2 clients, fewer than the default of 3",
        ),
    ],
)
def test_invalid_config_fails_synth_with_one_message_naming_the_field(tmp_path, override, message):
    done = cdk_synth(tmp_path, "-c", override)
    assert done.returncode != 0
    assert done.stderr.count(f"Invalid federation config: {message}") == 1
    assert "Traceback" not in done.stderr
