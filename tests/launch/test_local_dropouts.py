"""Drop-outs in the real local federation, at deterministic fault points (``fl_runtime.launch.faults``): a member
that never joins is named and the run does not start; a member killed with its reply in flight is that member's
drop-out, the step is asked again of the others, and the run completes. No process the run started is left."""

from __future__ import annotations

import json

import pytest

from tests.helpers import flower_processes_under, workspaces
from tests.launch.conftest import SEED, run_local

pytestmark = pytest.mark.slow


def test_a_member_that_never_joins_is_named_the_run_fails_and_leaves_no_output_and_no_process(split, tmp_path):
    test_path, client_paths, _, _ = split
    out = tmp_path / "out"
    done = run_local(tmp_path, "--client-data", *client_paths, "--test-data", test_path, "--node-wait-timeout", 20,
                     "--out", out, faults="insurer_c:never-joins")  # fmt: skip
    assert done.returncode == 1
    assert "a run starts with every member, and insurer_c never joined" in done.stderr
    assert not out.exists() and not (tmp_path / ".out.partial").exists()
    assert flower_processes_under(workspaces(tmp_path)) == []


def test_a_member_killed_with_its_reply_in_flight_is_that_members_drop_out_and_the_others_finish(split, tmp_path):
    """insurer_b's runner pushes its round-2 reply to its SuperNode, then kills it (a test hook): the reply never
    arrives. Round 2 is asked again of the two others, on fresh masks, and the run completes with them."""
    test_path, client_paths, _, _ = split
    out = tmp_path / "out"
    done = run_local(tmp_path, "--client-data", *client_paths, "--test-data", test_path, "--min-clients", 2,
                     "--round-timeout", 15, "--seed", SEED, "--out", out, timeout=600,
                     faults="insurer_b:killed-after-reply:round/2")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    [dropout] = metrics["dropouts"]
    assert (dropout["member"], dropout["question"], dropout["attempt"]) == ("insurer_b", "round 2", 1)
    assert metrics["rounds"][0]["members"] == ["insurer_a", "insurer_b", "insurer_c"]
    assert all(r["members"] == ["insurer_a", "insurer_c"] for r in metrics["rounds"][1:])
    assert "- insurer_b: round 2, attempt 1" in (out / "report.md").read_text()
    survivors = json.loads((out / "clients" / "insurer_a" / "client_view.json").read_text())
    attempts = [s["step"]["attempt"] for s in survivors["steps"] if s.get("step", {}).get("round") == 2]
    assert attempts == [1, 2]  # asked again, with fewer members
    assert flower_processes_under(workspaces(tmp_path)) == []
