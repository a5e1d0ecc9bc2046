"""FederationNotebook: private, encrypted, rootless, IMDSv2; its start-up script is valid bash and its idle guard
counts what a person does."""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import re
import shutil
import subprocess

import pytest

from stacks.notebook import on_start_script
from tests.helpers import PROJECT
from tests.stacks.cdk_helpers import all_templates, resources

NOW = dt.datetime(2026, 11, 24, 12, 0, tzinfo=dt.UTC)
BOOTED = NOW - dt.timedelta(hours=3)


def _idle_stop():
    spec = importlib.util.spec_from_file_location(
        "idle_stop", PROJECT / "stacks" / "bundle" / "notebook" / "idle_stop.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_lifecycle_script_is_valid_bash_and_installs_the_idle_timer():
    script = on_start_script("s3://code-bucket/code/source.tar.gz", 45)
    assert subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True).returncode == 0
    assert "ExecStart=/usr/bin/python3 /home/ec2-user/fl/bundle/notebook/idle_stop.py 45" in script
    assert "systemctl enable --now fl-idle-stop.timer" in script and "OnUnitActiveSec=5min" in script
    assert "/etc/cron.d" not in script  # Amazon Linux 2023 has no cron


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_idle_timer_units_pass_systemd_analyze(tmp_path):
    script = on_start_script("s3://code-bucket/code/source.tar.gz", 45)
    units = dict(re.findall(r"cat > /etc/systemd/system/(\S+) <<'UNIT'\n(.*?)\nUNIT", script, re.S))
    assert sorted(units) == ["fl-idle-stop.service", "fl-idle-stop.timer"]
    for name, body in units.items():
        (tmp_path / name).write_text(body + "\n")
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(units)], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr  # warnings go to stderr with exit 0


def test_idle_time_counts_from_the_latest_kernel_or_terminal_activity_or_boot():
    idle_since = _idle_stop().idle_since
    kernel = {"kernel": {"execution_state": "idle", "last_activity": "2026-11-24T10:30:00.000000Z"}}
    terminal = {"name": "1", "last_activity": "2026-11-24T11:40:00.000000Z"}
    assert idle_since([], [], BOOTED, NOW) == BOOTED
    assert idle_since([kernel], [], BOOTED, NOW) == dt.datetime(2026, 11, 24, 10, 30, tzinfo=dt.UTC)
    assert idle_since([kernel], [terminal], BOOTED, NOW) == dt.datetime(2026, 11, 24, 11, 40, tzinfo=dt.UTC)


def test_a_busy_kernel_is_never_idle():
    busy = {"kernel": {"execution_state": "busy", "last_activity": "2026-11-24T08:00:00Z"}}
    assert _idle_stop().idle_since([busy], [], BOOTED, NOW) == NOW


@pytest.mark.slow
def test_notebooks_are_private_encrypted_rootless_imdsv2_and_stop_when_idle(three):
    for template in all_templates(three):
        [notebook] = resources(template, "AWS::SageMaker::NotebookInstance").values()
        properties = notebook["Properties"]
        assert properties["DirectInternetAccess"] == "Disabled"
        assert properties["RootAccess"] == "Disabled"
        assert "KmsKeyId" in properties and properties["SubnetId"]["Ref"].startswith("NetworkVpcprivateSubnet")
        assert properties["InstanceMetadataServiceConfiguration"] == {"MinimumInstanceMetadataServiceVersion": "2"}
        [lifecycle] = resources(template, "AWS::SageMaker::NotebookInstanceLifecycleConfig").values()
        script = json.dumps(lifecycle["Properties"]["OnStart"])
        assert "notebook/install.sh" in script and "idle_stop.py 60" in script and "code/source.tar.gz" in script
