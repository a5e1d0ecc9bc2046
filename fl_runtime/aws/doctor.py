"""``python -m fl_runtime doctor``: a preflight check of a deployment, from the notebook it runs on.

A deployment wrong somewhere (a missing route, a wrong external id, a security group, unstaged data)
otherwise first shows as a training job that times out minutes into a run. ``doctor`` checks what its
side can see, starts nothing (no training job, no SuperLink) and prints one row per check: ok, or the
problem and its fix. Exit 0 when every check passes, 1 otherwise.

``doctor --server`` (the server notebook; ``--rehearsal FILE`` takes the settings and reaches the
launchers as ``federate --rehearsal`` does, while the network checks still ask EC2):

- server settings: ``<prefix>/server/settings`` is in SSM and parses;
- test set: ``<results_bucket>/<test_prefix>test.csv`` exists;
- for each client: kickoff role: its ``FL-kickoff-client-job`` is assumed with its external id; client
  settings: its ``ClientAccountSettings`` are read through that role; launcher dry-run: its launcher
  accepts a dry run of a start (run ``doctor``, an address in the server VPC on the Flower port, a
  throwaway CA certificate: every check of a start, no job); app approved: the app this runtime submits
  is among the hashes it answers; peering: the server's peering connection with it is ``active``; routes:
  every server route table sends its VPC CIDR through that connection; flower port: the notebook's
  security group admits tcp on the Flower port from the group the client's jobs run in (as the client
  publishes it), and the federation config names that same group. Through PrivateLink the network checks are
  ``doctor_privatelink``'s instead: the endpoint service, its zones, the notebook as the load balancer's target,
  each client's endpoint connection.

``doctor --client NAME`` (that client's notebook, in its own account):

- client settings: ``<prefix>/client/NAME/settings`` is in SSM and parses;
- routes: every client route table sends the server's VPC CIDR through a VPC peering connection;
  peering: each such connection is ``active`` (through PrivateLink: this VPC's endpoint, its zones by id, and the
  private name resolving to it, ``doctor_privatelink``);
- staged data: ``train.csv`` and ``validation.csv`` under the data prefix exist and pass the checks
  stage-data and the training job make (``learning.data.read_csv`` and ``check_split``);
- app hash: the Flower app inside the code bundle the jobs run (``launch.source_uri``) hashes, as
  ``launch.fab`` hashes apps, to one of the hashes the account approves;
- pins, identity key, members (``doctor_members``): the member's pins document is in SSM and parses; its identity
  key's fingerprint is the pinned one (and is printed, to send to the other parties); every member has a
  fingerprint, or (one organisation) an identity key its job reads when it starts.

A check that an earlier failure makes impossible (no kickoff session, no settings) is left out. The checks
are pure functions of what AWS described (``doctor_checks``); the calls sit at the edges (``doctor_accounts``
and here), and a call that fails is a problem row naming it, never a traceback.
"""

from __future__ import annotations

import ipaddress
import tarfile
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from fl_runtime.aws.calls import aws_call, boto_config
from fl_runtime.aws.contract import (
    ClientAccountSettings,
    ClientEntry,
    ServerAccountSettings,
    client_parameter,
    server_parameter,
)
from fl_runtime.aws.doctor_accounts import (
    AwsSide,
    RehearsalSide,
    RoleRefused,
    ServerSide,
    described,
    found,
    s3_location,
    server_test_set_key,
)
from fl_runtime.aws.doctor_checks import (
    APP_HASH,
    CLIENT_SETTINGS,
    KICKOFF,
    LAUNCHER,
    NETWORK,
    PEERING,
    SERVER_SETTINGS,
    STAGED_DATA,
    TEST_SET,
    Check,
    app_hash_check,
    flower_port_check,
    launcher_checks,
    passed,
    peering_check,
    problem,
    route_check,
    routed_peerings,
    server_test_set_check,
    show,
    staged_data_check,
)
from fl_runtime.aws.doctor_members import member_checks
from fl_runtime.aws.doctor_privatelink import client_checks as fleet_client_checks
from fl_runtime.aws.doctor_privatelink import client_fleet_checks, server_fleet_checks
from fl_runtime.aws.fleet_service import PRIVATELINK, job_address, private_address
from fl_runtime.aws.stage_data import TRAIN, VALIDATION
from fl_runtime.errors import EXIT_FAILED, ConfigError, FederationError, OptionsError
from fl_runtime.launch.fab import app_content_hash, tree_content_hash
from fl_runtime.launch.pki import create_tls

