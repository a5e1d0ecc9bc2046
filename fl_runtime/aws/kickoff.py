"""Client training jobs, started from the server account: the request, and SageMaker through the kickoff role.

``training_job_request`` is the CreateTrainingJob request for one client (pure: settings in, request
out), in the reference design's shape: script mode (``sagemaker_program`` and
``sagemaker_submit_directory`` pointing at the client's own code bucket), the ``train`` channel from its
data bucket, output to ``client_artifact/``, its private subnets and training security group, a maximum
runtime; plus the server address and the run's CA certificate (public). No secret goes into
hyperparameters, which anyone allowed DescribeTrainingJob can read: each job makes its own SuperNode
key and publishes only the public half, as an SSM parameter of its own account under the client's
``supernode-keys`` path. SSM, not S3: the notebook reads it through the kickoff role over the server
VPC's SSM endpoint, while the server VPC's S3 endpoint admits the server account's buckets only.

``KickoffSession`` is one client account seen through ``FL-kickoff-client-job`` (assumed with the
client's external id): its settings from SSM, and a ``SageMakerJobs`` launcher for its jobs.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from fl_runtime.aws.contract import ClientAccountSettings, ClientEntry, job_name
from fl_runtime.errors import FederationError

DENIED = {
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
}
THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "SlowDown"}
# bounded retries: a throttled or unreachable API gives a clear error within seconds, not minutes
MAX_ATTEMPTS = 4
SESSION_SECONDS = 3600  # the most AWS allows a chained role session; renewed before it ends


def boto_config():
    """Client settings for every AWS call of the federation (botocore mutates the dict it gets: a new one each time)."""
    from botocore.config import Config

    return Config(retries={"total_max_attempts": MAX_ATTEMPTS, "mode": "standard"}, connect_timeout=10, read_timeout=60)


@dataclass(frozen=True)
class JobPlan:
    """What every client job of one run shares."""

    run_tag: str  # unique per run: part of every job name
    superlink: str  # HOST:PORT the jobs dial (the Fleet gateway on the server notebook)
    root_certificate: bytes  # PEM of the run's CA: public
    connect_timeout: float
    run_timeout: float


def training_job_request(settings: ClientAccountSettings, plan: JobPlan, region: str, public_key_uri: str) -> dict:
    name = job_name(settings.training_job_prefix, plan.run_tag, settings.client)
    artifacts = f"s3://{settings.artifact_bucket}/{settings.artifact_prefix}"
    runtime = settings.max_training_seconds
    return {
        "TrainingJobName": name,
        "AlgorithmSpecification": {"TrainingImage": settings.training_image, "TrainingInputMode": "File"},
        "RoleArn": settings.execution_role_arn,
        "HyperParameters": {
            "sagemaker_program": settings.entry_point,
            "sagemaker_submit_directory": settings.source_uri,
            "sagemaker_region": region,
            "superlink": plan.superlink,
            "root-certificate": base64.b64encode(plan.root_certificate).decode("ascii"),
            "client-name": settings.client,
            "public-key-uri": public_key_uri,
            "connect-timeout": str(int(plan.connect_timeout)),
            "run-timeout": str(int(min(plan.run_timeout, runtime - 60))),
        },
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{settings.data_bucket}/{settings.data_prefix}",
                        "S3DataDistributionType": "FullyReplicated",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": artifacts, "KmsKeyId": settings.data_key_arn},
        "ResourceConfig": {
            "InstanceType": settings.training_instance_type,
            "InstanceCount": 1,
            "VolumeSizeInGB": 30,
            "VolumeKmsKeyId": settings.data_key_arn,
        },
        "VpcConfig": {"SecurityGroupIds": [settings.training_security_group_id], "Subnets": list(settings.subnet_ids)},
        "StoppingCondition": {"MaxRuntimeInSeconds": runtime},
        "EnableNetworkIsolation": False,
    }


def public_key_parameter_uri(settings: ClientAccountSettings, job: str) -> str:
    """``ssm:<parameter>`` where the job publishes its SuperNode's public key, in its own account."""
    return f"ssm:{settings.public_key_parameter_prefix}/{job}"


def explain(error, client: str, operation: str) -> FederationError:
    """A boto3 ClientError as one clear sentence naming the client, the call and what to check."""
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", str(error))
    if code in DENIED:
        hint = "check the kickoff role's policy, the external id and the trust of FL-server-notebook"
        return FederationError(f"client {client}: {operation} was denied ({code}: {message}); {hint}")
    if code in THROTTLED:
        return FederationError(
            f"client {client}: {operation} was throttled by AWS ({code}) after {MAX_ATTEMPTS} attempts; try again later"
        )
    return FederationError(f"client {client}: {operation} failed ({code or 'error'}: {message})")


