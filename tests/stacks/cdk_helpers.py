"""Synthesizing the CDK app in process, the way `cdk synth` does, for assertions tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
from aws_cdk.assertions import Template

from tests.helpers import PROJECT

SERVER_ACCOUNT, CLIENT_ACCOUNT = "111111111111", "222222222222"  # cdk.json's placeholders
HOSPITAL_C_FINGERPRINT = "sha256:" + "c0ffee" * 10 + "c0ff"
ONE_CLIENT = [
    {
        "name": "client-a",
        "account": "222222222222",
        "vpc_cidr": "10.1.0.0/16",
        "external_id": "fl-a-5e1d",
        "min_members": 1,
    }
]
THREE_CLIENTS = [
    {"name": "insurer-a", "account": "222222222222", "vpc_cidr": "10.1.0.0/16", "external_id": "fl-insurer-a-7f3c"},
    {"name": "insurer-b", "account": "333333333333", "vpc_cidr": "10.2.0.0/16", "external_id": "fl-insurer-b-91d2"},
    {
        "name": "hospital-c",
        "account": "444444444444",
        "vpc_cidr": "10.3.0.0/16",
        "external_id": "fl-hospital-c-0b8e",
        "identity_fingerprint": HOSPITAL_C_FINGERPRINT,  # agreed out of band; the others' are not (yet)
    },
]


def generated_members(count: int) -> list[dict]:
    """``count`` members, each its own account and VPC, fingerprints unset (one organisation resolves them: the
    largest pins and training policies); past 255 members the VPC blocks repeat (through PrivateLink they may)."""
    return [
        {"name": f"member-{i:03d}", "account": f"{200000000000 + i}", "vpc_cidr": f"10.{i % 256}.0.0/16",
         "external_id": f"fl-member-{i:03d}-external", "min_members": min(3, count)}
        for i in range(1, count + 1)
    ]  # fmt: skip


def default_context() -> dict:
    return json.loads((PROJECT / "cdk.json").read_text())["context"]


@dataclass
class Synthesized:
    outdir: Path
    server: Template | None  # None when a client party synthesizes its own stack only (separate organisations)
    clients: dict[str, Template]
    client_stacks: dict[str, cdk.Stack]
    server_stack: cdk.Stack
    assembly: object

    def report(self) -> dict:
        return json.loads((self.outdir / "validation-report.json").read_text())

    def reports(self) -> list[dict]:
        return [self.report()]

    def accounts(self) -> list[tuple[Template, str]]:
        """Each template with its stack's account."""
        stacks = ([(self.server, self.server_stack)] if self.server else []) + [
            (self.clients[name], stack) for name, stack in self.client_stacks.items()
        ]
        return [(template, stack.account) for template, stack in stacks]


@dataclass
class Parties:
    """Separate organisations: the server party's synth and a client party's, seen together."""

    server_synth: Synthesized
    client_synth: Synthesized

    @property
    def server(self) -> Template:
        assert self.server_synth.server is not None
        return self.server_synth.server

    @property
    def clients(self) -> dict[str, Template]:
        return self.client_synth.clients

    def reports(self) -> list[dict]:
        return [self.server_synth.report(), self.client_synth.report()]

    def accounts(self) -> list[tuple[Template, str]]:
        return self.server_synth.accounts() + self.client_synth.accounts()


def separate_parties(folder: Path, clients: list[dict], accepted: bool) -> Parties:
    """The server's synth from every client's handover (``accepted``: after they accepted its peering), and the
    first client's own synth (with the server's peering id once accepted)."""
    handovers = write_handovers(folder / "handover", clients, accepted)
    server = synthesize(
        folder / "server", {"party": "server", "handover": str(handovers)}, deployment_mode=SEPARATE, clients=clients
    )
    first = dict(clients[0], peering_connection_id=handover_document(clients[0], 1, accepted)["peering_connection_id"])
    client = synthesize(
        folder / "client", {"party": clients[0]["name"]}, deployment_mode=SEPARATE, clients=[first, *clients[1:]]
    )
    return Parties(server, client)


# CDK's `--no-staging`: the assembly points at the bundle where it lies instead of copying it (about 370 MB and a
# second a synth); the templates are the same. The default deployment and the bundle fixture stage it, as synth does.
NO_STAGING = {"aws:cdk:disable-asset-staging": True}


