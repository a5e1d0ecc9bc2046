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
from pathlib import Path
from typing import Any

from fl_runtime.errors import ConfigError

RESOURCES_PER_STACK = 500
OUTPUTS_PER_STACK = 200
TEMPLATE_BYTES = 1_000_000  # a template CloudFormation reads from S3 (the CDK uploads large ones there)
MANAGED_POLICY = 6_144  # characters, white space not counted
ROLE_INLINE_POLICIES = 10_240  # all inline policies of one role together
TRUST_POLICY = 2_048  # a role's trust policy, by default (a quota that can be raised to 4,096)
# an SSM parameter's value, by tier (Intelligent-Tiering makes one Advanced when its value needs it)
PARAMETER = {"Standard": 4_096, "Advanced": 8_192, "Intelligent-Tiering": 8_192}
ENDPOINT_POLICY = 20_480  # a VPC endpoint's policy
SECURITY_GROUP_RULES = 60  # inbound, and outbound, rules per security group (the default quota)
BUCKET_POLICY = 20_480
KEY_POLICY = 32_768

# The longest a reference resolves to. The stack's account, region and partition exactly (every stack of this app
# names its environment); a resource's Ref, its id or name: EC2 ids at most 24 characters, S3 bucket names 63,
# IAM role and Lambda function names 64, a KMS key id 36, an SSM parameter its literal name (else 2,048), a log
# group its literal name or the one CloudFormation generates, <stack>-<logical id>-<13 characters>; an ARN by its
# service's form around those; an element chosen out of a list (the peering's ids, read from the other account)
# an id. Other types and functions count 160: not proven for every type, so a new kind of reference in a growing
# document belongs in these tables.
EC2_IDS = ("VPC", "Subnet", "SecurityGroup", "RouteTable", "VPCPeeringConnection", "VPCEndpoint", "NetworkAcl")
REF = {
    "AWS::KMS::Key": 36,
    "AWS::S3::Bucket": 63,
    "AWS::IAM::Role": 64,
    "AWS::Lambda::Function": 64,
    **{f"AWS::EC2::{kind}": 24 for kind in EC2_IDS},
}
ARN_FORM = {  # the ARN around a name or id: (service, resource prefix); {name} as Ref resolves it
    "AWS::S3::Bucket": "arn:{partition}:s3:::{name}",
    "AWS::KMS::Key": "arn:{partition}:kms:{region}:{account}:key/{name}",
    "AWS::IAM::Role": "arn:{partition}:iam::{account}:role/{name}",
    "AWS::Lambda::Function": "arn:{partition}:lambda:{region}:{account}:function:{name}",
    "AWS::Logs::LogGroup": "arn:{partition}:logs:{region}:{account}:log-group:{name}:*",
    "AWS::SSM::Parameter": "arn:{partition}:ssm:{region}:{account}:parameter/{name}",
}
ATTRIBUTE = {"Arn": 2048, "GroupId": 24, "VpcId": 24}  # an ARN of a type not in ARN_FORM: IAM's limit for one
ELEMENT = 24  # Fn::Select out of Fn::Split: the peering's and the other account's ids
GENERATED_SUFFIX = 13  # CloudFormation's generated physical names end in -<13 characters>
SSM_NAME = 2048
OTHER = 160


@dataclass(frozen=True)
class Resolution:
    """The longest forms of one template's references: it knows the stack (name and environment) and each
    logical id's resource."""

    stack: str
    account: str
    region: str
    resources: dict[str, dict]

    @property
    def partition(self) -> str:
        return "aws-cn" if self.region.startswith("cn-") else "aws-us-gov" if "-gov-" in self.region else "aws"

    def _type(self, logical_id: str) -> str:
        return self.resources.get(logical_id, {}).get("Type", "")

    def name(self, logical_id: str) -> int:
        """The longest name or id ``Ref`` gives for this resource."""
        kind, properties = self._type(logical_id), self.resources.get(logical_id, {}).get("Properties", {})
        if kind == "AWS::Logs::LogGroup":
            literal = properties.get("LogGroupName")
            generated = len(self.stack) + 1 + len(logical_id) + 1 + GENERATED_SUFFIX
            return len(literal) if isinstance(literal, str) else generated
        if kind == "AWS::SSM::Parameter":
            literal = properties.get("Name")
            return len(literal) if isinstance(literal, str) else SSM_NAME
        return REF.get(kind, OTHER)

    def arn(self, logical_id: str) -> int:
        form = ARN_FORM[self._type(logical_id)]
        fixed = form.format(partition=self.partition, region=self.region, account=self.account, name="")
        return len(fixed) + self.name(logical_id)

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
            pseudo = {"AWS::AccountId": self.account, "AWS::Region": self.region, "AWS::Partition": self.partition}
            return len(pseudo[argument]) if argument in pseudo else self.name(argument)
        if function == "Fn::GetAtt":
            logical_id, attribute = argument
            if attribute == "Arn" and self._type(logical_id) in ARN_FORM:
                return self.arn(logical_id)
            return ATTRIBUTE.get(attribute, OTHER)
        if function == "Fn::Join" and isinstance(argument[1], list):
            separator, parts = argument
            return sum(map(self.bound, parts)) + len(separator) * max(len(parts) - 1, 0)
        if function == "Fn::Select" and isinstance(argument[1], dict) and "Fn::Split" in argument[1]:
            return ELEMENT
        if function == "Fn::If":
            return max(self.bound(argument[1]), self.bound(argument[2]))
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


