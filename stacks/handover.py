"""Handover files between the parties (separate organisations): what a client's deploy tells the server's.

A client party deploys its own stack with its own credentials and writes its handover file from the deploy's
outputs; the server party deploys ServerStack from the handover files of every client, one file per client
(``<folder>/<client>.json``). A file holds public identifiers only (``ClientHandover``), and the server's
stack refuses one that does not match the federation config it was agreed with (client, account, region, CIDR,
the kickoff role and launcher names, an identity key of that account).

    npx cdk deploy ClientStack-insurer-a -c party=insurer-a --outputs-file outputs.json
    python -m stacks.handover outputs.json handover/     # writes handover/insurer-a.json; send it to the server
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fl_runtime.aws.contract import ClientHandover
from fl_runtime.errors import ConfigError
from fl_runtime.files import atomic_path
from stacks.config import ClientAccount, FederationConfig

OUTPUT = "Handover"  # the client stack's output holding the document
OUTPUT_DESCRIPTION = "The client handover document (separate organisations): python -m stacks.handover writes it"


def check(handover: ClientHandover, config: FederationConfig, client: ClientAccount, where: str) -> ClientHandover:
    """The handover, if it is from ``client`` as the federation config knows it; ConfigError naming the field."""
    expected = {
        "client": client.name,
        "account": client.account,
        "region": config.region,
        "vpc_cidr": client.vpc_cidr,
        # the names the server's endpoint policies and kickoff grant are written for
        "kickoff_role_arn": client.kickoff_role_arn,
        "launcher_arn": client.launcher_arn(config.region),
    }
    for field, value in expected.items():
        if getattr(handover, field) != value:
            raise ConfigError(
                f"{where}: field '{field}' is {getattr(handover, field)!r}, but the federation config says {value!r}"
            )
    key = f"arn:{client.arn_partition}:kms:{config.region}:{client.account}:key/"
    if not handover.identity_key_arn.startswith(key):
        raise ConfigError(
            f"{where}: field 'identity_key_arn' is {handover.identity_key_arn!r}, not a KMS key of client "
            f"{client.name}'s account in {config.region} ({key}...)"
        )
    return handover


def read_handovers(config: FederationConfig, folder: Path) -> dict[str, ClientHandover]:
    """Every client's handover file from ``folder``, checked against the config."""
    handovers = {}
    for client in config.clients:
        path = folder / f"{client.name}.json"
        try:
            text = path.read_text()
        except OSError as error:
            raise ConfigError(
                f"{path}: cannot read client {client.name!r}'s handover file ({error.strerror}); the client writes it "
                "with python -m stacks.handover after deploying its stack"
            ) from None
        handovers[client.name] = check(ClientHandover.from_json(text, str(path)), config, client, str(path))
    return handovers


def handovers_in_outputs(outputs: dict, where: str) -> list[ClientHandover]:
    """The handover documents of the client stacks in a ``cdk deploy --outputs-file`` document."""
    found = []
    for stack, values in outputs.items():
        if isinstance(values, dict) and OUTPUT in values:
            found.append(ClientHandover.from_json(values[OUTPUT], f"{where}: {stack}.{OUTPUT}"))
    if not found:
        raise ConfigError(
            f"{where}: no stack output {OUTPUT!r}; deploy the client stack with -c federation:deployment_mode="
            "separate-organisations and --outputs-file"
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacks.handover", description=__doc__.splitlines()[0])
    parser.add_argument("outputs", type=Path, help="the file cdk deploy --outputs-file wrote")
    parser.add_argument("folder", type=Path, help="where to write <client>.json")
    args = parser.parse_args(argv)
    try:
        outputs = json.loads(args.outputs.read_text())
        handovers = handovers_in_outputs(outputs, str(args.outputs))
    except (OSError, json.JSONDecodeError) as error:
        print(f"{args.outputs}: cannot read the deploy outputs: {error}", file=sys.stderr)
        return 2
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    for handover in handovers:
        args.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(args.folder / f"{handover.client}.json") as path:
            path.write_text(handover.to_json() + "\n")
        print(f"wrote {args.folder / f'{handover.client}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
