"""Compliance checks on every synth: cdk-nag's AwsSolutions, HIPAA Security and NIST 800-53 rev. 5 packs.

The data is Medicare claims, so HIPAA Security applies; NIST 800-53 is what US health payers' and
agencies' security teams review against. A finding either gets fixed or acknowledged
here with ``acknowledge``: one exact finding (rule and, for IAM wildcards, the exact action or resource)
on one construct, with the reason it is acceptable. Unacknowledged findings fail synthesis.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import DefaultStackSynthesizer, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import custom_resources as cr
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks
from constructs import IConstruct

AWS_SOLUTIONS = "AwsSolutions::AwsSolutions-"
HIPAA = "HIPAA.Security::HIPAA.Security-"
NIST = "NIST.800.53.R5::NIST.800.53.R5-"


def objects_finding(bucket, keys: str = "*") -> str:
    """How cdk-nag names a wildcard grant on the objects of ``bucket`` matching ``keys``."""
    return f"{AWS_SOLUTIONS}IAM5[Resource::<{Stack.of(bucket).get_logical_id(bucket.node.default_child)}.Arn>/{keys}]"


def condition_service_trusts(app: cdk.App) -> None:
    """For the roles CDK makes itself (BucketDeployment's handler, its custom-resource providers): a service trust
    without conditions gets ``aws:SourceAccount`` of its stack, like every role this project makes with
    ``roles.service_principal``. A provider's role is a plain CfnResource whose trust CDK writes as one statement
    for Lambda (the tests check every role's trust in the synthesized templates).

    One walk of the finished tree rather than an Aspect: an Aspect's visit is a call from CDK's process into this
    one for every construct (about 2,300 at 10 members, 2 s of a 13 s synth); here only the roles cost a call."""
    for node in app.node.find_all():
        if isinstance(node, iam.CfnRole):
            document = Stack.of(node).resolve(node.assume_role_policy_document)
        elif type(node) is cdk.CfnResource and node.cfn_resource_type == "AWS::IAM::Role":
            document = {"Statement": [{"Principal": {"Service": "lambda.amazonaws.com"}}]}
        else:
            continue
        stack = Stack.of(node)
        for index, statement in enumerate(document.get("Statement", [])):
            if "Service" in statement.get("Principal", {}) and "Condition" not in statement:
                node.add_property_override(
                    f"AssumeRolePolicyDocument.Statement.{index}.Condition",
                    {"StringEquals": {"aws:SourceAccount": stack.account}},
                )


def add_checks(app: cdk.App) -> None:
    """Once every stack is built: the cdk-nag packs run at synth, the service trusts are conditioned now."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(), HIPAASecurityChecks(), NIST80053R5Checks())
    condition_service_trusts(app)


def acknowledge(construct: IConstruct, finding: str, reason: str) -> None:
    """Accept one exact cdk-nag finding on ``construct`` (and its children), saying why."""
    acknowledge_each(construct, {finding: reason})


def acknowledge_each(construct: IConstruct, findings: dict[str, str]) -> None:
    """Accept each exact finding on ``construct`` with its reason, in one call into CDK.

    A HIPAA Security finding is also the NIST 800-53 finding of the same rule: both packs run the same check
    (under their own control ids), so the one reason answers both."""
    rules = []
    for finding, reason in findings.items():
        if len(reason) < 20:
            raise ValueError(f"acknowledging {finding} needs a real reason, got {reason!r}")
        ids = [finding, NIST + finding.removeprefix(HIPAA)] if finding.startswith(HIPAA) else [finding]
        rules += [cdk.Acknowledgment(id=each, reason=reason) for each in ids]
    cdk.Validations.of(construct).acknowledge(*rules)


BASIC_EXECUTION_ROLE = "arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
DEPLOYMENT_FUNCTION = (
    "a CDK-provided function that runs only while CloudFormation deploys or deletes this stack "
    "(it copies the code bundle, or makes one AWS API call); it handles no claims data"
)


def acknowledge_cdk_functions(stack: Stack) -> None:
    """Findings on the Lambda functions CDK itself adds (BucketDeployment, AwsCustomResource).

    They run at deployment time only, outside the VPC because they must answer CloudFormation's
    pre-signed S3 response URL, which this project's S3 endpoint policy would block, and CDK
    generates their runtime and grants.
    """
    account, region = stack.account, stack.region
    findings = {
        f"{AWS_SOLUTIONS}L1": f"Runtime chosen by CDK for {DEPLOYMENT_FUNCTION}",
        f"{HIPAA}LambdaConcurrency": f"No reserved concurrency for {DEPLOYMENT_FUNCTION}",
        f"{HIPAA}LambdaDLQ": (
            f"CloudFormation retries and reports failures of {DEPLOYMENT_FUNCTION}; a DLQ adds nothing"
        ),
        f"{HIPAA}LambdaInsideVPC": f"Outside the VPC: {DEPLOYMENT_FUNCTION}, and must reach CloudFormation's "
        "response URL",
        f"{HIPAA}IAMNoInlinePolicy": f"CDK attaches the grants of {DEPLOYMENT_FUNCTION} as an inline policy",
        f"{AWS_SOLUTIONS}IAM4[Policy::{BASIC_EXECUTION_ROLE}]": (
            f"CDK gives {DEPLOYMENT_FUNCTION} the basic execution role for its logs"
        ),
    }
    bucket_copy = (
        f"CDK's grant for {DEPLOYMENT_FUNCTION}: read the bundle asset, write it into the code bucket under its KMS key"
    )
    for action in (
        "s3:GetObject*",
        "s3:GetBucket*",
        "s3:List*",
        "s3:DeleteObject*",
        "s3:Abort*",
        "kms:ReEncrypt*",
        "kms:GenerateDataKey*",
    ):
        findings[f"{AWS_SOLUTIONS}IAM5[Action::{action}]"] = bucket_copy
    assets = f"cdk-{DefaultStackSynthesizer.DEFAULT_QUALIFIER}-assets-{account}-{region}"
    findings[f"{AWS_SOLUTIONS}IAM5[Resource::arn:{stack.partition}:s3:::{assets}/*]"] = bucket_copy
    for child in stack.node.children:
        name = child.node.id
        if name.startswith(
            "Custom::CDKBucketDeployment"
        ) or name == "AWS" + cr.AwsCustomResource.PROVIDER_FUNCTION_UUID.replace("-", ""):
            acknowledge_each(child, findings)
