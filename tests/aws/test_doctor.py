"""``doctor`` against the moto server: a healthy deployment passes on the server and on a client; each broken one
fails naming the check, the client and the fix, and nothing else fails.

The network is real moto EC2 (VPCs, a peering per client accepted in the client's account, route tables, security
groups with group-pair rules) and the published settings carry its ids. One deployment serves the module: each
broken case publishes its own variant of the settings under its own parameter prefix. The kickoff roles' trust
(the external id) is the emulator's rule, since moto's STS accepts any; the launchers answer through the
emulator's Lambda rule with the launcher's own code, as in ``test_kickoff``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import boto3
import pytest
from botocore.handlers import add_expect_header

from fl_runtime import cli
from fl_runtime.app.identity import fingerprint
from fl_runtime.app.pins import ClientPins, Member
from fl_runtime.aws import doctor_checks
from fl_runtime.aws.contract import ClientAccountSettings, ServerAccountSettings, client_parameter
from fl_runtime.aws.doctor import unpack_runtime
from fl_runtime.aws.server_account import RehearsalServer
from fl_runtime.launch.fab import app_content_hash, tree_content_hash
from fl_runtime.learning.data import LabelledData, write_csv
from fl_runtime.learning.task import ClientData
from tests import aws_emulator as aws
from tests.rehearsal import client_settings, publish_server_settings, server_settings, slim_bundle

pytestmark = pytest.mark.slow
CLIENTS = {"insurer-a": "111111111111", "insurer-b": "222222222222"}
SERVER_CIDR = "10.0.0.0/16"
PORT = 9092
OTHER_APP = "0" * 64


@dataclasses.dataclass
class World:
    """One healthy deployment in moto, and spare EC2 objects the broken variants point at."""

    recorder: aws.Recorder
    server: ServerAccountSettings
    clients: dict[str, ClientAccountSettings]
    sessions: dict[str, boto3.Session]  # each client's own account
    launchers: dict  # launcher ARN -> LaunchSettings: what each launcher function was deployed with
    spare: dict[str, str]  # an empty server and client route table, a group with no rule, a pending peering
    folder: Path
    identities: dict[str, tuple[str, str]]  # each client's identity key (ARN) and its fingerprint


@dataclasses.dataclass(frozen=True)
class Row:
    check: str
    client: str
    status: str
    detail: str
    fix: str


def upload(s3, path: Path, bucket: str, key: str) -> None:
    """PutObject without ``Expect: 100-continue``, which the emulator's HTTP/1.0 proxy never answers: boto3 would
    wait a second for it on every object."""
    s3.meta.events.unregister("before-call.s3", add_expect_header)
    s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


def _network(ec2, client_ec2s: dict) -> tuple[dict, dict]:
    """The server VPC, each client VPC peered with it (accepted by the client), routes both ways, the Flower rule.

    Each client's training group lives in the server account: moto refuses a rule naming another account's group
    (InvalidGroup.NotFound), which AWS accepts across a peering.
    """
    vpc = ec2.create_vpc(CidrBlock=SERVER_CIDR)["Vpc"]["VpcId"]
    ids = {"vpc": vpc, "tables": [ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in "ab"]}
    ids["notebook"] = ec2.create_security_group(GroupName="notebook", Description="n", VpcId=vpc)["GroupId"]
    clients = {}
    for index, (name, client_ec2) in enumerate(client_ec2s.items(), start=1):
        cidr = f"10.{index}.0.0/16"
        client_vpc = client_ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
        peering = ec2.create_vpc_peering_connection(VpcId=vpc, PeerVpcId=client_vpc, PeerOwnerId=CLIENTS[name])
        pcx = peering["VpcPeeringConnection"]["VpcPeeringConnectionId"]
        client_ec2.accept_vpc_peering_connection(VpcPeeringConnectionId=pcx)
        for table in ids["tables"]:
            ec2.create_route(RouteTableId=table, DestinationCidrBlock=cidr, VpcPeeringConnectionId=pcx)
        tables = [client_ec2.create_route_table(VpcId=client_vpc)["RouteTable"]["RouteTableId"] for _ in "ab"]
        for table in tables:
            client_ec2.create_route(RouteTableId=table, DestinationCidrBlock=SERVER_CIDR, VpcPeeringConnectionId=pcx)
        group = ec2.create_security_group(GroupName=f"training-{name}", Description="t", VpcId=vpc)["GroupId"]
        rule = {"IpProtocol": "tcp", "FromPort": PORT, "ToPort": PORT, "UserIdGroupPairs": [{"GroupId": group}]}
        ec2.authorize_security_group_ingress(GroupId=ids["notebook"], IpPermissions=[rule])
        clients[name] = {"vpc": client_vpc, "pcx": pcx, "tables": tables, "group": group}
    return ids, clients


def _spare(ec2, client_ec2, server_vpc: str, client_vpc: str) -> dict[str, str]:
    third_vpc = client_ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    pending = ec2.create_vpc_peering_connection(VpcId=server_vpc, PeerVpcId=third_vpc, PeerOwnerId=CLIENTS["insurer-a"])
    return {
        "server table": ec2.create_route_table(VpcId=server_vpc)["RouteTable"]["RouteTableId"],
        "client table": client_ec2.create_route_table(VpcId=client_vpc)["RouteTable"]["RouteTableId"],
        "bare group": ec2.create_security_group(GroupName="bare", Description="b", VpcId=server_vpc)["GroupId"],
        "pending peering": pending["VpcPeeringConnection"]["VpcPeeringConnectionId"],
    }


def alias_arn(name: str) -> str:
    return f"arn:aws:kms:us-east-1:{CLIENTS[name]}:alias/fl-identity-{name}"


def pins_of(name: str, key: str, *members: Member) -> ClientPins:
    """Client ``name``'s pins, by default as one organisation's stack writes them: every member by its alias."""
    named = members or tuple(Member(member, "", identity_key=alias_arn(member)) for member in CLIENTS)
    return ClientPins(client=name, members=named, identity=f"kms:{key}", min_members=2)


def _identity(name: str, settings: ClientAccountSettings, session) -> tuple[str, str]:
    """The client stack's identity key (ECC_NIST_P256, behind its alias) and pins document, in its account."""
    kms = session.client("kms")
    key = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    kms.create_alias(AliasName=f"alias/fl-identity-{name}", TargetKeyId=key)
    document = pins_of(name, key).to_json()
    session.client("ssm").put_parameter(Name=settings.launch.pins_parameter, Value=document, Type="String")
    return key, fingerprint(bytes(kms.get_public_key(KeyId=key)["PublicKey"]))


