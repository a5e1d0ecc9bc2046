#!/usr/bin/env python3
"""The CDK app: ServerStack plus one client stack per client account (`npx cdk synth|deploy|destroy`).

One client: stacks `ServerStack` and `ClientStack`. Several: `ServerStack` and `ClientStack-<name>`.
One organisation (``federation:deployment_mode``): every stack; with ``network`` peering the client stacks first
(ServerStack peers with them), with privatelink ServerStack first (the clients connect to its endpoint service).
Separate organisations: only the stack of the party that deploys (``-c party=server`` or
``-c party=<client name>``); the server's is built from the clients' handover files (``-c handover=<folder>``,
default ``handover``). cdk-nag (AwsSolutions, HIPAA Security, NIST 800-53 rev. 5) checks every synth, and
``stacks.limits`` the AWS limits a deploy would meet (resources per stack, policy and parameter sizes).
"""

import sys
from pathlib import Path

import aws_cdk as cdk

from fl_runtime.errors import BundleError, ConfigError
from stacks.bundle.builder import build, bundle_targets
from stacks.client_stack import ClientStack
from stacks.compliance import add_checks
from stacks.config import FederationConfig, from_context
from stacks.handover import read_handovers
from stacks.limits import check as check_limits
from stacks.server_stack import ServerStack


def client_stack_name(config: FederationConfig, name: str) -> str:
    return "ClientStack" if len(config.clients) == 1 else f"ClientStack-{name}"


def party(app: cdk.App, config: FederationConfig) -> str | None:
    """Whose stack this synth is for: everyone's in one organisation, one party's in separate organisations."""
    if not config.separate_organisations:
        return None
    chosen = app.node.try_get_context("party")
    names = [c.name for c in config.clients]
    if chosen != "server" and chosen not in names:
        raise ConfigError(
            f"party: {chosen!r}: separate organisations deploy one party's stack; pass -c party=server or "
            f"-c party=<client>, one of {', '.join(names)}"
        )
    return chosen


def build_app(app: cdk.App) -> tuple[ServerStack | None, list[ClientStack]]:
    config = from_context(app.node)
    deploying = party(app, config)
    bundle = build(bundle_targets(config.training_image))
    clients = [
        ClientStack(app, client_stack_name(config, c.name), config=config, client=c, bundle=bundle)
        for c in config.clients
        if deploying in (None, c.name)
    ]
    server = None
    if deploying in (None, "server"):
        handovers = None
        if deploying == "server" and not config.privatelink:
            handovers = read_handovers(config, Path(app.node.try_get_context("handover") or "handover"))
        server = ServerStack(app, "ServerStack", config=config, bundle=bundle, handovers=handovers)
        for client in clients:  # peering: the server peers with the clients; privatelink: they connect to it
            if config.privatelink:
                client.add_stack_dependency(server)
            else:
                server.add_stack_dependency(client)
    add_checks(app)
    return server, clients


def main() -> int:
    app = cdk.App()
    try:
        build_app(app)
    except ConfigError as error:
        print(f"Invalid federation config: {error}", file=sys.stderr)
        return 1
    except BundleError as error:
        print(f"Cannot build the code bundle: {error}", file=sys.stderr)
        return 1
    try:
        check_limits(app.synth())
    except ConfigError as error:
        print(f"Invalid federation config: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