RUN = "doctor"  # the run name of the dry runs: the job a start would create is fl-client-doctor-<client>
EC2_FIX = (
    "the stacks give every VPC an EC2 endpoint and the notebook roles ec2:DescribeVpcPeeringConnections, "
    "DescribeRouteTables and DescribeSecurityGroups: redeploy this account's stack if they are missing"
)


def run(console: Console, parameter_prefix: str, *, client: str | None, rehearsal: Path | None) -> int:
    """The checks of one side and their table; 0 when every check passes, 1 when one does not (a script gates on it)."""
    if rehearsal is not None and client is not None:
        raise OptionsError("--rehearsal goes with --server: a rehearsal has no client notebook")
    checks = client_checks(client, parameter_prefix) if client else server_checks(parameter_prefix, rehearsal)
    show(checks, console, f"doctor: client {client}" if client else "doctor: the server")
    return 0 if all(check.ok for check in checks) else EXIT_FAILED


# -- the server side ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerNetwork:
    """What the server account's EC2 describes of the federation's network."""

    peerings: list[dict]
    route_tables: list[dict]
    security_groups: list[dict]


@dataclass(frozen=True)
class ServerView:
    """What each client's checks share: the server's account, the dry run to send, the app federate submits by
    default, and the server's network (None when EC2 could not be asked)."""

    server: ServerSide
    dry_run: dict
    server_app: str
    network: ServerNetwork | None
    fleet_connections: list[dict] | None = None  # through PrivateLink: the endpoints connected to the service

    @property
    def settings(self) -> ServerAccountSettings:
        return self.server.settings


def server_checks(parameter_prefix: str, rehearsal: Path | None = None, session: Any = None) -> list[Check]:
    """Every server-side check; a check an earlier failure makes impossible (no session, no settings) is left out."""
    parameter = server_parameter(parameter_prefix)
    try:
        server: ServerSide = RehearsalSide(rehearsal) if rehearsal else AwsSide(parameter_prefix, session)
    except (FederationError, ConfigError) as error:
        fix = f"deploy ServerStack of this version (it publishes {parameter}), or pass its --parameter-prefix"
        return [
            problem(SERVER_SETTINGS, "", str(error), f"fix the server's settings in {rehearsal}" if rehearsal else fix)
        ]
    settings = server.settings
    summary = f"{rehearsal or parameter}: {len(settings.clients)} clients, Flower port {settings.flower_port}"
    connections = None
    if settings.network == PRIVATELINK:
        summary += f", PrivateLink to {settings.superlink_dns_name}"
        network = None
        network_problems, connections = server_fleet_checks(server.ec2(), server.elbv2(), settings, _here(settings))
    else:
        network, network_problems = _server_network(server)
    checks = [passed(SERVER_SETTINGS, "", summary), _test_set(server), *network_problems]
    with tempfile.TemporaryDirectory(prefix="fl-doctor-") as folder:
        request = dry_run_request(settings, Path(folder))
        view = ServerView(server, request, app_content_hash(), network, connections)
        for entry in settings.clients:
            checks += _client_from_server(view, entry)
    return checks


def dry_run_request(settings: ServerAccountSettings, folder: Path) -> dict:
    """A start's fields, as federate sends them: an address in the server VPC and the Flower port (none through
    PrivateLink), a throwaway CA."""
    address = str(next(ipaddress.ip_network(settings.server_vpc_cidr, strict=False).hosts()))
    ca = create_tls(folder / "tls", [address]).ca_certificate.read_text()
    request = {"action": "dry-run", "run": RUN, "ca_certificate": ca}
    superlink = job_address(settings, address, settings.flower_port)
    return request if superlink is None else {**request, "superlink": superlink}


def _here(settings: ServerAccountSettings) -> str | None:
    """This notebook's address in the server VPC (None elsewhere): what the Fleet load balancer should target."""
    try:
        return private_address(settings)
    except (FederationError, OSError):
        return None


def _test_set(server: ServerSide) -> Check:
    settings = server.settings
    location = f"s3://{settings.results_bucket}/{server_test_set_key(settings)}"
    try:
        return server_test_set_check(location, server.has_test_set())
    except FederationError as error:
        return problem(TEST_SET, "", str(error), "check the notebook role's s3:GetObject on the results bucket")