def _client(name: str, ids: dict, folder: Path, data: LabelledData, session) -> ClientAccountSettings:
    """A client stack's settings with the network's ids, published in its account with its data and code bundle."""
    base = client_settings(name, CLIENTS[name], port=PORT, server_vpc_cidr=SERVER_CIDR)
    launch = dataclasses.replace(base.launch, training_security_group_id=ids["group"])
    settings = dataclasses.replace(base, vpc_id=ids["vpc"], route_table_ids=tuple(ids["tables"]), launch=launch)
    session.client("ssm").put_parameter(
        Name=client_parameter("/fl-fraud", name), Value=settings.to_json(), Type="String"
    )
    s3 = session.client("s3")
    for bucket in (settings.data_bucket, settings.code_bucket):
        s3.create_bucket(Bucket=bucket)
    split = ClientData.split(data, seed=0)
    for part, rows in (("train.csv", split.train), ("validation.csv", split.validation)):
        write_csv(folder / name / part, rows)
        upload(s3, folder / name / part, settings.data_bucket, f"data_prep/{part}")
    upload(s3, slim_bundle(folder / name / "source.tar.gz"), settings.code_bucket, "code/source.tar.gz")
    return settings


def _server(ids: dict, network: dict, clients: list[ClientAccountSettings], folder: Path, test: LabelledData):
    base = server_settings(clients, port=PORT, region="us-east-1")
    entries = tuple(dataclasses.replace(e, peering_connection_id=network[e.name]["pcx"]) for e in base.clients)
    settings = dataclasses.replace(
        base,
        server_vpc_cidr=SERVER_CIDR,
        vpc_id=ids["vpc"],
        route_table_ids=tuple(ids["tables"]),
        notebook_security_group_id=ids["notebook"],
        clients=entries,
    )
    publish_server_settings(boto3.client("ssm"), settings)
    boto3.client("s3").create_bucket(Bucket=settings.results_bucket)
    write_csv(folder / "results" / "data" / "test.csv", test)
    upload(boto3.client("s3"), folder / "results" / "data" / "test.csv", settings.results_bucket, "data/test.csv")
    return settings


