"""Synthesizing the CDK app in process, the way `cdk synth` does, for assertions tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
from aws_cdk.assertions import Template

from tests.helpers import PROJECT

SERVER_ACCOUNT, CLIENT_ACCOUNT = "111111111111", "222222222222"  # cdk.json's placeholders
THREE_CLIENTS = [
    {"name": "insurer-a", "account": "222222222222", "vpc_cidr": "10.1.0.0/16", "external_id": "fl-insurer-a-7f3c"},
    {"name": "insurer-b", "account": "333333333333", "vpc_cidr": "10.2.0.0/16", "external_id": "fl-insurer-b-91d2"},
    {"name": "hospital-c", "account": "444444444444", "vpc_cidr": "10.3.0.0/16", "external_id": "fl-hospital-c-0b8e"},
]


def default_context() -> dict:
    return json.loads((PROJECT / "cdk.json").read_text())["context"]


def configured_bundle():
    """The bundle `cdk synth` builds with cdk.json's defaults (cached after the first build)."""
    from stacks.bundle.builder import build, bundle_targets
    from stacks.config import from_cdk_json

    return build(bundle_targets(from_cdk_json(PROJECT / "cdk.json").training_image))


@dataclass
class Synthesized:
    outdir: Path
    server: Template
    clients: dict[str, Template]
    client_stacks: dict[str, cdk.Stack]
    server_stack: cdk.Stack
    assembly: object

    def report(self) -> dict:
        return json.loads((self.outdir / "validation-report.json").read_text())


def synthesize(outdir: Path, **overrides) -> Synthesized:
    """The app of app.py with cdk.json's context plus ``federation:<field>`` overrides."""
    from app import build_app

    context = default_context()
    context.update({f"federation:{key}": value for key, value in overrides.items()})
    app = cdk.App(context=context, outdir=str(outdir))
    server, clients = build_app(app)
    assembly = app.synth()
    names = [c.node.id for c in clients]
    return Synthesized(
        outdir,
        Template.from_stack(server),
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


def all_templates(synthesized: Synthesized) -> list[Template]:
    return [synthesized.server, *synthesized.clients.values()]
