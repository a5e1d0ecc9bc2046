"""What CloudFormation needs to create, update, read and delete a resource type, from the resource schemas.

Every CloudFormation resource type publishes a schema whose ``handlers`` list the IAM actions its create,
update, read and delete handlers call. cfn-lint (pinned, in the dev environment) ships those schemas per region;
reading them keeps the generated execution policy in step with what CloudFormation really calls, instead of a
hand-written list that misses one action and fails a deploy. Custom resources are invoked, nothing more.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from fl_runtime.errors import ConfigError

HANDLERS = ("create", "update", "read", "delete")
CUSTOM_RESOURCE = ["lambda:InvokeFunction"]  # CloudFormation invokes a custom resource's provider function
NO_ACTIONS = {"AWS::CDK::Metadata"}


@cache
def _schemas() -> Path:
    import cfnlint  # type: ignore[import-untyped]  # the dev environment's, which lints the same templates

    return Path(cfnlint.__file__).parent / "data" / "schemas"


@cache
def _provider(region: str) -> dict[str, str]:
    path = _schemas() / "providers" / f"{region}.json"
    if not path.is_file():
        raise ConfigError(f"region {region!r}: cfn-lint has no resource schemas for it")
    return json.loads(path.read_text())


def handler_permissions(resource_type: str, region: str) -> list[str]:
    """The actions of ``resource_type``'s handlers in ``region``, sorted; ConfigError for a type without a schema."""
    if resource_type in NO_ACTIONS:
        return []
    if resource_type.startswith("Custom::"):
        return CUSTOM_RESOURCE
    schema_id = _provider(region).get(resource_type)
    if schema_id is None:
        raise ConfigError(f"type {resource_type} has no CloudFormation resource schema in {region}")
    handlers = json.loads((_schemas() / "resources" / f"{schema_id}.json").read_text()).get("handlers", {})
    if not handlers:
        raise ConfigError(f"type {resource_type}: its schema lists no handler permissions; review it by hand")
    return sorted({action for name in HANDLERS for action in handlers.get(name, {}).get("permissions", [])})