def _trust_policy(external_ids: dict[str, str]):
    """Each kickoff role trusts the server only with its client's external id, as IAM would check it."""

    def rule(call: aws.Call):
        role = call.body.get("RoleArn", "")
        if call.operation != "AssumeRole" or not role.endswith(":role/FL-kickoff-client-job"):
            return None
        if call.body.get("ExternalId") == external_ids[role.split(":")[4]]:
            return None
        return aws.query_error("AccessDenied", f"User is not authorized to perform: sts:AssumeRole on resource: {role}")

    return rule


@pytest.fixture(scope="module")
def world(tmp_path_factory, synthetic):
    folder = tmp_path_factory.mktemp("doctor")
    with contextlib.ExitStack() as stack, pytest.MonkeyPatch.context() as patch:
        recorder, endpoint = aws.start(stack)
        for key, value in aws.boto_env(endpoint).items():
            patch.setenv(key, value)
        sessions = {name: aws.account_session(endpoint, account) for name, account in CLIENTS.items()}
        ec2 = boto3.client("ec2")
        ids, network = _network(ec2, {name: session.client("ec2") for name, session in sessions.items()})
        clients = {
            name: _client(name, network[name], folder, synthetic.subset(range(i * 900, (i + 1) * 900)), sessions[name])
            for i, name in enumerate(CLIENTS)
        }
        server = _server(ids, network, list(clients.values()), folder, synthetic.subset(range(1800, 2400)))
        spare = _spare(ec2, sessions["insurer-a"].client("ec2"), ids["vpc"], network["insurer-a"]["vpc"])
        launchers = {c.launcher_arn: c.launch for c in clients.values()}
        identities = {name: _identity(name, clients[name], sessions[name]) for name in CLIENTS}
        recorder.rules += [_trust_policy({c.account: c.external_id for c in clients.values()})]
        recorder.rules += [aws.launcher_rule(endpoint, launchers)]
        yield World(recorder, server, clients, sessions, launchers, spare, folder, identities)


def doctor_output(monkeypatch, capsys, *args: str, session=None) -> tuple[int, list[Row], str]:
    """``python -m fl_runtime doctor ARGS`` in this process, as ``session``'s account if given: exit code, rows, and
    what it printed."""
    monkeypatch.setenv("COLUMNS", "3000")  # one line per row
    if session is not None:
        credentials = session.get_credentials().get_frozen_credentials()
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials.secret_key)
        monkeypatch.setenv("AWS_SESSION_TOKEN", credentials.token)
    code = cli.main(["doctor", *args])
    out = capsys.readouterr().out
    lines = [line.split("│")[1:-1] for line in out.splitlines() if line.count("│") == 6]
    return code, [Row(*(cell.strip() for cell in cells)) for cells in lines], out


def doctor(monkeypatch, capsys, *args: str, session=None) -> tuple[int, list[Row]]:
    code, rows, _ = doctor_output(monkeypatch, capsys, *args, session=session)
    return code, rows


def failed(rows: list[Row]) -> dict[tuple[str, str], Row]:
    return {(row.check, row.client): row for row in rows if row.status == "problem"}


def publish_server(world: World, prefix: str, **changes) -> str:
    publish_server_settings(boto3.client("ssm"), dataclasses.replace(world.server, **changes), prefix)
    return prefix


def entries(world: World, name: str, **changes) -> tuple:
    """The federation config's clients, with ``changes`` to client ``name``'s entry."""
    return tuple(dataclasses.replace(e, **changes) if e.name == name else e for e in world.server.clients)


def publish_client(world: World, prefix: str, name: str, launch: dict | None = None, **changes) -> str:
    """A variant of client ``name``'s settings at ``prefix``, in its account; its parameter's name."""
    settings = world.clients[name]
    settings = dataclasses.replace(settings, launch=dataclasses.replace(settings.launch, **(launch or {})), **changes)
    parameter = client_parameter(prefix, name)
    world.sessions[name].client("ssm").put_parameter(Name=parameter, Value=settings.to_json(), Type="String")
    return parameter


# -- healthy ---------------------------------------------------------------------------------------------


