"""Training jobs on this machine, started from the very CreateTrainingJob requests SageMaker would get.

The stand-in for SageMaker in rehearsals and tests: for each request it lays out a folder like
/opt/ml (``code/``, ``input/data/train/``, ``model/``, ``output/data/``), unpacks the
``sagemaker_submit_directory`` bundle, optionally installs its requirements the way the training
toolkit does, copies the ``train`` channel, and runs ``sagemaker_program`` with the hyperparameters
as ``--key value`` arguments (``sagemaker_*`` ones removed) and the ``SM_*`` environment. When the
program exits 0, ``model/`` is packed into ``model.tar.gz`` under the output path, as SageMaker does.

S3 locations map to folders: ``s3://BUCKET/KEY`` is ``buckets[BUCKET]/KEY``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from fl_runtime.aws.contract import ClientAccountSettings
from fl_runtime.errors import BadInput
from fl_runtime.launch.processes import Supervisor

PUBLIC_KEY = "supernode.pub"  # a job publishes it as a file here, where SageMaker jobs use SSM


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
        self.started: dict[str, float] = {}
        self._final: dict[str, tuple[str, str]] = {}

    def local_path(self, uri: str) -> Path:
        bucket, _, key = uri[len("s3://") :].partition("/")
        if bucket not in self.buckets:
            raise BadInput(f"{uri}: no local folder stands in for bucket {bucket} in the rehearsal description")
        return self.buckets[bucket] / key

    def public_key_uri(self, settings: ClientAccountSettings, name: str) -> str:
        return (self.workspace / name / "published" / PUBLIC_KEY).as_uri()

    def start(self, request: dict) -> str:
        name = request["TrainingJobName"]
        opt_ml = self.workspace / name / "opt_ml"
        code, train = opt_ml / "code", opt_ml / "input" / "data" / "train"
        for folder in (code, train, opt_ml / "model", opt_ml / "output" / "data"):
            folder.mkdir(parents=True, exist_ok=True)
        parameters = request["HyperParameters"]
        with tarfile.open(self.local_path(parameters["sagemaker_submit_directory"])) as bundle:
            bundle.extractall(code, filter="data")
        channel = next(c for c in request["InputDataConfig"] if c["ChannelName"] == "train")
        shutil.copytree(self.local_path(channel["DataSource"]["S3DataSource"]["S3Uri"]), train, dirs_exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
        env.update(
            PIP_CONFIG_FILE=os.devnull,
            SM_CHANNEL_TRAIN=str(train),
            SM_MODEL_DIR=str(opt_ml / "model"),
            SM_OUTPUT_DATA_DIR=str(opt_ml / "output" / "data"),
            TRAINING_JOB_NAME=name,
        )
        if self.install_requirements:  # what the training toolkit runs before the program
            subprocess.run(
                [self.python, "-m", "pip", "install", "--quiet", "--no-index", "-r", "requirements.txt"],
                cwd=code,
                env=env,
                check=True,
            )
        arguments = [
            item
            for key, value in sorted(parameters.items())
            if not key.startswith("sagemaker_")
            for item in (f"--{key}", value)
        ]
        self.supervisor.start(name, [self.python, parameters["sagemaker_program"], *arguments], env, code)
        self.requests[name] = request
        self.started[name] = time.monotonic()
        return name

    def status(self, name: str) -> tuple[str, str]:
        if name in self._final:
            return self._final[name]
        code = self.supervisor.exited().get(name)
        if code is None:
            return "InProgress", "Training"
        if code == 0:
            self._pack_model(name)
            self._final[name] = ("Completed", "")
        else:
            self._final[name] = ("Failed", self.supervisor.log_tail(name, 3) or f"exit code {code}")
        return self._final[name]

    def _pack_model(self, name: str) -> None:
        output = self.local_path(self.requests[name]["OutputDataConfig"]["S3OutputPath"]) / name / "output"
        output.mkdir(parents=True, exist_ok=True)
        with tarfile.open(output / "model.tar.gz", "w:gz") as archive:
            for item in sorted((self.workspace / name / "opt_ml" / "model").iterdir()):
                archive.add(item, arcname=item.name)

    def stop(self, name: str) -> str | None:
        if self.status(name)[0] == "InProgress":
            self.supervisor.stop(name)
            self._final[name] = ("Stopped", "stopped by the federation")
        return None

    def read_public_key(self, uri: str) -> bytes | None:
        path = Path(uri[len("file://") :])
        return path.read_bytes() if path.exists() else None

    def log(self, name: str, lines: int = 40) -> str:
        return self.supervisor.log_tail(name, lines)

    def stop_all(self) -> None:
        for name in list(self.requests):
            self.stop(name)
        self.supervisor.stop_all()