class SageMakerJobs:
    """Training jobs in one client account, through its kickoff session."""

    def __init__(self, client: str, session) -> None:
        self.client = client
        self.sagemaker = session.client("sagemaker", config=boto_config())
        self.ssm = session.client("ssm", config=boto_config())

    def public_key_uri(self, settings: ClientAccountSettings, job: str) -> str:
        return public_key_parameter_uri(settings, job)

    def start(self, request: dict) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.sagemaker.create_training_job(**request)
        except ClientError as error:
            raise explain(error, self.client, "CreateTrainingJob") from None
        except BotoCoreError as error:
            raise FederationError(
                f"client {self.client}: CreateTrainingJob could not reach SageMaker: {error}"
            ) from None
        return request["TrainingJobName"]

    def status(self, name: str) -> tuple[str, str]:
        """(TrainingJobStatus, FailureReason or secondary status)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            job = self.sagemaker.describe_training_job(TrainingJobName=name)
        except (ClientError, BotoCoreError) as error:
            return "Unknown", str(error)
        return job["TrainingJobStatus"], job.get("FailureReason") or job.get("SecondaryStatus", "")

    def stop(self, name: str) -> str | None:
        """Stop a job; the reason if that failed (the caller reports it, and goes on stopping the others)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.sagemaker.stop_training_job(TrainingJobName=name)
        except ClientError as error:
            return str(explain(error, self.client, "StopTrainingJob"))
        except BotoCoreError as error:
            return f"client {self.client}: StopTrainingJob could not reach SageMaker: {error}"
        return None

    def read_public_key(self, uri: str) -> bytes | None:
        """The published key, or None while the job has not published it yet."""
        from botocore.exceptions import BotoCoreError, ClientError

        name = uri.removeprefix("ssm:")
        try:
            return self.ssm.get_parameter(Name=name)["Parameter"]["Value"].encode("ascii")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return None
            raise explain(error, self.client, f"reading the SuperNode public key {name}") from None
        except BotoCoreError as error:
            raise FederationError(f"client {self.client}: reading {name} could not reach SSM: {error}") from None


@dataclass
class KickoffSession:
    """One client account seen through its kickoff role: its settings and its training jobs."""

    name: str
    settings: ClientAccountSettings
    jobs: SageMakerJobs

    @classmethod
    def assume(cls, sts, entry: ClientEntry, region: str, session_name: str) -> KickoffSession:
        """AssumeRole into FL-kickoff-client-job with the external id, then read the client's settings.

        The notebook's own credentials are already an assumed role, so this is role chaining: AWS caps
        the session at one hour. The session renews itself before expiry (botocore refreshable
        credentials), so a run longer than an hour keeps watching and stopping its jobs.
        """
        import boto3
        import botocore.session
        from botocore.credentials import RefreshableCredentials
        from botocore.exceptions import BotoCoreError, ClientError

        name = entry.name

        def fetch() -> dict:
            try:
                credentials = sts.assume_role(
                    RoleArn=entry.kickoff_role_arn,
                    RoleSessionName=session_name[:64],
                    ExternalId=entry.external_id,
                    DurationSeconds=SESSION_SECONDS,
                )["Credentials"]
            except ClientError as error:
                raise explain(error, name, f"sts:AssumeRole on {entry.kickoff_role_arn}") from None
            except BotoCoreError as error:
                raise FederationError(f"client {name}: sts:AssumeRole could not reach STS: {error}") from None
            return {
                "access_key": credentials["AccessKeyId"],
                "secret_key": credentials["SecretAccessKey"],
                "token": credentials["SessionToken"],
                "expiry_time": credentials["Expiration"].isoformat(),
            }

        core = botocore.session.get_session()
        core._credentials = RefreshableCredentials.create_from_metadata(fetch(), fetch, "sts-assume-role")
        session = boto3.Session(botocore_session=core, region_name=region)
        try:
            raw = session.client("ssm", config=boto_config()).get_parameter(Name=entry.settings_parameter)["Parameter"][
                "Value"
            ]
        except ClientError as error:
            raise explain(error, name, f"reading {entry.settings_parameter}") from None
        settings = ClientAccountSettings.from_json(raw, f"client {name}'s settings {entry.settings_parameter}")
        return cls(name, settings, SageMakerJobs(name, session))