def app_context(invocation: dict | None = None, stage_assets: bool = False, **overrides) -> dict:
    """cdk.json's context plus ``federation:<field>`` overrides and ``invocation`` context (``party``,
    ``handover``); the bundle unstaged unless ``stage_assets``."""
    context = default_context()
    context.update({f"federation:{key}": value for key, value in overrides.items()})
    context.update(invocation or {})
    context.update({} if stage_assets else NO_STAGING)
    return context


def synthesize(outdir: Path, invocation: dict | None = None, stage_assets: bool = False, **overrides) -> Synthesized:
    """The app of app.py with ``app_context``."""
    from app import build_app

    app = cdk.App(context=app_context(invocation, stage_assets, **overrides), outdir=str(outdir))
    server, clients = build_app(app)
    assembly = app.synth()
    names = [c.node.id for c in clients]
    return Synthesized(
        outdir,
        Template.from_stack(server) if server else None,
        {name: Template.from_stack(stack) for name, stack in zip(names, clients)},
        dict(zip(names, clients)),
        server,
        assembly,
    )


def resources(template: Template, kind: str) -> dict[str, dict]:
    return template.find_resources(kind)


def statements(template: Template) -> list[dict]:
    """Every IAM policy statement of a template (inline and managed policies)."""
    found = []
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for resource in template.find_resources(kind).values():
            found.extend(resource["Properties"]["PolicyDocument"]["Statement"])
    return found


def all_templates(synthesized: Synthesized | Parties) -> list[Template]:
    return [t for t in (synthesized.server, *synthesized.clients.values()) if t is not None]


SEPARATE = "separate-organisations"
# the session fixtures of conftest.py: both deployment modes, one client and three
DEPLOYMENTS = ["default", "three", "separate_one", "separate_three", "privatelink_three", "privatelink_separate"]
SERVICE_NAME = "com.amazonaws.vpce.us-east-1.vpce-svc-0123456789abcdef0"  # what ServerStack's deploy outputs
# the members reach the server through PrivateLink, once its service exists; their blocks overlap the server's
PRIVATELINK = {
    "network": "privatelink",
    "availability_zone_ids": ["use1-az4", "use1-az6"],
    "fleet_endpoint_service": SERVICE_NAME,
}
# the server's own block for every member; the first names the federation's zones in its own account
OVERLAPPING_CLIENTS = [dict(client, vpc_cidr="10.0.0.0/16") for client in THREE_CLIENTS]
OVERLAPPING_CLIENTS[0]["availability_zones"] = ["us-east-1d", "us-east-1f"]


def privatelink_parties(folder: Path, clients: list[dict]) -> Parties:
    """Separate organisations through PrivateLink: the server party deploys first, from the config alone (no
    handover files), then the first client's party with the server's service name."""
    separate = {"deployment_mode": SEPARATE, "clients": clients, **PRIVATELINK}
    server = synthesize(folder / "server", {"party": "server", "handover": str(folder / "none")}, **separate)
    client = synthesize(folder / "client", {"party": clients[0]["name"]}, **separate)
    return Parties(server, client)


def handover_document(spec: dict, index: int, accepted: bool) -> dict:
    """A client's handover file as its deploy writes it (ids of a deployed stack), accepted or not yet."""
    account, name = spec["account"], spec["name"]
    return {
        "client": name,
        "account": account,
        "region": "us-east-1",
        "vpc_id": f"vpc-0{index}{'a' * 15}",
        "vpc_cidr": spec["vpc_cidr"],
        "route_table_ids": [f"rtb-0{index}{'b' * 15}", f"rtb-0{index}{'c' * 15}"],
        "training_security_group_id": f"sg-0{index}{'d' * 15}",
        "kickoff_role_arn": f"arn:aws:iam::{account}:role/FL-kickoff-client-job",
        "launcher_arn": f"arn:aws:lambda:us-east-1:{account}:function:FL-job-launcher",
        "approved_app_hashes": ["ab" * 32],
        "peering_connection_id": f"pcx-0{index}{'e' * 15}" if accepted else "",
        "identity_key_arn": f"arn:aws:kms:us-east-1:{account}:key/0000000{index}-0000-0000-0000-000000000000",
    }


def write_handovers(folder: Path, clients: list[dict], accepted: bool) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, spec in enumerate(clients, start=1):
        (folder / f"{spec['name']}.json").write_text(json.dumps(handover_document(spec, index, accepted)))
    return folder
