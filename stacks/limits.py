"""The AWS limits a deploy meets that ``cdk synth`` does not check, checked on the synthesized templates.

What grows with the members is counted here before any deploy: resources and outputs per stack
(CloudFormation), IAM policy sizes (managed, the inline policies of one role together, a role's trust policy),
SSM parameter values by tier, VPC endpoint, bucket and key policies. A value holding CloudFormation references
is counted with each reference at the longest form it can resolve to (``_bound``): a figure here is an upper
bound of what the deploy sees, so a synth that passes never fails a deploy on these limits.

``check`` raises ConfigError naming each stack, resource, limit and size; ``measure`` gives the figures the
synth scaling table reports (``bench/bench_synth.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from fl_runtime.errors import ConfigError

RESOURCES_PER_STACK = 500
OUTPUTS_PER_STACK = 200
TEMPLATE_BYTES = 1_000_000  # a template CloudFormation reads from S3 (the CDK uploads large ones there)
MANAGED_POLICY = 6_144  # characters, white space not counted
ROLE_INLINE_POLICIES = 10_240  # all inline policies of one role together
TRUST_POLICY = 2_048  # a role's trust policy, by default (a quota that can be raised to 4,096)
PARAMETER = {"Standard": 4_096, "Advanced": 8_192}  # an SSM parameter's value, by tier
ENDPOINT_POLICY = 20_480  # a VPC endpoint's policy
BUCKET_POLICY = 20_480
KEY_POLICY = 32_768

# The longest a reference resolves to. Pseudo parameters exactly; a resource's Ref, its id or name (EC2 ids are
# at most 24 characters; S3 bucket names at most 63; IAM role and Lambda function names 64; a KMS key id 36; other
# types' Ref, which may be an ARN or a URL, 160); an ARN by its service's form (partition up to 10 characters,
# region 16, account 12, then the name or id); an element chosen out of a list (the peering's ids, read from the
# other account) an id; anything else, 160.
PSEUDO = {
    "AWS::AccountId": 12,
    "AWS::Region": 16,
    "AWS::Partition": 10,
    "AWS::URLSuffix": 16,
    "AWS::NoValue": 0,
    "AWS::StackName": 128,
}
EC2_IDS = ("VPC", "Subnet", "SecurityGroup", "RouteTable", "VPCPeeringConnection", "VPCEndpoint", "NetworkAcl")
REF = {
    "AWS::KMS::Key": 36,
    "AWS::S3::Bucket": 63,
    "AWS::IAM::Role": 64,
    "AWS::Lambda::Function": 64,
    **{f"AWS::EC2::{kind}": 24 for kind in EC2_IDS},
}
ARN = {"AWS::S3::Bucket": 13 + 10 + 63, "AWS::KMS::Key": 14 + 10 + 16 + 12 + 36, "AWS::IAM::Role": 15 + 10 + 12 + 64}
ATTRIBUTE = {"Arn": 128, "GroupId": 24, "VpcId": 24}  # Arn: any other ARN (a Lambda function's is at most 125)
ELEMENT = 24  # Fn::Select out of Fn::Split: the peering's and the other account's ids
OTHER = 160


@dataclass(frozen=True)
class Resolution:
    """The longest forms of one template's references (it knows each logical id's resource type)."""

    types: dict[str, str]

    def bound(self, value: Any) -> int:
        """The longest ``value`` (a string or an intrinsic function) can be once resolved."""
        if isinstance(value, str):
            return len(value)
        if isinstance(value, (int, float, bool)):
            return len(json.dumps(value))
        if not (isinstance(value, dict) and len(value) == 1):
            return OTHER
        ((function, argument),) = value.items()
        if function == "Ref":
            return PSEUDO.get(argument, REF.get(self.types.get(argument, ""), OTHER))
        if function == "Fn::GetAtt":
            logical_id, attribute = argument
            if attribute == "Arn" and self.types.get(logical_id) in ARN:
                return ARN[self.types[logical_id]]
            return ATTRIBUTE.get(attribute, OTHER)
        if function == "Fn::Join" and isinstance(argument[1], list):
            separator, parts = argument
            return sum(map(self.bound, parts)) + len(separator) * max(len(parts) - 1, 0)
        if function == "Fn::Select" and isinstance(argument[1], dict) and "Fn::Split" in argument[1]:
            return ELEMENT
        if function == "Fn::Sub" and isinstance(argument, str):
            return len(argument) + argument.count("${") * OTHER
        return OTHER

    def size(self, document: Any) -> int:
        """A JSON document's length without white space, each reference at its bound."""
        if isinstance(document, dict):
            if len(document) == 1 and next(iter(document)).startswith(("Ref", "Fn::")):
                return self.bound(document) + 2  # a string in the resolved document: its quotes
            items = sum(len(json.dumps(key)) + 1 + self.size(item) for key, item in document.items())
            return 2 + items + max(len(document) - 1, 0)
        if isinstance(document, list):
            return 2 + sum(map(self.size, document)) + max(len(document) - 1, 0)
        return len(json.dumps(document, separators=(",", ":")))


