"""What ``doctor`` reads of each account: EC2's descriptions, whether S3 objects exist, and the server's side.

``AwsSide`` is the server notebook (its own role's SSM, S3 and EC2; each client through its kickoff role,
as ``federate`` reaches it), ``RehearsalSide`` a rehearsal (settings and buckets from its description, each
launcher in process, as ``federate --rehearsal`` has them; EC2 through boto3, in tests the moto server).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from fl_runtime.aws.calls import aws_call, boto_config, error_code
from fl_runtime.aws.contract import ClientAccountSettings, ClientEntry, ServerAccountSettings
from fl_runtime.aws.kickoff import ClientLauncher, KickoffSession
from fl_runtime.aws.server_account import TEST_FILE, AwsServer, RehearsalServer
from fl_runtime.errors import FederationError

SESSION_NAME = "fl-doctor"
MISSING = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")  # S3's answers for an object that is not there


DESCRIBE = {  # EC2 call -> (its answer's list, the filter on the ids)
    "describe_vpc_peering_connections": ("VpcPeeringConnections", "vpc-peering-connection-id"),
    "describe_route_tables": ("RouteTables", "route-table-id"),
    "describe_security_groups": ("SecurityGroups", "group-id"),
}


def described(ec2: Any, call: str, ids: tuple[str, ...] | list[str], party: str = "server") -> list[dict]:
    """The EC2 objects of ``ids`` that exist (a filter, not a list of ids, so a missing one is no error).

    A refusal says what EC2 said, not ``calls.explain``'s hint: that one is about kickoff roles.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    wanted = sorted({i for i in ids if i})
    if not wanted:
        return []
    key, name = DESCRIBE[call]
    try:
        return list(getattr(ec2, call)(Filters=[{"Name": name, "Values": wanted}])[key])
    except (ClientError, BotoCoreError) as error:
        raise FederationError(f"{party}: ec2 {call} failed: {error}") from None


def found(party: str, operation: str, call: Callable[[], object]) -> bool:
    """One S3 call: False when the object is not there, a FederationError naming the call on any other failure."""
    from botocore.exceptions import ClientError

    with aws_call(party, operation):
        try:
            call()
        except ClientError as error:
            if error_code(error) in MISSING:
                return False
            raise
    return True


def s3_location(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def server_test_set_key(settings: ServerAccountSettings) -> str:
    """Where the server's test set is staged in its results bucket."""
    return f"{settings.test_prefix}{TEST_FILE}"


class RoleRefused(FederationError):
    """The client's kickoff role could not be assumed (its settings were never asked for)."""


class ServerSide(Protocol):
    """What the server's checks need of its account: ``AwsSide`` on the notebook, ``RehearsalSide`` in rehearsals."""

    settings: ServerAccountSettings

    def reach(self, entry: ClientEntry) -> tuple[ClientAccountSettings, ClientLauncher]: ...
    def kickoff_detail(self, entry: ClientEntry) -> str: ...
    def has_test_set(self) -> bool: ...
    def ec2(self) -> Any: ...
    def elbv2(self) -> Any: ...


class AwsSide(AwsServer):
    """The server notebook: its own role's SSM, S3 and EC2, and each client through its kickoff role."""

    def reach(self, entry: ClientEntry) -> tuple[ClientAccountSettings, ClientLauncher]:
        """``KickoffSession.assume`` takes both steps; the call its error names tells a refused role (RoleRefused)
        from settings that could not be read."""
        try:
            session = KickoffSession.assume(
                self.session.client("sts", config=boto_config()), entry, self.region, SESSION_NAME
            )
        except FederationError as error:
            if f"sts:AssumeRole on {entry.kickoff_role_arn}" in str(error):  # the call kickoff names
                raise RoleRefused(str(error)) from None
            raise
        return session.settings, session.launcher

    def kickoff_detail(self, entry: ClientEntry) -> str:
        return f"assumed {entry.kickoff_role_arn} with the external id of the federation config"

    def has_test_set(self) -> bool:
        s3 = self.session.client("s3", config=boto_config())
        bucket, key = self.settings.results_bucket, server_test_set_key(self.settings)
        return found("server", f"reading s3://{bucket}/{key}", partial(s3.head_object, Bucket=bucket, Key=key))

    def ec2(self) -> Any:
        return self.session.client("ec2", region_name=self.region, config=boto_config())

    def elbv2(self) -> Any:
        return self.session.client("elbv2", region_name=self.region, config=boto_config())


class RehearsalSide(RehearsalServer):
    """A rehearsal: settings and buckets from its description, each launcher in process, EC2 through boto3."""

    def reach(self, entry: ClientEntry) -> tuple[ClientAccountSettings, ClientLauncher]:
        for handle in self.clients(SESSION_NAME):
            if handle.name == entry.name:
                return handle.settings, handle.launcher
        raise FederationError(f"client {entry.name}: the rehearsal description has no settings for it")

    def kickoff_detail(self, entry: ClientEntry) -> str:
        return "rehearsal: no role to assume, the launcher runs in process"

    def has_test_set(self) -> bool:
        folder = self.buckets.get(self.settings.results_bucket)
        return folder is not None and (folder / server_test_set_key(self.settings)).is_file()

    def ec2(self) -> Any:
        import boto3

        return boto3.Session().client("ec2", config=boto_config())

    def elbv2(self) -> Any:
        import boto3

        return boto3.Session().client("elbv2", config=boto_config())
