"""The CDK app synthesized once per test process: with cdk.json's defaults (one client) and with three clients,
in one organisation; and in separate organisations, each party's own synth, for one client and for three; and
through PrivateLink in both deployment modes."""

from __future__ import annotations

import pytest

from tests.stacks.cdk_helpers import (
    ONE_CLIENT,
    OVERLAPPING_CLIENTS,
    PRIVATELINK,
    THREE_CLIENTS,
    privatelink_parties,
    separate_parties,
    synthesize,
)


@pytest.fixture(scope="session")
def default(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("cdk-default"), stage_assets=True)


@pytest.fixture(scope="session")
def three(tmp_path_factory):
    return synthesize(tmp_path_factory.mktemp("cdk-three"), clients=THREE_CLIENTS)


@pytest.fixture(scope="session")
def client(default):
    """The one client stack of the default app, as a template."""
    return default.clients["ClientStack"]


@pytest.fixture(scope="session")
def separate_one(tmp_path_factory):
    """One client's first deploy (no peering yet), and the server's from its handover."""
    return separate_parties(tmp_path_factory.mktemp("separate-one"), ONE_CLIENT, accepted=False)


@pytest.fixture(scope="session")
def separate_three(tmp_path_factory):
    """Three clients that accepted the server's peering requests; the server redeployed from their handovers."""
    return separate_parties(tmp_path_factory.mktemp("separate-three"), THREE_CLIENTS, accepted=True)


@pytest.fixture(scope="session")
def privatelink_three(tmp_path_factory):
    """One organisation, three members through PrivateLink, their VPCs on the server's own addresses."""
    return synthesize(tmp_path_factory.mktemp("privatelink-three"), clients=OVERLAPPING_CLIENTS, **PRIVATELINK)


@pytest.fixture(scope="session")
def privatelink_separate(tmp_path_factory):
    """Separate organisations through PrivateLink: the server's party first, then a member's."""
    return privatelink_parties(tmp_path_factory.mktemp("privatelink-separate"), OVERLAPPING_CLIENTS)