def test_a_healthy_deployment_passes_every_server_check_and_starts_nothing(world, monkeypatch, capsys):
    before = len(world.recorder.calls)
    code, rows = doctor(monkeypatch, capsys, "--server")
    assert code == 0, rows
    per_client = ["kickoff role", "client settings", "launcher dry-run", "app approved", "peering", "routes"]
    expected = [("server settings", "-"), ("test set", "-")]
    expected += [(check, name) for name in CLIENTS for check in [*per_client, "flower port"]]
    assert [(row.check, row.client) for row in rows] == expected
    assert all(row.status == "ok" and row.fix == "" for row in rows)
    calls = world.recorder.calls[before:]
    assert [json.loads(c.raw)["action"] for c in calls if aws.INVOCATION.match(c.path)] == ["dry-run", "dry-run"]
    sagemaker = {c.operation for c in calls if c.operation.startswith("SageMaker.")}
    # a dry run starts no job: it reads what a start checks (the run's job, the jobs of the last 24 hours)
    assert sagemaker == {"SageMaker.DescribeTrainingJob", "SageMaker.ListTrainingJobs"}


def test_a_healthy_client_passes_every_client_check_and_prints_its_fingerprint_to_share(world, monkeypatch, capsys):
    code, rows, out = doctor_output(monkeypatch, capsys, "--client", "insurer-a", session=world.sessions["insurer-a"])
    assert code == 0, rows
    checks = ["client settings", "routes", "peering", "staged data", "app hash", "pins", "identity key", "members"]
    assert [row.check for row in rows] == checks
    assert all(row.status == "ok" and row.client == "insurer-a" for row in rows)
    assert app_content_hash() in rows[4].detail  # the bundle's app, hashed as fab hashes the one this code ships
    key, own = world.identities["insurer-a"]
    assert rows[6].detail == f"{key}: {own}"
    assert rows[7].detail == "read from KMS by the job when it starts: insurer-a, insurer-b"
    # below the table, whole on one line, for the operator to send to the other parties
    assert f"client insurer-a's identity fingerprint (its identity_fingerprint in the federation config): {own}" in (
        out.splitlines()
    )


def test_a_rehearsal_description_is_checked_with_its_launchers_in_process(world, monkeypatch, capsys):
    description = RehearsalServer.describe(
        world.folder / "rehearsal.json",
        server=world.server,
        clients=list(world.clients.values()),
        buckets={"results": world.folder / "results"},
        jobs_folder=world.folder / "jobs",
        python="python",
    )
    before = len(world.recorder.calls)
    code, rows = doctor(monkeypatch, capsys, "--server", "--rehearsal", str(description))
    assert code == 0, rows
    assert {row.detail for row in rows if row.check == "kickoff role"} == {
        "rehearsal: no role to assume, the launcher runs in process"
    }
    assert {row.check for row in rows} >= {"launcher dry-run", "peering", "routes", "flower port", "test set"}
    assert not [c for c in world.recorder.calls[before:] if aws.INVOCATION.match(c.path) or c.operation == "AssumeRole"]


# -- broken: the server side ------------------------------------------------------------------------------


def test_missing_client_settings_fail_that_client_naming_the_parameter(world, monkeypatch, capsys):
    parameter = client_parameter("/not-deployed", "insurer-b")
    prefix = publish_server(
        world, "/missing-settings", clients=entries(world, "insurer-b", settings_parameter=parameter)
    )
    code, rows = doctor(monkeypatch, capsys, "--server", "--parameter-prefix", prefix)
    assert code == 1
    assert list(failed(rows)) == [("client settings", "insurer-b")]
    row = failed(rows)["client settings", "insurer-b"]
    assert parameter in row.detail and "ParameterNotFound" in row.detail
    assert "deploy client insurer-b's stack" in row.fix


def test_missing_settings_on_a_client_notebook_are_named_with_the_fix(world, monkeypatch, capsys):
    code, rows = doctor(monkeypatch, capsys, "--client", "insurer-a", "--parameter-prefix", "/nothing-here")
    assert code == 1
    assert [(row.check, row.client, row.status) for row in rows] == [("client settings", "insurer-a", "problem")]
    assert "/nothing-here/client/insurer-a/settings" in rows[0].detail
    assert "deploy client insurer-a's stack" in rows[0].fix


