"""checkov on every synthesized template, both deployment modes: each finding fixed or listed with its reason in
stacks/checkov_accepted.yaml, and nothing listed that no longer occurs."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import yaml

from tests.helpers import PROJECT
from tests.stacks.cdk_helpers import DEPLOYMENTS, Parties

pytestmark = pytest.mark.slow
CHECKOV = PROJECT / ".venv-checkov" / "bin" / "checkov"  # make test installs it, pinned, in its own virtualenv
ACCEPTED = PROJECT / "stacks" / "checkov_accepted.yaml"


def _outdirs(synth) -> list:
    if isinstance(synth, Parties):
        return [synth.server_synth.outdir, synth.client_synth.outdir]
    return [synth.outdir]


@pytest.fixture(scope="module")
def findings(request, tmp_path_factory) -> set[tuple[str, str]]:
    """(check id, logical id) of every failed check, checkov run once over every template."""
    folder = tmp_path_factory.mktemp("templates")
    for name in DEPLOYMENTS:
        for index, outdir in enumerate(_outdirs(request.getfixturevalue(name))):
            for template in outdir.glob("*.template.json"):
                (folder / f"{name}-{index}-{template.name}").write_bytes(template.read_bytes())
    assert CHECKOV.is_file(), "checkov is installed by make test (.venv-checkov)"
    done = subprocess.run(
        [str(CHECKOV), "-d", str(folder), "--framework", "cloudformation", "--skip-download", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
        timeout=300,
    )
    report = json.loads(done.stdout)
    assert report["summary"]["parsing_errors"] == 0 and report["summary"]["passed"] > 500
    return {(f["check_id"], f["resource"].split(".", 1)[1]) for f in report["results"]["failed_checks"]}


def _accepted() -> dict[str, dict]:
    return yaml.safe_load(ACCEPTED.read_text())


def test_every_checkov_finding_is_listed_with_a_reason(findings):
    accepted = _accepted()
    unlisted = sorted(
        (check, resource)
        for check, resource in findings
        if not any(resource.startswith(prefix) for prefix in accepted.get(check, {}).get("resources", []))
    )
    assert unlisted == []
    assert all(len(entry["reason"]) >= 60 for entry in accepted.values())


def test_every_listed_finding_still_occurs(findings):
    stale = [
        (check, prefix)
        for check, entry in _accepted().items()
        for prefix in entry["resources"]
        if not any(c == check and resource.startswith(prefix) for c, resource in findings)
    ]
    assert stale == []
