"""The server's side of each client account: its kickoff session, and the client's launcher it may call.

``KickoffSession`` is one client account seen through ``FL-kickoff-client-job``, assumed with the client's
external id: the client's published settings, read from its SSM, and a ``LambdaLauncher`` for its
launcher function, the only thing that role may invoke. The server asks the launcher to start, describe
or stop the job of a run (``launcher``); it never writes a training-job request itself.

``ClientLauncher`` is what ``federate`` needs of any client: the same requests go to a Lambda function
here and, in a rehearsal, to the same launcher code in process (``local_jobs.LocalLauncher``). No secret
travels: each job makes its own SuperNode key and publishes the public half in its own account's SSM,
where the server reads it through the kickoff role.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from fl_runtime.aws.calls import aws_call, boto_config, error_code
from fl_runtime.aws.contract import ClientAccountSettings, ClientEntry
from fl_runtime.errors import FederationError

SESSION_SECONDS = 3600  # the most AWS allows a chained role session; renewed before it ends


@dataclass(frozen=True)
class StartedJob:
    job: str  # the training job's name
    public_key_uri: str  # where its SuperNode publishes its public key


class ClientLauncher(ABC):
    """Requests to one client's launcher (see ``launcher``); an answer ``{"error": ...}`` is the client's refusal."""

    def __init__(self, client: str) -> None:
        self.client = client

    @abstractmethod
    def call(self, request: dict) -> dict:
        """Send one request, return the launcher's answer."""

    @abstractmethod
    def read_public_key(self, uri: str) -> bytes | None:
        """The public key a job published at ``uri``; None while it has not yet."""

    def start(self, run: str, superlink: str | None, ca_certificate: bytes) -> StartedJob:
        """``superlink``: the address the job dials; None through PrivateLink, where the client's account names it."""
        request = {"action": "start", "run": run, "ca_certificate": ca_certificate.decode()}
        if superlink is not None:
            request["superlink"] = superlink
        answer = self.call(request)
        if "error" in answer:
            raise FederationError(str(answer["error"]))
        return StartedJob(str(answer["job"]), str(answer["public_key"]))

    def status(self, run: str) -> tuple[str, str]:
        """(TrainingJobStatus, its failure reason or secondary status); ("Unknown", why) when unanswered."""
        try:
            answer = self.call({"action": "describe", "run": run})
        except FederationError as error:
            return "Unknown", str(error)
        if "error" in answer:
            return "Unknown", str(answer["error"])
        return str(answer["status"]), str(answer.get("detail", ""))

    def stop(self, run: str) -> str | None:
        """Stop the run's job; the reason if that failed (the caller reports it and goes on with the others)."""
        try:
            answer = self.call({"action": "stop", "run": run})
        except FederationError as error:
            return str(error)
        return str(answer["error"]) if "error" in answer else None


class LambdaLauncher(ClientLauncher):
    """A client's launcher function, invoked through the kickoff session; SSM for the jobs' public keys."""

    def __init__(self, client: str, session: Any, function_arn: str) -> None:
        super().__init__(client)
        self.function_arn = function_arn
        self.functions = session.client("lambda", config=boto_config())
        self.ssm = session.client("ssm", config=boto_config())

    def call(self, request: dict) -> dict:
        operation = f"invoking its launcher {self.function_arn} ({request['action']})"
        with aws_call(self.client, operation):
            answer = self.functions.invoke(FunctionName=self.function_arn, Payload=json.dumps(request).encode())
            payload = answer["Payload"].read()
        if answer.get("FunctionError"):
            raise FederationError(f"client {self.client}: {operation} failed: {payload.decode(errors='replace')[:500]}")
        return json.loads(payload)

    def read_public_key(self, uri: str) -> bytes | None:
        from botocore.exceptions import ClientError

        name = uri.removeprefix("ssm:")
        with aws_call(self.client, f"reading the SuperNode public key {name}"):
            try:
                return self.ssm.get_parameter(Name=name)["Parameter"]["Value"].encode("ascii")
            except ClientError as error:
                if error_code(error) == "ParameterNotFound":
                    return None
                raise


@dataclass
class KickoffSession:
    """One client account seen through its kickoff role: its settings and its launcher."""

    name: str
    settings: ClientAccountSettings
    launcher: LambdaLauncher

    @classmethod
    def assume(cls, sts: Any, entry: ClientEntry, region: str, session_name: str) -> KickoffSession:
        """AssumeRole into FL-kickoff-client-job with the external id, then read the client's settings.

        The notebook's own credentials are already an assumed role, so this is role chaining: AWS caps
        the session at one hour. The session renews itself before expiry (botocore refreshable
        credentials), so a run longer than an hour keeps watching and stopping its jobs.
        """
        import boto3
        import botocore.session
        from botocore.credentials import RefreshableCredentials

        def fetch() -> dict:
            with aws_call(entry.name, f"sts:AssumeRole on {entry.kickoff_role_arn}"):
                credentials = sts.assume_role(
                    RoleArn=entry.kickoff_role_arn,
                    RoleSessionName=session_name[:64],
                    ExternalId=entry.external_id,
                    DurationSeconds=SESSION_SECONDS,
                )["Credentials"]
            return {
                "access_key": credentials["AccessKeyId"],
                "secret_key": credentials["SecretAccessKey"],
                "token": credentials["SessionToken"],
                "expiry_time": credentials["Expiration"].isoformat(),
            }

        core = botocore.session.get_session()
        core._credentials = RefreshableCredentials.create_from_metadata(fetch(), fetch, "sts-assume-role")
        session = boto3.Session(botocore_session=core, region_name=region)
        with aws_call(entry.name, f"reading {entry.settings_parameter}"):
            ssm = session.client("ssm", config=boto_config())
            raw = ssm.get_parameter(Name=entry.settings_parameter)["Parameter"]["Value"]
        settings = ClientAccountSettings.from_json(raw, f"client {entry.name}'s settings {entry.settings_parameter}")
        return cls(entry.name, settings, LambdaLauncher(entry.name, session, settings.launcher_arn))