def test_a_wrong_external_id_fails_the_kickoff_role_of_that_client_only(world, monkeypatch, capsys):
    prefix = publish_server(world, "/wrong-id", clients=entries(world, "insurer-a", external_id="fl-insurer-a-x0"))
    code, rows = doctor(monkeypatch, capsys, "--server", "--parameter-prefix", prefix)
    assert code == 1
    assert list(failed(rows)) == [("kickoff role", "insurer-a")]
    row = failed(rows)["kickoff role", "insurer-a"]
    assert "sts:AssumeRole" in row.detail and "AccessDenied" in row.detail
    assert "make client insurer-a's external id in the federation config the one its stack trusts" in row.fix
    assert ("launcher dry-run", "insurer-a") not in {(r.check, r.client) for r in rows}  # no session, no launcher


def test_a_server_route_table_without_the_client_routes_fails_routes_for_each_client(world, monkeypatch, capsys):
    table = world.spare["server table"]
    prefix = publish_server(world, "/missing-route", route_table_ids=(*world.server.route_table_ids, table))
    code, rows = doctor(monkeypatch, capsys, "--server", "--parameter-prefix", prefix)
    assert code == 1
    assert list(failed(rows)) == [("routes", "insurer-a"), ("routes", "insurer-b")]
    for index, entry in enumerate(world.server.clients, start=1):
        row = failed(rows)["routes", entry.name]
        assert row.detail == f"{table} has no route to 10.{index}.0.0/16 through {entry.peering_connection_id}"
        assert f"aws ec2 create-route --route-table-id <table> --destination-cidr-block 10.{index}.0.0/16" in row.fix


def test_a_missing_test_set_is_named_with_the_command_that_stages_it(world, monkeypatch, capsys):
    code, rows = doctor(
        monkeypatch, capsys, "--server", "--parameter-prefix", publish_server(world, "/no-test", test_prefix="t/")
    )
    assert code == 1
    assert list(failed(rows)) == [("test set", "-")]
    assert failed(rows)["test set", "-"].detail == "no test set at s3://results/t/test.csv"
    assert "python -m fl_runtime stage-data --server" in failed(rows)["test set", "-"].fix


@pytest.mark.parametrize("broken", ["no rule", "another group"])
def test_the_flower_port_must_admit_the_group_the_clients_jobs_run_in(world, monkeypatch, capsys, broken):
    if broken == "no rule":
        prefix = publish_server(world, "/bare-group", notebook_security_group_id=world.spare["bare group"])
        names, told = list(CLIENTS), f"{world.spare['bare group']} admits no tcp {PORT} from sg-"
    else:
        prefix = publish_server(
            world, "/old-group", clients=entries(world, "insurer-b", training_security_group_id="sg-0old")
        )
        jobs_group = world.clients["insurer-b"].launch.training_security_group_id
        names, told = ["insurer-b"], f"the server admits sg-0old but client insurer-b's jobs run in {jobs_group}"
    code, rows = doctor(monkeypatch, capsys, "--server", "--parameter-prefix", prefix)
    assert code == 1
    assert list(failed(rows)) == [("flower port", name) for name in names]
    assert all(told in failed(rows)["flower port", name].detail for name in names)
    assert all("redeploy ServerStack" in failed(rows)["flower port", name].fix for name in names)


def test_a_peering_the_client_has_not_accepted_names_the_command_that_accepts_it(world, monkeypatch, capsys):
    pending = world.spare["pending peering"]
    prefix = publish_server(world, "/pending", clients=entries(world, "insurer-a", peering_connection_id=pending))
    code, rows = doctor(monkeypatch, capsys, "--server", "--parameter-prefix", prefix)
    assert code == 1
    assert list(failed(rows)) == [("peering", "insurer-a"), ("routes", "insurer-a")]  # no route through it either
    row = failed(rows)["peering", "insurer-a"]
    assert row.detail == f"{pending} is pending-acceptance, not active"
    assert f"aws ec2 accept-vpc-peering-connection --vpc-peering-connection-id {pending}" in row.fix


@pytest.mark.parametrize(
    "deployed, check, told",
    [
        (
            {"approved_app_hashes": (OTHER_APP,)},
            "app approved",
            f"is not approved by client insurer-a (approved: {OTHER_APP})",
        ),
        ({"server_vpc_cidr": "10.9.0.0/16"}, "launcher dry-run", "is outside the server VPC 10.9.0.0/16"),
    ],
)
def test_a_launcher_that_would_refuse_the_run_is_named_before_any_job(
    world, monkeypatch, capsys, deployed, check, told
):
    """The launcher function as deployed differs from the federation: it approves another app, or another server VPC."""
    arn = f"{world.clients['insurer-a'].launcher_arn}-{check.replace(' ', '-')}"
    world.launchers[arn] = dataclasses.replace(world.clients["insurer-a"].launch, **deployed)
    parameter = publish_client(world, f"/launcher-{check.replace(' ', '-')}", "insurer-a", launcher_arn=arn)
    prefix = publish_server(
        world, f"/via-{check.replace(' ', '-')}", clients=entries(world, "insurer-a", settings_parameter=parameter)
    )
    code, rows = doctor(monkeypatch, capsys, "--server", "--parameter-prefix", prefix)
    assert code == 1
    assert list(failed(rows)) == [(check, "insurer-a")]
    assert told in failed(rows)[check, "insurer-a"].detail
    assert "redeploy" in failed(rows)[check, "insurer-a"].fix