def _server_network(server: ServerSide) -> tuple[ServerNetwork | None, list[Check]]:
    """The peerings, route tables and notebook group the checks read; or None and the problem, if EC2 refused."""
    settings, ec2 = server.settings, server.ec2()
    try:
        network = ServerNetwork(
            described(ec2, "describe_vpc_peering_connections", [c.peering_connection_id for c in settings.clients]),
            described(ec2, "describe_route_tables", settings.route_table_ids),
            described(ec2, "describe_security_groups", [settings.notebook_security_group_id]),
        )
    except FederationError as error:
        return None, [problem(NETWORK, "", str(error), EC2_FIX)]
    return network, []


def _client_from_server(view: ServerView, entry: ClientEntry) -> list[Check]:
    """One client, seen from the server: its kickoff role, settings and launcher, then the network toward it."""
    checks, client = _reach_checks(view, entry)
    if view.fleet_connections is not None:
        return checks + fleet_client_checks(view.settings, entry, view.fleet_connections, client)
    if view.network is None:
        return checks
    jobs_group = client.launch.training_security_group_id if client else entry.training_security_group_id
    return checks + _network_checks(view.settings, view.network, entry, jobs_group)


def _reach_checks(view: ServerView, entry: ClientEntry) -> tuple[list[Check], ClientAccountSettings | None]:
    """The kickoff role, the client's settings through it, and its launcher's answer to a dry run."""
    name, assumed = entry.name, passed(KICKOFF, entry.name, view.server.kickoff_detail(entry))
    try:
        client, launcher = view.server.reach(entry)
    except RoleRefused as error:
        fix = (
            f"make client {name}'s external id in the federation config the one its stack trusts (and its role "
            "trust this notebook's role); redeploy ServerStack"
        )
        return [problem(KICKOFF, name, str(error), fix)], None
    except (FederationError, ConfigError) as error:
        fix = f"deploy client {name}'s stack of this version, or fix its settings_parameter in the federation config"
        return [assumed, problem(CLIENT_SETTINGS, name, str(error), fix)], None
    checks = [assumed, passed(CLIENT_SETTINGS, name, entry.settings_parameter)]
    fix = (
        f"redeploy client {name}'s stack: its launcher must answer dry-run and accept a SuperLink in "
        f"{view.settings.server_vpc_cidr} on port {view.settings.flower_port}"
    )
    try:
        answer = launcher.call(view.dry_run)
    except FederationError as error:
        return [*checks, problem(LAUNCHER, name, str(error), fix)], client
    return checks + launcher_checks(name, answer, view.server_app, fix), client


def _network_checks(
    settings: ServerAccountSettings, network: ServerNetwork, entry: ClientEntry, jobs_group: str
) -> list[Check]:
    """The peering with the client, the routes to its CIDR, and the Flower port from its jobs' group."""
    name, peering = entry.name, entry.peering_connection_id
    unknown = f"redeploy ServerStack with the id of the peering connection client {name} accepted"
    route_fix = (
        "redeploy ServerStack (it routes each client's CIDR through its peering), or: aws ec2 create-route "
        f"--route-table-id <table> --destination-cidr-block {entry.vpc_cidr} --vpc-peering-connection-id {peering}"
    )
    notebook_group, port = settings.notebook_security_group_id, settings.flower_port
    return [
        peering_check(name, peering, network.peerings, unknown),
        route_check(name, settings.route_table_ids, network.route_tables, entry.vpc_cidr, peering, route_fix),
        flower_port_check(entry, jobs_group, network.security_groups, notebook_group, port),
    ]


# -- the client side ----------------------------------------------------------------------------------


