"""What the kickoff step needs, published twice: as stack outputs and as one JSON document in SSM.

The ``federate`` and ``stage-data`` commands read the SSM documents (the server's own, and each
client's through its kickoff role); people read the outputs.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ssm as ssm
from constructs import Construct


def publish(scope: Construct, parameter_name: str, values: dict[str, object], description: str) -> ssm.StringParameter:
    published = Construct(scope, "Published")
    stack = Stack.of(scope)
    for key, value in values.items():
        output_id = "".join(part.capitalize() for part in key.split("_"))
        CfnOutput(
            published,
            output_id,
            value=value if isinstance(value, str) else stack.to_json_string(value),
            description=key,
        )
    return ssm.StringParameter(
        published,
        "Settings",
        parameter_name=parameter_name,
        string_value=stack.to_json_string(values),
        description=description,
    )
