"""Training jobs on this machine, for rehearsals: SageMaker's four calls, and a client's launcher in process.

``LocalJobs`` answers ``create_training_job``, ``describe_training_job``, ``stop_training_job`` and
``list_training_jobs`` as SageMaker does (a job it does not know is boto3's ClientError, as SageMaker's
answer is), for the very requests a client's launcher builds: for each it lays out a folder like
/opt/ml (``code/``, ``input/data/train/``, ``model/``, ``output/data/``), unpacks the
``sagemaker_submit_directory`` bundle, optionally installs its requirements the way the training toolkit
does, copies the ``train`` channel, and runs ``sagemaker_program`` with the hyperparameters as
``--key value`` arguments (``sagemaker_*`` ones removed), the request's ``Environment`` and the ``SM_*``
variables. When the program exits 0, ``model/`` is packed into ``model.tar.gz`` under the output path.

``LocalLauncher`` sends the server's requests to ``launcher.handle``, the code a client's launcher
function runs, with ``LocalJobs`` in SageMaker's place: a rehearsal goes through the same checks and
builds the same jobs as AWS.

Stand-ins: ``s3://BUCKET/KEY`` is ``buckets[BUCKET]/KEY``; an SSM parameter ``/a/b`` is the file
``<workspace>/ssm/a/b``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

from fl_runtime.aws import launcher
from fl_runtime.aws.contract import LaunchSettings
from fl_runtime.aws.kickoff import ClientLauncher
from fl_runtime.errors import BadInput
from fl_runtime.launch.processes import Supervisor


class LocalJobs:
    def __init__(
        self, workspace: Path, buckets: dict[str, Path], python: str, install_requirements: bool = False
    ) -> None:
        self.workspace = workspace
        self.buckets = buckets
        self.python = python
        self.install_requirements = install_requirements
        # a job stops its own SuperNode on SIGTERM, as in SageMaker; give it time to
        self.supervisor = Supervisor(workspace / "job-logs", grace=30.0)
        self.requests: dict[str, dict] = {}
        self.created: dict[str, datetime] = {}  # each job's CreationTime
        self._final: dict[str, tuple[str, str]] = {}

    def local_path(self, uri: str) -> Path:
        bucket, _, key = uri[len("s3://") :].partition("/")
        if bucket not in self.buckets:
            raise BadInput(f"{uri}: no local folder stands in for bucket {bucket} in the rehearsal description")
        return self.buckets[bucket] / key

    def parameter_path(self, uri: str) -> Path:
        """The file standing in for the SSM parameter of ``ssm:/a/b``."""
        return self.workspace / "ssm" / uri.removeprefix("ssm:").lstrip("/")

    def create_training_job(self, **request: Any) -> dict:
        name = request["TrainingJobName"]
        opt_ml = self.workspace / name / "opt_ml"
        code, train = opt_ml / "code", opt_ml / "input" / "data" / "train"
        for folder in (code, train, opt_ml / "model", opt_ml / "output" / "data"):
            folder.mkdir(parents=True, exist_ok=True)
        parameters = dict(request["HyperParameters"])
        with tarfile.open(self.local_path(parameters["sagemaker_submit_directory"])) as bundle:
            bundle.extractall(code, filter="data")
        channel = next(c for c in request["InputDataConfig"] if c["ChannelName"] == "train")
        shutil.copytree(self.local_path(channel["DataSource"]["S3DataSource"]["S3Uri"]), train, dirs_exist_ok=True)
        if parameters.get("public-key-uri", "").startswith("ssm:"):
            parameters["public-key-uri"] = self.parameter_path(parameters["public-key-uri"]).as_uri()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env.update(
            {
                key: self.parameter_path(value).as_uri() if value.startswith("ssm:") else value
                for key, value in request.get("Environment", {}).items()
            }
        )
        env.update(
            PIP_CONFIG_FILE=os.devnull,
            SM_CHANNEL_TRAIN=str(train),
            SM_MODEL_DIR=str(opt_ml / "model"),
            SM_OUTPUT_DATA_DIR=str(opt_ml / "output" / "data"),
            TRAINING_JOB_NAME=name,
        )
        if self.install_requirements:  # what the training toolkit runs before the program
            pip = [self.python, "-m", "pip", "install", "--quiet", "--no-index", "-r", "requirements.txt"]
            subprocess.run(pip, cwd=code, env=env, check=True)
        arguments = [
            item
            for key, value in sorted(parameters.items())
            if not key.startswith("sagemaker_")
            for item in (f"--{key}", value)
        ]
        self.supervisor.start(name, [self.python, parameters["sagemaker_program"], *arguments], env, code)
        self.requests[name] = request
        self.created[name] = datetime.now(UTC)
        return {"TrainingJobArn": _arn(name)}

    def describe_training_job(self, *, TrainingJobName: str) -> dict:
        status, detail = self._status(TrainingJobName)
        return {"TrainingJobName": TrainingJobName, "TrainingJobStatus": status, "FailureReason": detail}

    def list_training_jobs(
        self, *, NameContains: str = "", CreationTimeAfter: datetime | None = None, MaxResults: int = 10,
        NextToken: str = "",
    ) -> dict:  # fmt: skip
        """The jobs created here, oldest first, a page at a time, as SageMaker's ListTrainingJobs answers."""
        if NextToken and not NextToken.isdigit():
            _client_error("ListTrainingJobs", f"Invalid pagination token {NextToken!r}")
        names = [
            name
            for name, created in self.created.items()
            if NameContains in name and (CreationTimeAfter is None or created > CreationTimeAfter)
        ]
        start = int(NextToken or 0)
        answer: dict[str, Any] = {"TrainingJobSummaries": [self._summary(n) for n in names[start : start + MaxResults]]}
        if start + MaxResults < len(names):
            answer["NextToken"] = str(start + MaxResults)
        return answer

    def _summary(self, name: str) -> dict:
        return {
            "TrainingJobName": name,
            "TrainingJobArn": _arn(name),
            "CreationTime": self.created[name],
            "TrainingJobStatus": self._status(name)[0],
        }

    def _status(self, name: str, operation: str = "DescribeTrainingJob") -> tuple[str, str]:
        if name not in self.requests:  # SageMaker's own answer (a ValidationException) to an unknown job
            _client_error(operation, "Requested resource not found.")
        if name in self._final:
            return self._final[name]
        code = self.supervisor.exited().get(name)
        if code is None:
            return "InProgress", ""
        if code == 0:
            self._pack_model(name)
            self._final[name] = ("Completed", "")
        else:
            self._final[name] = ("Failed", self.supervisor.log_tail(name, 3) or f"exit code {code}")
        return self._final[name]

    def _pack_model(self, name: str) -> None:
        """As SageMaker uploads a finished job: model/ as model.tar.gz, output/data/ as output.tar.gz."""
        output = self.local_path(self.requests[name]["OutputDataConfig"]["S3OutputPath"]) / name / "output"
        output.mkdir(parents=True, exist_ok=True)
        opt_ml = self.workspace / name / "opt_ml"
        for archive_name, folder in (("model.tar.gz", opt_ml / "model"), ("output.tar.gz", opt_ml / "output" / "data")):
            with tarfile.open(output / archive_name, "w:gz") as archive:
                for item in sorted(folder.iterdir()):
                    archive.add(item, arcname=item.name)

    def stop_training_job(self, *, TrainingJobName: str) -> dict:
        if self._status(TrainingJobName, "StopTrainingJob")[0] == "InProgress":
            self.supervisor.stop(TrainingJobName)
            self._final[TrainingJobName] = ("Stopped", "stopped by the federation")
        return {}

    def log(self, name: str, lines: int = 40) -> str:
        return self.supervisor.log_tail(name, lines)

    def stop_all(self) -> None:
        for name in list(self.requests):
            self.stop_training_job(TrainingJobName=name)
        self.supervisor.stop_all()


def _arn(name: str) -> str:
    return f"arn:aws:sagemaker:local:000000000000:training-job/{name}"


def _client_error(operation: str, message: str) -> NoReturn:
    """What boto3 raises for SageMaker's ValidationException on ``operation``."""
    from botocore.exceptions import ClientError

    raise ClientError({"Error": {"Code": "ValidationException", "Message": message}}, operation)


class LocalLauncher(ClientLauncher):
    """One client's launcher, in process: the server's request as JSON, ``launcher.handle``, local jobs."""

    def __init__(self, settings: LaunchSettings, jobs: LocalJobs) -> None:
        super().__init__(settings.client)
        self.settings = settings
        self.jobs = jobs

    def call(self, request: dict) -> dict:
        """As the function answers: SageMaker's refusals (an unknown job, say) too, and a bucket no folder stands in
        for as one of them."""
        try:
            return launcher.answer(json.loads(json.dumps(request)), self.settings, self.jobs)
        except BadInput as error:
            return {"error": f"client {self.client}'s launcher: SageMaker refused: {error}"}

    def read_public_key(self, uri: str) -> bytes | None:
        path = self.jobs.parameter_path(uri)
        return path.read_bytes() if path.exists() else None