def client_checks(client: str, parameter_prefix: str, session: Any = None) -> list[Check]:
    """Every client-side check, in this client's own account (the notebook's role)."""
    import boto3

    session = session or boto3.Session()
    parameter = client_parameter(parameter_prefix, client)
    try:
        with aws_call(client, f"reading {parameter}"):
            raw = session.client("ssm", config=boto_config()).get_parameter(Name=parameter)["Parameter"]["Value"]
        settings = ClientAccountSettings.from_json(raw, f"client {client}'s settings {parameter}")
    except (FederationError, ConfigError) as error:
        fix = (
            f"deploy client {client}'s stack of this version (it publishes {parameter}), or pass its --parameter-prefix"
        )
        return [problem(CLIENT_SETTINGS, client, str(error), fix)]
    checks = [passed(CLIENT_SETTINGS, client, f"{parameter}: account {settings.account}, VPC {settings.vpc_id}")]
    checks += _client_network(session.client("ec2", region_name=settings.launch.region, config=boto_config()), settings)
    s3 = session.client("s3", config=boto_config())
    with tempfile.TemporaryDirectory(prefix="fl-doctor-") as folder:
        checks.append(_staged_data(s3, settings, Path(folder)))
        checks.append(_bundle_app(s3, settings, Path(folder)))
    return checks + member_checks(session, settings)


def _client_network(ec2: Any, settings: ClientAccountSettings) -> list[Check]:
    """Routes toward the server in every client route table, and the peering connections they use."""
    name, server_cidr = settings.client, settings.launch.server_vpc_cidr
    if settings.launch.superlink_dns_name:  # PrivateLink: no route, no peering; its endpoint and private name
        return client_fleet_checks(ec2, settings)
    try:
        tables = described(ec2, "describe_route_tables", settings.route_table_ids, name)
        peering_ids = routed_peerings(tables, server_cidr)
        peerings = described(ec2, "describe_vpc_peering_connections", peering_ids, name)
    except FederationError as error:
        return [problem(NETWORK, name, str(error), EC2_FIX)]
    route_fix = f"redeploy client {name}'s stack with the server's peering connection (it routes {server_cidr} to it)"
    unknown = f"redeploy client {name}'s stack with the id of the server's current peering connection"
    checks = [route_check(name, settings.route_table_ids, tables, server_cidr, None, route_fix)]
    checks += [peering_check(name, peering_id, peerings, unknown) for peering_id in peering_ids]
    if not peering_ids:
        checks.append(problem(PEERING, name, f"no route to {server_cidr} names a peering connection", route_fix))
    return checks


def _staged_data(s3: Any, settings: ClientAccountSettings, folder: Path) -> Check:
    name = settings.client
    fix = f"stage it: python -m fl_runtime stage-data --client {name} --data <this client's CSV> --overwrite"
    files = {f"s3://{settings.data_bucket}/{settings.data_prefix}{part}": folder / part for part in (TRAIN, VALIDATION)}
    try:
        missing = [
            uri
            for uri, path in files.items()
            if not found(name, f"downloading {uri}", partial(s3.download_file, *s3_location(uri), str(path)))
        ]
    except FederationError as error:
        return problem(STAGED_DATA, name, str(error), f"check the notebook role's s3:GetObject; {fix}")
    if missing:
        return problem(STAGED_DATA, name, f"nothing staged at {', '.join(missing)}", fix)
    return staged_data_check(name, files, f"fix the CSV, then {fix}")


def _bundle_app(s3: Any, settings: ClientAccountSettings, folder: Path) -> Check:
    """The app the code bundle carries, hashed as ``launch.fab`` hashes the app this runtime ships."""
    name, uri = settings.client, settings.launch.source_uri
    redeploy = "redeploy the client stack (it uploads the bundle and approves its app)"
    try:
        with aws_call(name, f"downloading the code bundle {uri}"):
            bucket, key = s3_location(uri)
            unpack_runtime(s3.get_object(Bucket=bucket, Key=key)["Body"], folder / "bundle")
        bundle_app = tree_content_hash(folder / "bundle" / "fl_runtime")
    except FederationError as error:
        return problem(APP_HASH, name, str(error), redeploy)
    except (tarfile.TarError, EOFError, OSError, ValueError) as error:
        return problem(APP_HASH, name, f"the code bundle {uri} holds no readable Flower app ({error})", redeploy)
    return app_hash_check(name, bundle_app, settings.launch.approved_app_hashes)


def unpack_runtime(stream: IO[bytes], destination: Path) -> None:
    """The bundle's ``fl_runtime/`` files, straight from the download: its wheels are never written."""
    with tarfile.open(fileobj=stream, mode="r|gz") as archive:
        for member in archive:
            if member.isfile() and member.name.startswith("fl_runtime/"):
                archive.extract(member, destination, filter="data")
