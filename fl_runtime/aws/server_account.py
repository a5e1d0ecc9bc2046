"""Where ``federate`` gets its settings, data and client jobs: AWS on the notebook, folders in a rehearsal.

``AwsServer``: the server notebook's own role reads ``<prefix>/server/settings`` and the client entries beside it
(``<prefix>/server/client/<name>``) from SSM, downloads
the test set from the results bucket, uploads the outputs to ``model/<run>/``, registers the run's model in
the model package group (``model_package``), and reaches each client account through its kickoff role
(``kickoff.KickoffSession``).

``RehearsalServer``: the same roles played by folders (one per bucket) and local processes
(``local_jobs``): each client's launcher is the launcher code itself, in process, and its jobs receive
the very CreateTrainingJob requests SageMaker would; the CreateModelPackage request, checked as boto3 checks it
before sending, is kept as the group's next version in ``model-registry/<group>/<version>.json`` beside the
description. Described by a JSON file (see ``RehearsalServer.describe``), it is how the tests and a laptop
rehearse a deployment end to end.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from fl_runtime.aws.calls import aws_call, boto_config, error_code
from fl_runtime.aws.contract import (
    ClientAccountSettings,
    ClientEntry,
    ServerAccountSettings,
    server_clients_path,
    server_parameter,
)
from fl_runtime.aws.federate import ClientHandle
from fl_runtime.aws.fleet_service import open_fleet
from fl_runtime.aws.kickoff import KickoffSession
from fl_runtime.aws.local_jobs import LocalJobs, LocalLauncher
from fl_runtime.aws.model_package import Registered, version_of
from fl_runtime.errors import BadInput, ConfigError, FederationError
from fl_runtime.files import write_text_atomic

TEST_FILE = "test.csv"


def read_server_settings(ssm: Any, prefix: str) -> ServerAccountSettings:
    """The server's settings (``<prefix>/server/settings``) joined with its client entries, one parameter each
    under ``<prefix>/server/client/`` (``contract.server_clients_path``); ConfigError when an entry is missing."""
    parameter, path = server_parameter(prefix), server_clients_path(prefix)
    with aws_call("server", f"reading {parameter}"):
        raw = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    where = f"the server's settings {parameter}"
    settings = ServerAccountSettings.from_json(raw, where)
    if settings.client_count == 0:  # a ServerStack of an earlier version: the entries are inline
        return settings
    with aws_call("server", f"reading the client entries under {path}/"):
        pages = ssm.get_paginator("get_parameters_by_path").paginate(Path=path)
        found = sorted((item for page in pages for item in page["Parameters"]), key=lambda item: item["Name"])
    entries = tuple(ClientEntry.from_json(item["Value"], f"the client entry {item['Name']}") for item in found)
    if len(entries) != settings.client_count:
        names = ", ".join(entry.name for entry in entries) or "none"
        raise ConfigError(
            f"{where}: ServerStack published {settings.client_count} client entries, but {len(entries)} are under "
            f"{path}/ ({names}); deploy ServerStack again"
        )
    return dataclasses.replace(settings, clients=entries)


class AwsServer:
    def __init__(self, prefix: str, session: Any = None) -> None:
        """``prefix``: the federation config's parameter_prefix (``/fl-fraud``)."""
        import boto3

        self.session = session or boto3.Session()
        self.settings = read_server_settings(self.session.client("ssm", config=boto_config()), prefix)
        self.region = self.settings.region

    def fetch_test_set(self, destination: Path) -> Path:
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{self.settings.test_prefix}{TEST_FILE}"
        try:
            self.session.client("s3", config=boto_config()).download_file(
                self.settings.results_bucket, key, str(destination)
            )
        except BotoCoreError as error:
            raise FederationError(f"server: downloading the test set could not reach S3: {error}") from None
        except ClientError as error:
            raise FederationError(
                f"no test set at s3://{self.settings.results_bucket}/{key} ({error}); stage it first: "
                "python -m fl_runtime stage-data --server --data test.csv"
            ) from None
        return destination

    def publish(self, folder: Path, run: str) -> str:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        s3 = self.session.client("s3", config=boto_config())
        prefix = f"{self.settings.model_prefix}{run}/"
        location = f"s3://{self.settings.results_bucket}/{prefix}"
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            try:
                s3.upload_file(str(path), self.settings.results_bucket, prefix + path.relative_to(folder).as_posix())
            except (ClientError, BotoCoreError, S3UploadFailedError) as error:
                raise FederationError(f"uploading {path.name} to {location} failed: {error}") from None
        return location

    def register(self, request: dict[str, Any]) -> Registered:
        from botocore.exceptions import BotoCoreError, ClientError

        sagemaker = self.session.client("sagemaker", config=boto_config())
        try:
            arn = sagemaker.create_model_package(**request)["ModelPackageArn"]
        except ClientError as error:
            message = error.response.get("Error", {}).get("Message", str(error))
            raise FederationError(f"SageMaker refused CreateModelPackage ({error_code(error)}: {message})") from None
        except BotoCoreError as error:
            raise FederationError(f"CreateModelPackage failed: {error}") from None
        return Registered(arn, version_of(arn))

    def open_fleet(self, address: str, endpoints: dict[str, str]) -> list[str]:
        """Through PrivateLink: this notebook as the load balancer's target, the members' published endpoints
        (``endpoints``, by client name) accepted."""
        elbv2, ec2 = (self.session.client(name, config=boto_config()) for name in ("elbv2", "ec2"))
        return open_fleet(elbv2, ec2, self.settings, address, endpoints)

    def clients(self, session_name: str) -> list[ClientHandle]:
        sts = self.session.client("sts", config=boto_config())
        sessions = [KickoffSession.assume(sts, entry, self.region, session_name) for entry in self.settings.clients]
        return [ClientHandle(session.name, session.settings, session.launcher) for session in sessions]


