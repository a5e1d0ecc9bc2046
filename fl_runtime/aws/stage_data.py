"""``python -m fl_runtime stage-data``: put one party's data where the federation reads it, in its own account.

On a client notebook: validates the client's CSV (the checks and messages of the local runner), splits
it into stratified train and validation parts and uploads both to the client's data bucket under
``data_prep/`` (the training job's ``train`` channel). On the server notebook (``--server``): validates
the test set and uploads it to the results bucket under ``data/``. Bucket names come from the stack's
settings in SSM. A file that fails validation is never uploaded, and a staged dataset is not
overwritten unless ``--overwrite`` says so.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fl_runtime import defaults
from fl_runtime.aws.calls import boto_config, explain
from fl_runtime.aws.contract import ClientAccountSettings, ServerAccountSettings, client_parameter, server_parameter
from fl_runtime.errors import FederationError, OptionsError, OutputExists
from fl_runtime.learning.data import (
    LabelledData,
    check_has_both_classes,
    check_split,
    check_trainable,
    read_csv,
    write_csv,
)
from fl_runtime.learning.task import ClientData

TRAIN, VALIDATION, TEST = "train.csv", "validation.csv", "test.csv"


@dataclass(frozen=True)
class StageOptions:
    data: Path
    server: bool = False
    client: str | None = None
    parameter_prefix: str = defaults.PARAMETER_PREFIX
    overwrite: bool = False
    seed: int = defaults.SEED

    def __post_init__(self) -> None:
        if self.server == bool(self.client):
            raise OptionsError(
                "say whose data this is: --client NAME on a client notebook, or --server on the server notebook"
            )

    @property
    def parameter(self) -> str:
        return (
            server_parameter(self.parameter_prefix)
            if self.server
            else client_parameter(self.parameter_prefix, str(self.client))
        )

    def destination(self, document: str) -> tuple[str, str]:
        """(bucket, key prefix) of this party's staged data, from its stack's settings document."""
        where = f"the settings {self.parameter}"
        if self.server:
            server = ServerAccountSettings.from_json(document, where)
            return server.results_bucket, server.test_prefix
        client = ClientAccountSettings.from_json(document, where)
        return client.data_bucket, client.data_prefix


def prepare(options: StageOptions, folder: Path) -> dict[str, Path]:
    """Validated files to upload, by object name; raises DataError before anything is uploaded."""
    data = read_csv(options.data)
    if options.server:
        check_has_both_classes(data)
        return {TEST: _write(folder / TEST, data)}
    check_trainable(data)
    split = ClientData.split(data, seed=options.seed)
    staged = {TRAIN: _write(folder / TRAIN, split.train), VALIDATION: _write(folder / VALIDATION, split.validation)}
    check_split(read_csv(staged[TRAIN]), read_csv(staged[VALIDATION]))  # what the training job will check
    return staged


def _write(path: Path, data: LabelledData) -> Path:
    write_csv(path, data)
    return path


def stage(options: StageOptions, session=None) -> list[str]:
    """Validate, then upload; returns the s3:// URIs written."""
    import boto3
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError

    party = "server" if options.server else str(options.client)
    with tempfile.TemporaryDirectory(prefix="fl-stage-") as folder:
        files = prepare(options, Path(folder))  # validation first: nothing leaves a file that fails it
        session = session or boto3.Session()
        try:
            document = session.client("ssm", config=boto_config()).get_parameter(Name=options.parameter)["Parameter"][
                "Value"
            ]
        except ClientError as error:
            raise explain(error, party, f"reading {options.parameter}") from None
        bucket, prefix = options.destination(document)
        s3 = session.client("s3", config=boto_config())
        try:
            existing = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
            clash = [key for key in existing if key.rsplit("/", 1)[-1] in files]
            if clash and not options.overwrite:
                raise OutputExists(
                    f"s3://{bucket}/{clash[0]}: a dataset is already staged; pass --overwrite to replace it"
                )
        except ClientError as error:
            raise explain(error, party, f"reading s3://{bucket}/{prefix}") from None
        except BotoCoreError as error:
            raise FederationError(f"{party}: reading s3://{bucket}/{prefix} failed: {error}") from None
        uploaded = []
        try:
            for name, path in files.items():
                s3.upload_file(str(path), bucket, f"{prefix}{name}")
                uploaded.append(f"{prefix}{name}")
        except (ClientError, BotoCoreError, S3UploadFailedError) as error:
            _retract(s3, bucket, uploaded)  # no half-staged dataset: the files belong together
            operation = f"uploading to s3://{bucket}/{prefix}"
            cause = (
                explain(error, party, operation)
                if isinstance(error, ClientError)
                else f"{party}: {operation} failed: {error}"
            )
            replaced = " (the previous dataset was partly replaced: stage again with --overwrite)" if clash else ""
            raise FederationError(f"{cause}; nothing of this attempt is left staged{replaced}") from None
    return [f"s3://{bucket}/{key}" for key in uploaded]


def _retract(s3, bucket: str, keys: list[str]) -> None:
    for key in keys:
        try:
            s3.delete_object(Bucket=bucket, Key=key)
        except Exception as error:
            print(f"warning: could not remove s3://{bucket}/{key} after the failed upload: {error}", file=sys.stderr)
