#!/usr/bin/env python3
"""The CDK app: ServerStack plus one client stack per client account (`npx cdk synth|deploy|destroy`).

One client: stacks `ServerStack` and `ClientStack`. Several: `ServerStack` and `ClientStack-<name>`.
Client stacks deploy first (ServerStack depends on them). cdk-nag (AwsSolutions, HIPAA Security)
checks every synth.
"""

import sys

import aws_cdk as cdk

from fl_runtime.errors import BundleError, ConfigError
from stacks.bundle.builder import build, bundle_targets
from stacks.client_stack import ClientStack
from stacks.compliance import add_checks
from stacks.config import FederationConfig, from_context
from stacks.server_stack import ServerStack


def client_stack_name(config: FederationConfig, name: str) -> str:
    return "ClientStack" if len(config.clients) == 1 else f"ClientStack-{name}"


def build_app(app: cdk.App) -> tuple[ServerStack, list[ClientStack]]:
    config = from_context(app.node)
    bundle = build(bundle_targets(config.training_image))
    clients = [
        ClientStack(app, client_stack_name(config, c.name), config=config, client=c, bundle=bundle)
        for c in config.clients
    ]
    server = ServerStack(app, "ServerStack", config=config, bundle=bundle)
    for client in clients:
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
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
