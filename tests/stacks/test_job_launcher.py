"""JobLauncher as synthesized: the only role in a client account that may create training jobs, with the same
conditions the kickoff role used to carry; its function runs the launcher alone, in the VPC, with the account's
own settings, and approves the app the account's own code bundle ships."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from fl_runtime.aws.contract import LaunchSettings
from fl_runtime.aws.launcher import SETTINGS_ENV
from fl_runtime.launch.fab import app_content_hash
from stacks.job_launcher import LAUNCHER_MODULES, launcher_code
from tests.stacks.cdk_helpers import CLIENT_ACCOUNT, all_templates, resources, statements

pytestmark = pytest.mark.slow


def _launcher_policy(template) -> dict:
    role = next(lid for lid in resources(template, "AWS::IAM::Role") if lid.startswith("LauncherRole"))
    [policy] = [
        p for p in resources(template, "AWS::IAM::ManagedPolicy").values() if {"Ref": role} in p["Properties"]["Roles"]
    ]
    return {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}


def test_only_the_launchers_role_may_create_training_jobs_and_pass_the_execution_role(three):
    for template in all_templates(three):
        creating = [s for s in statements(template) if "sagemaker:CreateTrainingJob" in json.dumps(s["Action"])]
        passing = [s for s in statements(template) if "iam:PassRole" in json.dumps(s["Action"])]
        if template is three.server:
            assert creating == passing == []
            continue
        policy = _launcher_policy(template)
        assert creating == [policy["StartOnlyTheFederationsJobsAsConfigured"]]
        assert passing == [policy["PassTheExecutionRoleToSageMakerOnly"]]


def test_the_launcher_may_start_only_the_federations_jobs_as_configured(client):
    policy = _launcher_policy(client)
    start = policy["StartOnlyTheFederationsJobsAsConfigured"]
    jobs = f"arn:aws:sagemaker:us-east-1:{CLIENT_ACCOUNT}:training-job/fl-client*"
    assert start["Resource"] == jobs
    condition = start["Condition"]
    assert len(condition["ForAllValues:StringEquals"]["sagemaker:VpcSubnets"]) == 2
    assert len(condition["ForAllValues:StringEquals"]["sagemaker:VpcSecurityGroupIds"]) == 1
    assert condition["ForAllValues:StringEquals"]["sagemaker:InstanceTypes"] == ["ml.m5.large"]
    assert condition["NumericLessThanEquals"] == {"sagemaker:MaxRuntimeInSeconds": 7200}
    data_key = {"Fn::GetAtt": [next(iter(resources(client, "AWS::KMS::Key"))), "Arn"]}
    assert condition["ArnEquals"] == {"sagemaker:VolumeKmsKey": data_key, "sagemaker:OutputKmsKey": data_key}
    assert set(condition["Null"]) == {
        "sagemaker:VpcSubnets",
        "sagemaker:VpcSecurityGroupIds",
        "sagemaker:InstanceTypes",
        "sagemaker:VolumeKmsKey",
        "sagemaker:OutputKmsKey",
    }
    assert sorted(policy["WatchAndStopTheJobs"]["Action"]) == [
        "sagemaker:DescribeTrainingJob",
        "sagemaker:StopTrainingJob",
    ]
    assert policy["WatchAndStopTheJobs"]["Resource"] == jobs
    # counting the jobs of the last 24 hours: SageMaker authorises ListTrainingJobs on * only
    assert policy["CountTheJobsOfTheLastDay"] == {
        "Sid": "CountTheJobsOfTheLastDay",
        "Effect": "Allow",
        "Action": "sagemaker:ListTrainingJobs",
        "Resource": "*",
    }
    granted = {a for s in policy.values() for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert {a for a in granted if a.startswith("sagemaker:")} == {
        "sagemaker:CreateTrainingJob",
        "sagemaker:DescribeTrainingJob",
        "sagemaker:StopTrainingJob",
        "sagemaker:ListTrainingJobs",
    }  # exactly what launcher.py calls
    passing = policy["PassTheExecutionRoleToSageMakerOnly"]
    assert passing["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    execution = next(lid for lid in resources(client, "AWS::IAM::Role") if lid.startswith("TrainingExecutionRole"))
    assert passing["Resource"] == {"Fn::GetAtt": [execution, "Arn"]}


def test_the_function_runs_in_the_vpc_with_the_accounts_own_settings_approving_its_own_app(client):
    [function] = [
        f["Properties"]
        for lid, f in resources(client, "AWS::Lambda::Function").items()
        if lid.startswith("LauncherFunction")
    ]
    assert function["Handler"] == "fl_runtime.aws.launcher.handler"
    assert len(function["VpcConfig"]["SubnetIds"]) == 2
    assert "ReservedConcurrentExecutions" not in function  # would fail the deploy in accounts with a quota of 10
    settings = json.dumps(function["Environment"]["Variables"][SETTINGS_ENV])
    assert f'\\"approved_app_hashes\\":[\\"{app_content_hash()}\\"]' in settings
    assert '\\"server_vpc_cidr\\":\\"10.0.0.0/16\\"' in settings and '\\"flower_port\\":9092' in settings
    assert '\\"max_jobs_per_day\\":10' in settings  # the default: the config names none
    fields = set(LaunchSettings.__dataclass_fields__)
    assert all(f'\\"{field}\\"' in settings for field in fields)


def test_a_clients_entry_reaches_its_launcher_another_approved_app_during_an_upgrade_and_its_daily_job_limit(tmp_path):
    from tests.stacks.cdk_helpers import default_context, synthesize

    entry = default_context()["federation:clients"][0]
    upgraded = [{**entry, "also_approved_app_hashes": ["ab" * 32], "max_jobs_per_day": 3}]
    synthesized = synthesize(tmp_path / "upgrade", clients=upgraded)
    [function] = [
        f["Properties"]
        for lid, f in resources(synthesized.clients["ClientStack"], "AWS::Lambda::Function").items()
        if lid.startswith("LauncherFunction")
    ]
    settings = json.dumps(function["Environment"]["Variables"][SETTINGS_ENV])
    assert f'\\"approved_app_hashes\\":[\\"{app_content_hash()}\\",\\"{"ab" * 32}\\"]' in settings
    assert '\\"max_jobs_per_day\\":3' in settings


def test_the_functions_code_is_the_launcher_alone_and_needs_nothing_but_boto3(tmp_path):
    folder = launcher_code(tmp_path / "cache")
    shipped = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert shipped == sorted(f"fl_runtime/{name}" for name in LAUNCHER_MODULES)
    probe = (
        "import sys, fl_runtime.aws.launcher as l\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'flwr', 'sklearn', 'rich', 'cryptography'}))\n"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {str(folder)!r}); " + probe.replace("\n", "; ", 1),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert launcher_code(tmp_path / "cache") == folder  # named after its content: the same code, the same asset


def test_the_shipped_launcher_checks_a_ca_certificate_with_the_standard_library_alone(tmp_path):
    """The Lambda runtime has no ``cryptography``: the shipped code parses X.509 through ``ssl`` (OpenSSL)."""
    from fl_runtime.launch.pki import create_tls

    folder = launcher_code(tmp_path / "cache")
    tls = create_tls(tmp_path / "tls", ["10.0.1.25"])
    probe = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(folder)!r})
        from fl_runtime.aws import launcher
        from fl_runtime.errors import RequestRefused
        launcher._check_certificate({tls.ca_certificate.read_text()!r})
        try:
            launcher._check_certificate({tls.server_certificate.read_text()!r})
        except RequestRefused as refusal:
            print(refusal)
        print(launcher.__file__.startswith({str(folder)!r}), [m for m in sys.modules if m.startswith('cryptography')])
    """)
    done = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "field 'ca_certificate': not a CA certificate (a run's CA has BasicConstraints CA:TRUE and may sign "
        "certificates)",
        "True []",
    ]