# -- broken: the client side ------------------------------------------------------------------------------


def test_a_client_route_table_without_the_server_route_fails_routes(world, monkeypatch, capsys):
    settings, table = world.clients["insurer-a"], world.spare["client table"]
    publish_client(world, "/client-route", "insurer-a", route_table_ids=(*settings.route_table_ids, table))
    session = world.sessions["insurer-a"]
    code, rows = doctor(
        monkeypatch, capsys, "--client", "insurer-a", "--parameter-prefix", "/client-route", session=session
    )
    assert code == 1
    assert list(failed(rows)) == [("routes", "insurer-a")]
    row = failed(rows)["routes", "insurer-a"]
    assert row.detail == f"{table} has no route to {SERVER_CIDR} through a VPC peering connection"
    assert "redeploy client insurer-a's stack" in row.fix


def test_a_code_bundle_whose_app_the_account_did_not_approve_fails_the_app_hash(world, monkeypatch, capsys):
    publish_client(world, "/other-app", "insurer-a", launch={"approved_app_hashes": (OTHER_APP,)})
    session = world.sessions["insurer-a"]
    code, rows = doctor(
        monkeypatch, capsys, "--client", "insurer-a", "--parameter-prefix", "/other-app", session=session
    )
    assert code == 1
    assert list(failed(rows)) == [("app hash", "insurer-a")]
    row = failed(rows)["app hash", "insurer-a"]
    assert row.detail == (
        f"the code bundle's app {app_content_hash()} is not approved by this account (approved: {OTHER_APP})"
    )
    assert row.fix.startswith("redeploy the client stack")


def test_staged_data_must_be_there_and_pass_the_jobs_own_checks(world, monkeypatch, capsys, synthetic):
    session, settings = world.sessions["insurer-a"], world.clients["insurer-a"]
    one_class = synthetic.subset(synthetic.y == 0)
    write_csv(world.folder / "one-class.csv", one_class.subset(range(100)))
    for part in ("train.csv", "validation.csv"):
        upload(session.client("s3"), world.folder / "one-class.csv", settings.data_bucket, f"bad/{part}")
    for prefix, data_prefix, told in [
        ("/unstaged", "nothing/", "nothing staged at s3://data-insurer-a/nothing/train.csv"),
        ("/bad-data", "bad/", "s3://data-insurer-a/bad/train.csv + s3://data-insurer-a/bad/validation.csv: column"),
    ]:
        publish_client(world, prefix, "insurer-a", data_prefix=data_prefix)
        code, rows = doctor(monkeypatch, capsys, "--client", "insurer-a", "--parameter-prefix", prefix, session=session)
        assert code == 1
        assert list(failed(rows)) == [("staged data", "insurer-a")]
        assert failed(rows)["staged data", "insurer-a"].detail.startswith(told)
        assert "python -m fl_runtime stage-data --client insurer-a" in failed(rows)["staged data", "insurer-a"].fix


# -- options and the pure checks ----------------------------------------------------------------------------


def test_bad_options_exit_2(capsys):
    with pytest.raises(SystemExit) as neither:
        cli.main(["doctor"])
    assert neither.value.code == 2
    assert cli.main(["doctor", "--client", "a", "--rehearsal", "r.json"]) == 2
    assert "--rehearsal goes with --server" in capsys.readouterr().err
    assert cli.main(["doctor", "--server", "--rehearsal", "/nonexistent/rehearsal.json"]) == 2


ENTRY = server_settings([client_settings("a", "111111111111")]).clients[0]