class RehearsalServer:
    """Buckets as folders, training jobs as local processes; the requests are the real ones.

    Described by a JSON file: the server's and each client's settings as the stacks publish them, the
    folder standing in for each bucket, where the jobs run and with which Python.
    """

    def __init__(self, description: Path) -> None:
        try:
            spec = json.loads(Path(description).read_text())
            self.settings = ServerAccountSettings.from_dict(spec["server"], f"{description}: server")
            self.client_settings = [
                ClientAccountSettings.from_dict(c, f"{description}: clients[{i}]")
                for i, c in enumerate(spec["clients"])
            ]
            self.buckets = {name: Path(folder) for name, folder in spec["buckets"].items()}
            jobs_folder, python = Path(spec["jobs_folder"]), str(spec["python"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise BadInput(f"{description}: not a rehearsal description ({type(error).__name__}: {error})") from None
        self.region = self.settings.region
        self.registry = Path(description).resolve().parent / "model-registry"
        self.jobs = LocalJobs(jobs_folder, self.buckets, python, spec.get("install_requirements", False))

    @staticmethod
    def describe(
        path: Path,
        *,
        server: ServerAccountSettings,
        clients: list[ClientAccountSettings],
        buckets: dict[str, Path],
        jobs_folder: Path,
        python: str,
        install_requirements: bool = False,
    ) -> Path:
        path.write_text(
            json.dumps(
                {
                    "server": server.to_dict(),
                    "clients": [c.to_dict() for c in clients],
                    "buckets": {k: str(v) for k, v in buckets.items()},
                    "jobs_folder": str(jobs_folder),
                    "python": python,
                    "install_requirements": install_requirements,
                },
                indent=2,
            )
        )
        return path

    def fetch_test_set(self, destination: Path) -> Path:
        source = self.buckets[self.settings.results_bucket] / f"{self.settings.test_prefix}{TEST_FILE}"
        if not source.is_file():
            raise FederationError(f"no test set at {source}")
        shutil.copyfile(source, destination)
        return destination

    def publish(self, folder: Path, run: str) -> str:
        target = self.buckets[self.settings.results_bucket] / f"{self.settings.model_prefix}{run}"
        try:
            shutil.copytree(folder, target, dirs_exist_ok=True)
        except OSError as error:
            raise FederationError(f"copying the outputs to {target} failed: {error}") from None
        return str(target)

    def register(self, request: dict[str, Any]) -> Registered:
        from botocore.session import get_session
        from botocore.validate import ParamValidator

        shape = get_session().get_service_model("sagemaker").operation_model("CreateModelPackage").input_shape
        report = ParamValidator().validate(request, shape)
        if report.has_errors():
            raise FederationError(f"SageMaker would refuse CreateModelPackage: {report.generate_report()}")
        group = self.registry / request["ModelPackageGroupName"]
        version = len(list(group.glob("*.json"))) + 1
        try:
            write_text_atomic(group / f"{version}.json", json.dumps(request, indent=2))
        except OSError as error:
            raise FederationError(f"keeping the model package in {group} failed: {error}") from None
        return Registered(str(group / f"{version}.json"), version)

    def clients(self, session_name: str) -> list[ClientHandle]:
        return [ClientHandle(s.client, s, LocalLauncher(s.launch, self.jobs)) for s in self.client_settings]

    def open_fleet(self, address: str, endpoints: dict[str, str]) -> list[str]:
        """A rehearsal has no load balancer: its jobs dial the gateway's address, or their private name, directly."""
        return []