# the policy documents a resource type holds: (what it is called, its property, its limit)
POLICY_DOCUMENTS = {
    "AWS::IAM::ManagedPolicy": ("managed policy", "PolicyDocument", MANAGED_POLICY),
    "AWS::IAM::Role": ("trust policy of role", "AssumeRolePolicyDocument", TRUST_POLICY),
    "AWS::EC2::VPCEndpoint": ("endpoint policy", "PolicyDocument", ENDPOINT_POLICY),
    "AWS::S3::BucketPolicy": ("bucket policy", "PolicyDocument", BUCKET_POLICY),
    "AWS::KMS::Key": ("key policy", "KeyPolicy", KEY_POLICY),
}


def _sized(stack: str, account: str, region: str, template: dict, template_bytes: int) -> list[Measured]:
    resources: dict[str, dict] = template.get("Resources", {})
    resolution = Resolution(stack, account, region, resources)
    found: list[Measured] = []
    inline: dict[str, int] = {}  # a role's inline policies together, by the role's logical id
    for logical_id, resource in resources.items():
        kind, properties = resource["Type"], resource.get("Properties", {})
        if kind in POLICY_DOCUMENTS and POLICY_DOCUMENTS[kind][1] in properties:
            what, key, limit = POLICY_DOCUMENTS[kind]
            found.append(Measured(stack, f"{what} {logical_id}", resolution.size(properties[key]), limit))
        if kind == "AWS::IAM::Policy":
            size = resolution.size(properties["PolicyDocument"])
            for role in map(_logical_id, properties.get("Roles", [])):
                inline[role] = inline.get(role, 0) + size
        elif kind == "AWS::IAM::Role":
            for policy in properties.get("Policies", []):
                inline[logical_id] = inline.get(logical_id, 0) + resolution.size(policy["PolicyDocument"])
        elif kind == "AWS::SSM::Parameter":
            tier = properties.get("Tier", "Standard")
            limit = PARAMETER.get(tier, PARAMETER["Standard"])
            found.append(
                Measured(stack, f"{tier} SSM parameter {logical_id}", resolution.bound(properties["Value"]), limit)
            )
    found += [Measured(stack, f"inline policies of role {role}", size, ROLE_INLINE_POLICIES)
              for role, size in inline.items()]  # fmt: skip
    found.append(Measured(stack, "resources", len(resources), RESOURCES_PER_STACK, unit=""))
    found.append(Measured(stack, "outputs", len(template.get("Outputs", {})), OUTPUTS_PER_STACK, unit=""))
    found.append(Measured(stack, "template", template_bytes, TEMPLATE_BYTES, unit="bytes"))
    found += _security_group_rules(stack, resources)
    return found


def _logical_id(reference: Any) -> str:
    """The logical id a ``Ref`` or ``Fn::GetAtt`` names; anything else as text (a literal id)."""
    if isinstance(reference, dict) and "Ref" in reference:
        return reference["Ref"]
    if isinstance(reference, dict) and "Fn::GetAtt" in reference:
        return reference["Fn::GetAtt"][0]
    return json.dumps(reference) if not isinstance(reference, str) else reference


def _security_group_rules(stack: str, resources: dict[str, dict]) -> list[Measured]:
    """Inbound and outbound rules of each security group (its own and the separate rule resources)."""
    rules: dict[tuple[str, str], int] = {}
    for logical_id, resource in resources.items():
        properties = resource.get("Properties", {})
        if resource["Type"] == "AWS::EC2::SecurityGroup":
            for direction, key in (("inbound", "SecurityGroupIngress"), ("outbound", "SecurityGroupEgress")):
                rules[(logical_id, direction)] = rules.get((logical_id, direction), 0) + len(properties.get(key, []))
        elif resource["Type"] in ("AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"):
            direction = "inbound" if resource["Type"].endswith("Ingress") else "outbound"
            group = _logical_id(properties.get("GroupId"))
            rules[(group, direction)] = rules.get((group, direction), 0) + 1
    return [Measured(stack, f"{direction} rules of security group {group}", count, SECURITY_GROUP_RULES, unit="")
            for (group, direction), count in rules.items()]  # fmt: skip


def _templates(assembly: Any) -> dict[str, tuple[str, str, dict, int]]:
    """Each stack's (account, region, template, bytes of the template file the CDK wrote and will upload)."""
    return {
        stack.stack_name: (
            stack.environment.account,
            stack.environment.region,
            stack.template,
            Path(stack.template_full_path).stat().st_size,
        )
        for stack in assembly.stacks
    }


def check(assembly: Any) -> None:
    """ConfigError listing every limit a synthesized stack would exceed (``assembly``: ``app.synth()``'s)."""
    over = [str(m) for name, stack in _templates(assembly).items() for m in _sized(name, *stack) if m.over]
    if over:
        raise ConfigError("the synthesized stacks would exceed AWS limits at deploy: " + "; ".join(over))


def measure(assembly: Any) -> dict[str, object]:
    """The scaling table's figures: resources of ServerStack and of the largest client stack, the largest
    template, IAM policy and SSM parameter (each with what it is)."""
    sized = {name: _sized(name, *stack) for name, stack in _templates(assembly).items()}

    def largest(*kinds: str) -> str:
        top = max((m for found in sized.values() for m in found if any(kind in m.what for kind in kinds)),
                  key=lambda m: m.size)  # fmt: skip
        return f"{top.size:,} ({top.stack} {top.what}, limit {top.limit:,})"

    def resources(stacks: list[str]) -> int:
        return max((m.size for name in stacks for m in sized[name] if m.what == "resources"), default=0)

    return {
        "server_resources": resources([name for name in sized if name == "ServerStack"]),
        "client_resources": resources([name for name in sized if name != "ServerStack"]),
        "largest_template": largest("template"),
        "largest_policy": largest("managed policy", "inline policies", "endpoint policy"),
        "largest_parameter": largest("SSM parameter"),
    }