@dataclass(frozen=True)
class Measured:
    """One sized or counted thing of a template, against its limit."""

    stack: str
    what: str  # e.g. "managed policy ServerKickoffPolicy"
    size: int
    limit: int
    unit: str = "characters at most"  # a count has none

    @property
    def over(self) -> bool:
        return self.size > self.limit

    def __str__(self) -> str:
        size = f"{self.size:,} {self.unit}".strip()
        return f"{self.stack}: {self.what}: {size}, over the limit of {self.limit:,}"


def _sized(stack: str, template: dict) -> list[Measured]:
    resources: dict[str, dict] = template.get("Resources", {})
    resolution = Resolution({logical_id: resource["Type"] for logical_id, resource in resources.items()})
    _size, _bound = resolution.size, resolution.bound
    found: list[Measured] = []
    inline: dict[str, int] = {}
    for logical_id, resource in resources.items():
        kind, properties = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::IAM::ManagedPolicy":
            found.append(Measured(stack, f"managed policy {logical_id}", _size(properties["PolicyDocument"]),
                                  MANAGED_POLICY))  # fmt: skip
        elif kind == "AWS::IAM::Policy":
            for role in properties.get("Roles", []):
                name = role.get("Ref", str(role)) if isinstance(role, dict) else role
                inline[name] = inline.get(name, 0) + _size(properties["PolicyDocument"])
        elif kind == "AWS::IAM::Role":
            found.append(Measured(stack, f"trust policy of role {logical_id}",
                                  _size(properties["AssumeRolePolicyDocument"]), TRUST_POLICY))  # fmt: skip
            for policy in properties.get("Policies", []):
                inline[logical_id] = inline.get(logical_id, 0) + _size(policy["PolicyDocument"])
        elif kind == "AWS::SSM::Parameter":
            tier = properties.get("Tier", "Standard")
            found.append(Measured(stack, f"{tier} SSM parameter {logical_id}", _bound(properties["Value"]),
                                  PARAMETER.get(tier, PARAMETER["Standard"])))  # fmt: skip
        elif kind == "AWS::EC2::VPCEndpoint" and "PolicyDocument" in properties:
            found.append(Measured(stack, f"endpoint policy {logical_id}", _size(properties["PolicyDocument"]),
                                  ENDPOINT_POLICY))  # fmt: skip
        elif kind == "AWS::S3::BucketPolicy":
            found.append(Measured(stack, f"bucket policy {logical_id}", _size(properties["PolicyDocument"]),
                                  BUCKET_POLICY))  # fmt: skip
        elif kind == "AWS::KMS::Key":
            found.append(Measured(stack, f"key policy {logical_id}", _size(properties["KeyPolicy"]), KEY_POLICY))
    found += [Measured(stack, f"inline policies of role {role}", size, ROLE_INLINE_POLICIES)
              for role, size in inline.items()]  # fmt: skip
    found.append(Measured(stack, "resources", len(resources), RESOURCES_PER_STACK, unit=""))
    found.append(Measured(stack, "outputs", len(template.get("Outputs", {})), OUTPUTS_PER_STACK, unit=""))
    found.append(Measured(stack, "template", len(json.dumps(template)), TEMPLATE_BYTES, unit="bytes"))
    return found


def _templates(assembly: Any) -> dict[str, dict]:
    return {stack.stack_name: stack.template for stack in assembly.stacks}


def check(assembly: Any) -> None:
    """ConfigError listing every limit a synthesized stack would exceed (``assembly``: ``app.synth()``'s)."""
    over = [str(m) for name, template in _templates(assembly).items() for m in _sized(name, template) if m.over]
    if over:
        raise ConfigError("the synthesized stacks would exceed AWS limits at deploy: " + "; ".join(over))


def measure(assembly: Any) -> dict[str, object]:
    """The scaling table's figures: resources of ServerStack and of the largest client stack, the largest
    template, IAM policy and SSM parameter (each with what it is)."""
    sized = {name: _sized(name, template) for name, template in _templates(assembly).items()}

    def largest(kind: str) -> str:
        candidates = [m for found in sized.values() for m in found if kind in m.what]
        top = max(candidates, key=lambda m: m.size)
        return f"{top.size:,} ({top.stack} {top.what}, limit {top.limit:,})"

    def resources(stacks: list[str]) -> int:
        return max((m.size for name in stacks for m in sized[name] if m.what == "resources"), default=0)

    return {
        "server_resources": resources([name for name in sized if name == "ServerStack"]),
        "client_resources": resources([name for name in sized if name != "ServerStack"]),
        "largest_template": largest("template"),
        "largest_policy": max(
            (largest(kind) for kind in ("managed policy", "inline policies", "endpoint policy")),
            key=lambda text: int(text.split()[0].replace(",", "")),
        ),
        "largest_parameter": largest("SSM parameter"),
    }
