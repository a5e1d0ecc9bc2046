#!/usr/bin/env python3
"""How the synthesized stacks grow with the members: resources, the largest template, policy and parameter.

    python bench/bench_synth.py --members 1 10 50 [--repeat 2] [--deployment-mode one-organisation]
                                [--network peering|privatelink]

Synthesizes the CDK app in process (as `cdk synth` does, cdk-nag included) for N generated members and prints,
per N: seconds (median and range over --repeat), resources of ServerStack and of a client stack (CloudFormation
allows 500 per stack), the largest template in bytes (1 MB from S3), the largest IAM policy document and SSM
parameter value, each with what it is. Sizes count a CloudFormation reference by its longest resolved form
(``stacks.limits``), so a figure is an upper bound of what the deploy sees.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))


def synth(count: int, mode: str, network: str, outdir: Path) -> tuple[float, dict]:
    import json

    import aws_cdk as cdk

    from app import build_app
    from stacks.limits import measure
    from tests.stacks.cdk_helpers import PRIVATELINK, generated_members

    context = json.loads((PROJECT / "cdk.json").read_text())["context"]
    context.update({"federation:clients": generated_members(count), "federation:deployment_mode": mode})
    if network == "privatelink":  # the server's service name as its deploy outputs it, zones by id
        context.update({f"federation:{key}": value for key, value in PRIVATELINK.items()})
    started = time.perf_counter()
    app = cdk.App(context=context, outdir=str(outdir))
    build_app(app)
    assembly = app.synth()
    seconds = time.perf_counter() - started
    return seconds, measure(assembly)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--deployment-mode", default="one-organisation")
    parser.add_argument("--network", choices=["peering", "privatelink"], default="peering")
    args = parser.parse_args()
    print(
        "| members | synth seconds | ServerStack resources | client stack resources | largest template (bytes) "
        "| largest policy (characters) | largest parameter (characters) |"
    )
    print("|---|---|---|---|---|---|---|")
    for count in args.members:
        times, figures = [], {}
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as folder:
                seconds, figures = synth(count, args.deployment_mode, args.network, Path(folder))
            times.append(seconds)
        spread = f"{statistics.median(times):.1f} ({min(times):.1f}-{max(times):.1f})"
        print(f"| {count} | {spread} | {figures['server_resources']} | {figures['client_resources']} | "
              f"{figures['largest_template']} | {figures['largest_policy']} | {figures['largest_parameter']} |",
              flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