@pytest.mark.parametrize(
    "permission, admitted",
    [
        (
            {"IpProtocol": "tcp", "FromPort": 9000, "ToPort": 9100, "UserIdGroupPairs": [{"GroupId": "sg-0training"}]},
            True,
        ),
        ({"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": "sg-0training", "UserId": "111111111111"}]}, True),
        (
            {"IpProtocol": "udp", "FromPort": 9092, "ToPort": 9092, "UserIdGroupPairs": [{"GroupId": "sg-0training"}]},
            False,
        ),
        ({"IpProtocol": "tcp", "FromPort": 9092, "ToPort": 9092, "IpRanges": [{"CidrIp": "10.1.0.0/16"}]}, False),
        (
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "UserIdGroupPairs": [{"GroupId": "sg-0training"}]},
            False,
        ),
    ],
)
def test_the_flower_port_rule_must_name_the_jobs_group_on_tcp_covering_the_port(permission, admitted):
    group = {"GroupId": "sg-0nb", "IpPermissions": [permission]}
    check = doctor_checks.flower_port_check(ENTRY, "sg-0training", [group], "sg-0nb", 9092)
    assert check.ok is admitted and check.client == "a"
    assert check.fix == (
        ""
        if admitted
        else "redeploy ServerStack (its notebook group admits the Flower port from each client's training group)"
    )


def test_a_blackhole_route_or_one_through_another_peering_does_not_count():
    routes = [
        {"DestinationCidrBlock": "10.1.0.0/16", "VpcPeeringConnectionId": "pcx-1", "State": "blackhole"},
        {"DestinationCidrBlock": "10.1.0.0/16", "VpcPeeringConnectionId": "pcx-2", "State": "active"},
    ]
    table = {"RouteTableId": "rtb-1", "Routes": routes}
    check = doctor_checks.route_check("a", ("rtb-1", "rtb-9"), [table], "10.1.0.0/16", "pcx-1", "fix it")
    assert not check.ok
    assert check.detail == "rtb-1 has no route to 10.1.0.0/16 through pcx-1; route table rtb-9 does not exist"
    assert doctor_checks.route_check("a", ("rtb-1",), [table], "10.1.0.0/16", None, "").ok  # pcx-2 is a peering too


def test_the_bundles_app_is_hashed_from_its_own_files_as_the_shipped_app_is(tmp_path):
    with slim_bundle(tmp_path / "source.tar.gz").open("rb") as stream:
        unpack_runtime(stream, tmp_path / "code")
    assert sorted(p.name for p in (tmp_path / "code").iterdir()) == ["fl_runtime"]  # only the runtime is written
    package = tmp_path / "code" / "fl_runtime"
    assert tree_content_hash(package) == app_content_hash()
    (package / "aws" / "launcher.py").write_text("# not part of the app\n")
    assert tree_content_hash(package) == app_content_hash()
    (package / "learning" / "model.py").write_text("# another model\n")
    assert tree_content_hash(package) != app_content_hash()


# -- broken: the member's pins and identity key -------------------------------------------------------------


def publish_pins(world: World, prefix: str, pins: ClientPins | str) -> str:
    """insurer-a's settings at ``prefix`` naming a pins document of its own there (a variant of the healthy one)."""
    parameter = client_parameter(prefix, "insurer-a", "pins")
    value = pins if isinstance(pins, str) else pins.to_json()
    world.sessions["insurer-a"].client("ssm").put_parameter(Name=parameter, Value=value, Type="String")
    publish_client(world, prefix, "insurer-a", launch={"pins_parameter": parameter})
    return prefix


def client_doctor(world: World, monkeypatch, capsys, prefix: str) -> tuple[int, list[Row]]:
    session = world.sessions["insurer-a"]
    return doctor(monkeypatch, capsys, "--client", "insurer-a", "--parameter-prefix", prefix, session=session)


