"""The CDK app synthesized once per test process: with cdk.json's defaults (one client) and with three clients."""

from __future__ import annotations

import pytest

from tests.stacks.cdk_helpers import THREE_CLIENTS, synthesize


@pytest.fixture(scope="session")
def default(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("cdk-default"))


@pytest.fixture(scope="session")
def three(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("cdk-three"), clients=THREE_CLIENTS)


@pytest.fixture(scope="session")
def client(default):
    """The one client stack of the default app, as a template."""
    return default.clients["ClientStack"]
