"""The doctor's checks (``doctor``), as pure functions of what AWS described (boto3's answers as dicts), and
their table.

Each returns a ``Check``: ok with what was seen, or the problem with its fix. No AWS call here, so each
check is tested on data; ``doctor`` makes the calls and hands their answers in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fl_runtime.aws.contract import ClientEntry
from fl_runtime.errors import DataError
from fl_runtime.learning.data import check_split, read_csv

SERVER_SETTINGS, TEST_SET, NETWORK = "server settings", "test set", "network"
KICKOFF, CLIENT_SETTINGS, LAUNCHER, APP_APPROVED = "kickoff role", "client settings", "launcher dry-run", "app approved"
PEERING, ROUTES, FLOWER_PORT = "peering", "routes", "flower port"
STAGED_DATA, APP_HASH = "staged data", "app hash"
PINS, IDENTITY_KEY, MEMBERS = "pins", "identity key", "members"


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table: what was checked, for which client ("" for the server's own), the fix."""

    name: str
    client: str
    ok: bool
    detail: str
    fix: str = ""
    share: str = ""  # a line the operator passes on to the other parties (printed below the table)


def passed(name: str, client: str, detail: str) -> Check:
    return Check(name, client, True, detail)


def problem(name: str, client: str, detail: str, fix: str) -> Check:
    return Check(name, client, False, detail, fix)


def peering_check(client: str, peering_id: str, peerings: list[dict], unknown_fix: str) -> Check:
    """``peering_id`` is active among ``peerings`` (DescribeVpcPeeringConnections' VpcPeeringConnections)."""
    status = next((p["Status"]["Code"] for p in peerings if p["VpcPeeringConnectionId"] == peering_id), None)
    if status == "active":
        return passed(PEERING, client, f"{peering_id} is active")
    if status is None:
        return problem(PEERING, client, f"{peering_id or 'no id'}: no such peering connection here", unknown_fix)
    accept = (
        f"accept it in client {client}'s account: aws ec2 accept-vpc-peering-connection --vpc-peering-connection-id"
    )
    fix = f"{accept} {peering_id}" if status == "pending-acceptance" else unknown_fix
    return problem(PEERING, client, f"{peering_id} is {status}, not active", fix)


def _peering_route(table: dict, destination: str, peering_id: str | None) -> bool:
    """The table sends ``destination`` through a live VPC peering connection (``peering_id``'s, if given)."""
    return any(
        route.get("DestinationCidrBlock") == destination
        and route.get("VpcPeeringConnectionId", "") != ""
        and peering_id in (None, route["VpcPeeringConnectionId"])
        and route.get("State") != "blackhole"  # its peering connection is gone
        for route in table.get("Routes", [])
    )


def route_check(
    client: str, table_ids: tuple[str, ...], tables: list[dict], destination: str, peering_id: str | None, fix: str
) -> Check:
    """Each table of ``table_ids`` (among ``tables``, DescribeRouteTables' RouteTables) routes ``destination``
    through ``peering_id``, or through some peering connection when it is None (a client knows no id)."""
    described = {table["RouteTableId"]: table for table in tables}
    through = f"{destination} through {peering_id or 'a VPC peering connection'}"
    missing = [
        f"route table {table_id} does not exist"
        if table_id not in described
        else f"{table_id} has no route to {through}"
        for table_id in table_ids
        if table_id not in described or not _peering_route(described[table_id], destination, peering_id)
    ]
    if not table_ids:
        missing = ["no route tables are published"]
    if missing:
        return problem(ROUTES, client, "; ".join(missing), fix)
    return passed(ROUTES, client, f"{', '.join(table_ids)} route {through}")


def routed_peerings(tables: list[dict], destination: str) -> list[str]:
    """The peering connections ``tables`` route ``destination`` through."""
    return sorted(
        {
            route["VpcPeeringConnectionId"]
            for table in tables
            for route in table.get("Routes", [])
            if route.get("DestinationCidrBlock") == destination and route.get("VpcPeeringConnectionId")
        }
    )


def _admits(permission: dict, port: int, group_id: str) -> bool:
    """An ingress rule (one of IpPermissions) that lets ``group_id`` reach tcp ``port``."""
    protocol = str(permission.get("IpProtocol"))
    covers = protocol == "-1" or (
        protocol in ("tcp", "6") and permission.get("FromPort", 0) <= port <= permission.get("ToPort", -1)
    )
    return covers and any(pair.get("GroupId") == group_id for pair in permission.get("UserIdGroupPairs", []))