def test_pins_that_are_missing_or_another_members_fail_the_pins_check_naming_the_parameter(world, monkeypatch, capsys):
    missing = client_parameter("/no-pins", "insurer-a", "pins")
    publish_client(world, "/no-pins", "insurer-a", launch={"pins_parameter": missing})
    code, rows = client_doctor(world, monkeypatch, capsys, "/no-pins")
    assert code == 1 and list(failed(rows)) == [("pins", "insurer-a")]
    assert (
        missing in failed(rows)["pins", "insurer-a"].detail
        and "ParameterNotFound" in failed(rows)["pins", "insurer-a"].detail
    )
    assert failed(rows)["pins", "insurer-a"].fix.startswith("redeploy client insurer-a's stack")
    assert not {"identity key", "members"} & {row.check for row in rows}  # nothing to check them against
    key, _ = world.identities["insurer-b"]
    publish_pins(world, "/others-pins", pins_of("insurer-b", key))
    code, rows = client_doctor(world, monkeypatch, capsys, "/others-pins")
    assert code == 1 and list(failed(rows)) == [("pins", "insurer-a")]
    assert "holds member insurer-b's pins, not insurer-a's" in failed(rows)["pins", "insurer-a"].detail
    publish_pins(world, "/bad-pins", '{"client": "insurer-a"}')
    code, rows = client_doctor(world, monkeypatch, capsys, "/bad-pins")
    assert list(failed(rows)) == [("pins", "insurer-a")] and "field 'members' is missing" in rows[-1].detail


def test_an_identity_key_whose_fingerprint_is_not_the_pinned_one_fails_naming_both(world, monkeypatch, capsys):
    key, own = world.identities["insurer-a"]
    stale = "sha256:" + "5" * 64
    members = (Member("insurer-a", stale), Member("insurer-b", "sha256:" + "b" * 64))
    publish_pins(world, "/rotated", pins_of("insurer-a", key, *members))
    code, rows = client_doctor(world, monkeypatch, capsys, "/rotated")
    assert code == 1 and list(failed(rows)) == [("identity key", "insurer-a")]
    row = failed(rows)["identity key", "insurer-a"]
    assert row.detail == f"{key} has the fingerprint {own}, but this member's pins say {stale}"
    assert (
        row.fix
        == f"rotated? send {own} to every party: each sets client insurer-a's identity_fingerprint to it and redeploys"
    )


def test_an_alias_that_leads_the_other_members_to_another_key_than_the_signing_one_fails(world, monkeypatch, capsys):
    kms = world.sessions["insurer-a"].client("kms")
    other = kms.create_key(KeySpec="ECC_NIST_P256", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["Arn"]
    publish_pins(world, "/split-alias", pins_of("insurer-a", other))  # signs with one key, its alias names another
    code, rows = client_doctor(world, monkeypatch, capsys, "/split-alias")
    assert code == 1 and list(failed(rows)) == [("identity key", "insurer-a")]
    assert failed(rows)["identity key", "insurer-a"].detail.startswith(f"{alias_arn('insurer-a')} leads to another key")


def test_an_identity_key_kms_does_not_know_fails_naming_it(world, monkeypatch, capsys):
    gone = "arn:aws:kms:us-east-1:111111111111:key/00000000-0000-0000-0000-000000000000"
    publish_pins(world, "/no-key", pins_of("insurer-a", gone))
    code, rows = client_doctor(world, monkeypatch, capsys, "/no-key")
    assert code == 1 and list(failed(rows)) == [("identity key", "insurer-a")]
    row = failed(rows)["identity key", "insurer-a"]
    assert row.detail.startswith(f"kms:GetPublicKey on {gone} failed (NotFoundException")
    assert "redeploy client insurer-a's stack" in row.fix


def test_a_member_with_neither_a_fingerprint_nor_a_key_fails_the_members_check_naming_it(world, monkeypatch, capsys):
    """Separate organisations before every party's fingerprint is agreed: every member would refuse the run."""
    key, own = world.identities["insurer-a"]
    publish_pins(world, "/unpinned", pins_of("insurer-a", key, Member("insurer-a", own), Member("insurer-b", "")))
    code, rows = client_doctor(world, monkeypatch, capsys, "/unpinned")
    assert code == 1 and list(failed(rows)) == [("members", "insurer-a")]
    row = failed(rows)["members", "insurer-a"]
    assert row.detail == "no identity fingerprint pinned for insurer-b: every member refuses a run until each is"
    assert "python -m fl_runtime doctor --client <name>" in row.fix and "identity_fingerprint" in row.fix
    misnamed = Member("insurer-b", "", identity_key="arn:aws:kms:us-east-1:222222222222:alias/someone-else")
    publish_pins(world, "/misnamed", pins_of("insurer-a", key, Member("insurer-a", own), misnamed))
    code, rows = client_doctor(world, monkeypatch, capsys, "/misnamed")
    assert list(failed(rows)) == [("members", "insurer-a")]
    assert (
        "insurer-b's identity key arn:aws:kms:us-east-1:222222222222:alias/someone-else is not its alias"
        in rows[-1].detail
    )
