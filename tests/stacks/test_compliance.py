"""cdk-nag on every synth: no violation, and every acknowledgment exact and explained."""

from __future__ import annotations

import pytest

from tests.stacks.cdk_helpers import DEPLOYMENTS

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_cdk_nag_packs_pass_and_every_acknowledgment_is_exact_and_explained(name, request):
    for report in request.getfixturevalue(name).reports():  # separate organisations: each party's synth
        _check(report)


def _check(report: dict) -> None:
    packs = {r["pluginName"]: r for r in report["pluginReports"]}
    for pack in ("AwsSolutions", "HIPAA.Security", "NIST.800.53.R5"):
        assert packs[pack]["conclusion"] == "success"
        assert packs[pack]["violations"] == []
        for suppressed in packs[pack]["suppressedViolations"]:
            assert (
                suppressed["acknowledgedId"] == f"{pack}::{suppressed['ruleName']}"
            )  # the exact finding, not the whole rule
            assert len(suppressed["reason"]) >= 40
            stack = suppressed["violatingConstructs"][0]["constructPath"].split("/")[0]
            assert suppressed["acknowledgedAt"] != stack  # never waved through for a whole stack
