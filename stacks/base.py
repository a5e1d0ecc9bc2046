"""What every stack of the federation shares: its account and region, and pinned availability zones."""

from __future__ import annotations

from aws_cdk import Environment, Stack
from constructs import Construct

from stacks.config import FederationConfig


class FederationStack(Stack):
    """A stack whose availability zones come from the config, so synth needs no AWS lookup."""

    def __init__(self, scope: Construct, construct_id: str, *, config: FederationConfig, account: str, description: str) -> None:
        self._zones = list(config.availability_zones)
        super().__init__(scope, construct_id, env=Environment(account=account, region=config.region), description=description)
        self.config = config

    @property
    def availability_zones(self) -> list[str]:
        return self._zones
