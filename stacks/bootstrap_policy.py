"""One organisation: the CloudFormation execution policies and the permissions boundary to bootstrap an account
with, instead of an administrator policy.

When one owner deploys every stack from one place, each account is bootstrapped to trust that place, and
CloudFormation acts in it with the execution policies named at bootstrap. This module writes them for an account
from the templates ``cdk synth`` made for it:

- ``execution-policy-<n>.json`` (as many as the 6,144-character limit of a managed policy needs): the actions the
  CloudFormation handlers of exactly the resource types in that account's templates call (``cfn_permissions``),
  outside IAM, each by IAM's own name (``iam_actions``). IAM only on roles and policies named ``FL-*`` or after
  the federation's stacks, never the CDK bootstrap's own; every role it creates or changes must carry the
  boundary below, which it can neither remove from a role nor change, and it cannot change the execution
  policies themselves.
- ``permissions-boundary.json``: the most any role of the stacks may ever do: the actions their own policies grant,
  on this account's resources (S3: the stacks' own buckets; ``sts:AssumeRole``: ``FL-*`` roles, the kickoff and
  peering roles of the other accounts; ``kms:GetPublicKey``: the other members' identity keys the stacks name, by
  their ``alias/fl-identity-*`` aliases), passing only the stacks' roles, and only to SageMaker; nothing else of IAM.

    npx cdk synth -o cdk.out
    python -m stacks.bootstrap_policy cdk.out 222222222222 bootstrap/222222222222/   # prints the commands to run

What this does not change (the README says it too): whoever holds the trust can redeploy the federation's stacks
in that account with other contents and create roles within the boundary, which outlive the trust; so remove the
trust once deployed (``cdk bootstrap --untrust``), list the account's ``FL-*`` and stack-named roles afterwards,
and prefer separate organisations, where no account trusts another to deploy.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fl_runtime.aws.contract import identity_alias_patterns
from fl_runtime.errors import ConfigError
from fl_runtime.files import atomic_path
from stacks.cfn_permissions import handler_permissions
from stacks.iam_actions import iam_actions

BOUNDARY_NAME = "FL-deployment-boundary"
EXECUTION_POLICY_NAME = "FL-cloudformation-execution"  # -1, -2, ...
STACK_PREFIXES = ("ClientStack", "ServerStack", "FL-")  # how CDK and this project name the stacks' roles and policies
BUCKET_PREFIXES = ("clientstack", "serverstack")  # CDK's bucket names start with the stack's name, lower-cased
MANAGED_POLICY_LIMIT = 6144  # characters of a customer managed policy document, without white space
ENVELOPE = 64  # {"Version":"2012-10-17","Statement":[...]} around the statements
LAMBDA_BASIC = "service-role/AWSLambdaBasicExecutionRole"  # CDK's BucketDeployment handler gets it (IAM4, reasoned)
LAMBDA_BASIC_ACTIONS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
ROLE_WRITES = ["iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy", "iam:DetachRolePolicy",
               "iam:DeleteRolePolicy", "iam:PutRolePermissionsBoundary"]  # fmt: skip
ROLE_OTHERS = ["iam:DeleteRole", "iam:GetRole", "iam:GetRolePolicy", "iam:UpdateRole", "iam:UpdateRoleDescription",
               "iam:UpdateAssumeRolePolicy", "iam:TagRole", "iam:UntagRole", "iam:ListRolePolicies",
               "iam:ListAttachedRolePolicies", "iam:ListRoleTags", "iam:PassRole"]  # fmt: skip
POLICY_WRITES = ["iam:CreatePolicy", "iam:DeletePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicyVersion",
                 "iam:SetDefaultPolicyVersion", "iam:TagPolicy", "iam:UntagPolicy"]  # fmt: skip
POLICY_READS = ["iam:GetPolicy", "iam:GetPolicyVersion", "iam:ListPolicyVersions", "iam:ListEntitiesForPolicy"]
NEVER_IN_A_ROLE = ("iam:", "organizations:", "account:", "sts:AssumeRoot")


def account_templates(assembly: Path, account: str) -> list[dict]:
    """The templates of the stacks ``cdk synth`` made for ``account`` (from the assembly's manifest)."""
    try:
        manifest = json.loads((assembly / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{assembly}: not a cloud assembly (run npx cdk synth -o {assembly}): {error}") from None
    templates = []
    for artifact in manifest.get("artifacts", {}).values():
        if artifact.get("type") == "aws:cloudformation:stack" and f"aws://{account}/" in artifact.get(
            "environment", ""
        ):
            templates.append(json.loads((assembly / artifact["properties"]["templateFile"]).read_text()))
    if not templates:
        raise ConfigError(f"{assembly}: no stack of account {account} (the federation config's accounts)")
    return templates


def _resource_actions(templates: list[dict], region: str) -> list[str]:
    """What CloudFormation's handlers call for the templates' resource types, outside IAM (granted by name below)."""
    first_of_type: dict[str, str] = {}  # each type once (a federation of 50 has hundreds of resources of a few)
    for template in templates:
        for logical_id, resource in template["Resources"].items():
            first_of_type.setdefault(resource["Type"], logical_id)
    actions: set[str] = set()
    for kind, logical_id in first_of_type.items():
        try:
            actions.update(iam_actions(handler_permissions(kind, region), kind))
        except ConfigError as error:
            raise ConfigError(f"resource {logical_id}: {error}") from None
    return sorted(a for a in actions if not a.startswith("iam:"))


def _iam_statements(account: str, partition: str) -> list[dict]:
    iam = f"arn:{partition}:iam::{account}"
    roles = [f"{iam}:role/{prefix}*" for prefix in STACK_PREFIXES]
    policies = [f"{iam}:policy/{prefix}*" for prefix in STACK_PREFIXES]
    protected = [f"{iam}:policy/{BOUNDARY_NAME}", f"{iam}:policy/{EXECUTION_POLICY_NAME}*"]
    own_or_lambda_logging = [f"{iam}:policy/*", f"arn:{partition}:iam::aws:policy/{LAMBDA_BASIC}"]
    return [
        {"Sid": "RolesOnlyWithinTheBoundary", "Effect": "Allow", "Action": ROLE_WRITES, "Resource": roles,
         "Condition": {"StringEquals": {"iam:PermissionsBoundary": protected[0]}}},
        {"Sid": "TheStacksRoles", "Effect": "Allow", "Action": ROLE_OTHERS, "Resource": roles},
        {"Sid": "TheStacksPolicies", "Effect": "Allow", "Action": POLICY_WRITES + POLICY_READS, "Resource": policies},
        {"Sid": "ServiceLinkedRoles", "Effect": "Allow", "Action": "iam:CreateServiceLinkedRole",
         "Resource": f"{iam}:role/aws-service-role/*"},
        {"Sid": "NoAwsManagedPolicyButLambdasLogging", "Effect": "Deny", "Action": "iam:AttachRolePolicy",
         "Resource": "*", "Condition": {"ArnNotLike": {"iam:PolicyARN": own_or_lambda_logging}}},
        {"Sid": "TheBoundaryAndThesePoliciesStay", "Effect": "Deny", "Action": POLICY_WRITES, "Resource": protected},
        {"Sid": "NoRoleLosesTheBoundary", "Effect": "Deny", "Action": "iam:DeleteRolePermissionsBoundary",
         "Resource": "*"},
    ]  # fmt: skip


def execution_policies(templates: list[dict], account: str, region: str, partition: str = "aws") -> list[dict]:
    """The IAM statements, then the resource actions, split into documents that each fit a managed policy."""
    documents: list[list[dict]] = [_iam_statements(account, partition)]
    current: dict | None = None
    for action in _resource_actions(templates, region):
        if current is None or _size(documents[-1]) + len(action) + 3 > MANAGED_POLICY_LIMIT - ENVELOPE:
            if current is not None:
                documents.append([])
            current = {"Sid": f"TheStacksResources{len(documents)}", "Effect": "Allow", "Action": [], "Resource": "*"}
            documents[-1].append(current)
        current["Action"].append(action)
    return [{"Version": "2012-10-17", "Statement": statements} for statements in documents]


def _size(document: object) -> int:
    return len(json.dumps(document, separators=(",", ":")))


def _role_actions(templates: list[dict]) -> set[str]:
    """Every action the stacks' own policies grant their roles (inline, customer managed, embedded by CDK)."""
    actions = set(LAMBDA_BASIC_ACTIONS)
    for template in templates:
        for resource in template["Resources"].values():
            properties = resource.get("Properties", {})
            iam_policy = resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")
            documents = [properties["PolicyDocument"]] if iam_policy else []
            if resource["Type"] == "AWS::IAM::Role":  # CDK's providers embed theirs in the role
                documents += [policy["PolicyDocument"] for policy in properties.get("Policies", [])]
            for document in documents:
                for statement in document["Statement"]:
                    granted = statement["Action"]
                    actions.update([granted] if isinstance(granted, str) else granted)
    refused = sorted(a for a in actions if a.startswith(NEVER_IN_A_ROLE) and a != "iam:PassRole")
    if refused:
        raise ConfigError(f"a role of these stacks is granted {refused[0]}, which the boundary never allows")
    return actions


def boundary_policy(templates: list[dict], account: str, partition: str = "aws") -> dict:
    """This account's resources only; S3: the stacks' buckets (and CDK's asset bucket, which the code bundle is
    copied from); roles of another account: only ``FL-*`` ones to assume; passing a role: the stacks' to SageMaker."""
    actions = _role_actions(templates) - {"iam:PassRole", "sts:AssumeRole"}
    s3 = sorted(a for a in actions if a.startswith("s3:"))
    buckets = [*BUCKET_PREFIXES, f"cdk-hnb659fds-assets-{account}-"]
    statements = [
        {"Sid": "TheStacksBuckets", "Effect": "Allow", "Action": s3,
         "Resource": [f"arn:{partition}:s3:::{b}{suffix}" for b in buckets for suffix in ("*", "*/*")]},
        {"Sid": "ThisAccountsResources", "Effect": "Allow", "Action": sorted(actions - set(s3)), "Resource": "*",
         "Condition": {"StringEqualsIfExists": {"aws:ResourceAccount": account}}},
        {"Sid": "AssumeOnlyFederationRoles", "Effect": "Allow", "Action": "sts:AssumeRole",
         "Resource": f"arn:{partition}:iam::*:role/FL-*"},
        {"Sid": "PassOnlyTheStacksRolesToSageMaker", "Effect": "Allow", "Action": "iam:PassRole",
         "Resource": [f"arn:{partition}:iam::{account}:role/{prefix}*" for prefix in STACK_PREFIXES],
         "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}},
    ]  # fmt: skip
    keys, members = _other_accounts_keys(templates, account)
    if members:
        statements.append(
            {"Sid": "ReadOtherMembersIdentityPublicKeys", "Effect": "Allow", "Action": "kms:GetPublicKey",
             "Resource": keys,
             "Condition": {"StringLike": {"kms:RequestAlias": identity_alias_patterns(partition)},
                           "StringEquals": {"aws:ResourceAccount": members}}}
        )  # fmt: skip
    return {"Version": "2012-10-17", "Statement": statements}


def _other_accounts_keys(templates: list[dict], account: str) -> tuple[list[str], list[str]]:
    """The KMS keys the stacks' policies let a role read a public key of in other accounts, and those accounts (one
    organisation: the other members' identity keys, which a training job resolves when it starts; its statement
    names the accounts in ``aws:ResourceAccount``)."""
    keys: set[str] = set()
    accounts: set[str] = set()
    for template in templates:
        for resource in template["Resources"].values():
            if resource["Type"] not in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
                continue
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                granted = statement["Action"]
                named = statement.get("Condition", {}).get("StringEquals", {}).get("aws:ResourceAccount", [])
                others = {named} if isinstance(named, str) else set(named)
                if "kms:GetPublicKey" in ([granted] if isinstance(granted, str) else granted) and others - {account}:
                    keys.update(
                        [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
                    )
                    accounts.update(others - {account})
    return sorted(keys), sorted(accounts)


def _commands(account: str, region: str, out: Path, count: int, partition: str) -> str:
    names = [f"{EXECUTION_POLICY_NAME}-{n}" for n in range(1, count + 1)]
    create = [
        f"aws iam create-policy --policy-name {BOUNDARY_NAME} --policy-document file://{out}/permissions-boundary.json"
    ]
    create += [f"aws iam create-policy --policy-name {name} --policy-document file://{out}/execution-policy-{n}.json"
               for n, name in enumerate(names, start=1)]  # fmt: skip
    arns = ",".join(f"arn:{partition}:iam::{account}:policy/{name}" for name in names)
    bootstrap = f"npx cdk bootstrap aws://{account}/{region} --cloudformation-execution-policies {arns}"
    return "\n".join(
        [*create, bootstrap + " --trust SERVER_ACCOUNT   # a client account; the server's without --trust"]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacks.bootstrap_policy", description=__doc__.splitlines()[0])
    parser.add_argument("assembly", type=Path, help="the cdk.out folder of npx cdk synth")
    parser.add_argument("account", help="the account to bootstrap")
    parser.add_argument("out", type=Path, help="folder for execution-policy-<n>.json and permissions-boundary.json")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--partition", default="aws")
    args = parser.parse_args(argv)
    try:
        templates = account_templates(args.assembly, args.account)
        executions = execution_policies(templates, args.account, args.region, args.partition)
        documents = {f"execution-policy-{n}.json": doc for n, doc in enumerate(executions, start=1)}
        documents["permissions-boundary.json"] = boundary_policy(templates, args.account, args.partition)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    for name, document in documents.items():
        with atomic_path(args.out / name) as path:
            path.write_text(json.dumps(document, indent=1) + "\n")
    print(_commands(args.account, args.region, args.out, len(executions), args.partition))
    return 0


if __name__ == "__main__":
    sys.exit(main())