def flower_port_check(entry: ClientEntry, jobs_group: str, groups: list[dict], notebook_group: str, port: int) -> Check:
    """The notebook's group (among ``groups``, DescribeSecurityGroups' SecurityGroups) admits tcp ``port`` from
    ``jobs_group``, the group the client publishes for its jobs, which the federation config must name too."""
    name, admitted = entry.name, entry.training_security_group_id
    if jobs_group != admitted:
        return problem(
            FLOWER_PORT,
            name,
            f"the server admits {admitted} but client {name}'s jobs run in {jobs_group}",
            f"redeploy ServerStack with {jobs_group} as client {name}'s training security group",
        )
    redeploy = "redeploy ServerStack (its notebook group admits the Flower port from each client's training group)"
    group = next((g for g in groups if g["GroupId"] == notebook_group), None)
    if group is None:
        return problem(FLOWER_PORT, name, f"the notebook's security group {notebook_group} does not exist", redeploy)
    if not any(_admits(permission, port, jobs_group) for permission in group.get("IpPermissions", [])):
        return problem(FLOWER_PORT, name, f"{notebook_group} admits no tcp {port} from {jobs_group}", redeploy)
    return passed(FLOWER_PORT, name, f"{notebook_group} admits tcp {port} from {jobs_group}")


def launcher_checks(client: str, answer: dict, server_app: str, fix: str) -> list[Check]:
    """The launcher's answer to the dry run: accepted, and approving ``server_app``, the app federate submits."""
    approved = answer.get("approved_app_hashes")
    if "error" in answer or not isinstance(approved, list):
        return [
            problem(LAUNCHER, client, str(answer.get("error", f"an answer without approved hashes: {answer}")), fix)
        ]
    checks = [passed(LAUNCHER, client, f"accepted; a start would create {answer.get('job')}")]
    if server_app in approved:
        return [*checks, passed(APP_APPROVED, client, f"the app this server submits, {server_app}, is approved")]
    detail = f"the app this server submits, {server_app}, is not approved by client {client} (approved: "
    fix = f"run the runtime client {client} approved here, or have client {client} approve {server_app} and redeploy"
    return [*checks, problem(APP_APPROVED, client, f"{detail}{', '.join(approved) or 'none'})", fix)]


def server_test_set_check(location: str, present: bool) -> Check:
    if present:
        return passed(TEST_SET, "", f"{location} exists")
    fix = "stage it: python -m fl_runtime stage-data --server --data test.csv"
    return problem(TEST_SET, "", f"no test set at {location}", fix)


def staged_data_check(client: str, files: Mapping[str, Path], fix: str) -> Check:
    """The staged parts (S3 URI -> downloaded copy; train, then validation) pass the training job's own checks."""
    try:
        train, validation = (read_csv(path) for path in files.values())
        check_split(train, validation)
    except DataError as error:
        message = str(error)
        for uri, path in files.items():
            message = message.replace(str(path), uri)
        return problem(STAGED_DATA, client, message, fix)
    rows, fraudulent = train.n_rows + validation.n_rows, train.n_positive + validation.n_positive
    return passed(STAGED_DATA, client, f"{', '.join(files)}: {rows} rows, {fraudulent} fraudulent")


def app_hash_check(client: str, bundle_app: str, approved: tuple[str, ...]) -> Check:
    if bundle_app in approved:
        return passed(APP_HASH, client, f"the code bundle's app {bundle_app} is approved by this account")
    detail = f"the code bundle's app {bundle_app} is not approved by this account (approved: {', '.join(approved)})"
    return problem(APP_HASH, client, detail, "redeploy the client stack (it uploads the bundle and approves its app)")


def show(checks: list[Check], console: Console, title: str) -> None:
    """The table, then one line: how many checks passed."""
    table = Table(title=title, title_justify="left")
    for column in ("check", "client", "status", "detail", "fix"):
        table.add_column(column)
    for check in checks:
        cells = (check.name, check.client or "-", "ok" if check.ok else "problem", check.detail, check.fix)
        table.add_row(*(Text(cell) for cell in cells), style=None if check.ok else "red")
    console.print(table)
    problems = sum(not check.ok for check in checks)
    to_fix = f", {problems} to fix" if problems else ""
    console.print(f"{len(checks) - problems} of {len(checks)} checks ok{to_fix}", highlight=False)
    for check in checks:
        if check.share:
            console.print(check.share, highlight=False, soft_wrap=True)
