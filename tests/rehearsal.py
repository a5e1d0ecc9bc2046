"""Building a rehearsal: folders standing in for each account's buckets, settings as the stacks publish them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from fl_runtime.aws.contract import (
    PINS,
    ClientAccountSettings,
    ClientEntry,
    LaunchSettings,
    ServerAccountSettings,
    client_parameter,
    server_client_parameter,
    server_parameter,
)
from fl_runtime.aws.server_account import RehearsalServer
from fl_runtime.launch.fab import app_content_hash
from fl_runtime.launch.local import member_pins
from fl_runtime.learning.data import LabelledData, write_csv
from fl_runtime.learning.task import ClientData
from stacks.bundle.builder import BUNDLE_NAME, ENTRY_POINT, bundle_files, write_tarball

PREFIX = "/fl-fraud"
# SageMaker's scikit-learn image: the client jobs train in it, the registered model is served by it
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-py312-cpu-py3"


def slim_bundle(path: Path) -> Path:
    """The code bundle without its wheels, for jobs that run in this project's virtualenv."""
    write_tarball(path, bundle_files(None))
    return path


def client_settings(
    name: str,
    account: str,
    *,
    port: int = 9092,
    server_vpc_cidr: str = "127.0.0.0/8",
    region: str = "us-east-1",
    private_name: str = "",
) -> ClientAccountSettings:
    """What a client stack publishes in SSM (buckets named per client); its launcher accepts a SuperLink in
    ``server_vpc_cidr`` on ``port`` and approves the app this runtime ships; through PrivateLink
    (``private_name``) its jobs dial that name instead, and it accepts no address."""
    launch = LaunchSettings(
        client=name,
        region=region,
        training_job_prefix="fl-client",
        training_image=SKLEARN_IMAGE,
        source_uri=f"s3://code-{name}/code/{BUNDLE_NAME}",
        entry_point=ENTRY_POINT,
        execution_role_arn=f"arn:aws:iam::{account}:role/TrainingExecutionRole",
        subnet_ids=("subnet-0a", "subnet-0b"),
        training_security_group_id="sg-0training",
        training_instance_type="ml.m5.large",
        volume_size_gb=30,
        data_key_arn=f"arn:aws:kms:us-east-1:{account}:key/1234",
        data_uri=f"s3://data-{name}/data_prep/",
        output_uri=f"s3://artifacts-{name}/client_artifact/",
        max_training_seconds=3600,
        max_jobs_per_day=10,
        connect_seconds=120,
        public_key_parameter_prefix=client_parameter(PREFIX, name, "supernode-keys"),
        server_vpc_cidr=server_vpc_cidr,
        flower_port=port,
        approved_app_hashes=(app_content_hash(),),
        pins_parameter=client_parameter(PREFIX, name, PINS),
        superlink_dns_name=private_name,
    )
    return ClientAccountSettings(
        client=name,
        account=account,
        kickoff_role_arn=f"arn:aws:iam::{account}:role/FL-kickoff-client-job",
        external_id=f"fl-{name}-x1",
        launcher_arn=f"arn:aws:lambda:us-east-1:{account}:function:fl-launcher-{name}",
        code_bucket=f"code-{name}",
        data_bucket=f"data-{name}",
        data_prefix="data_prep/",
        artifact_bucket=f"artifacts-{name}",
        artifact_prefix="client_artifact/",
        notebook=f"fl-client-{name}",
        vpc_id=f"vpc-{name}",
        route_table_ids=(f"rtb-{name}-a", f"rtb-{name}-b"),
        launch=launch,
    )


def server_settings(
    clients: list[ClientAccountSettings], *, port: int = 9092, region: str = "local", private_name: str = ""
) -> ServerAccountSettings:
    """What ServerStack publishes in SSM for these clients (through PrivateLink with ``private_name``)."""
    entries = tuple(
        ClientEntry(
            name=c.client,
            account=c.account,
            kickoff_role_arn=c.kickoff_role_arn,
            external_id=c.external_id,
            settings_parameter=client_parameter(PREFIX, c.client),
            vpc_cidr=f"10.{index}.0.0/16",
            peering_connection_id=f"pcx-{c.client}",
            training_security_group_id=c.launch.training_security_group_id,
        )
        for index, c in enumerate(clients, start=1)
    )
    return ServerAccountSettings(
        region=region,
        notebook="fl-server",
        flower_port=port,
        server_vpc_cidr="127.0.0.0/8",
        results_bucket="results",
        test_prefix="data/",
        model_prefix="model/",
        source_uri="",
        vpc_id="vpc-server",
        route_table_ids=("rtb-server-a", "rtb-server-b"),
        notebook_security_group_id="sg-0server",
        data_key_arn="arn:aws:kms:us-east-1:111111111111:key/server-data-key",
        model_package_group="fl-fraud-global-model",
        inference_image=SKLEARN_IMAGE,
        clients=entries,
        **(PRIVATELINK_SERVER | {"superlink_dns_name": private_name} if private_name else {}),
    )


# what ServerStack publishes of its Fleet service (network privatelink) besides the name
PRIVATELINK_SERVER = {
    "network": "privatelink",
    "endpoint_service_id": "vpce-svc-0123456789abcdef0",
    "target_group_arn": "arn:aws:elasticloadbalancing:us-east-1:111111111111:targetgroup/fleet/0123456789abcdef",
}


def rehearsal(
    folder: Path,
    test: LabelledData,
    clients: dict[str, LabelledData],
    *,
    seed: int = 0,
    port: int,
    python: str = sys.executable,
    bundle: Path | None = None,
    install_requirements: bool = False,
    min_members: int | None = None,
    private_name: str = "",
) -> Path:
    """A rehearsal description: staged data (split like stage-data does), code bundles, settings, and each
    member's identity key and pins (k: ``min_members``, default every member) where its job reads them.
    ``private_name``: through PrivateLink, the name every member's jobs dial (its VPC would answer it with its own
    endpoint; here it must resolve to the address federate listens on)."""
    buckets = {"results": folder / "results"}
    pins = member_pins(list(clients), folder / "identities", min_members or len(clients), seed)
    write_csv(buckets["results"] / "data" / "test.csv", test)
    settings = []
    for index, (name, data) in enumerate(clients.items(), start=1):
        entry = client_settings(name, f"{index + 1}" * 12, port=port, private_name=private_name)
        for bucket in (entry.code_bucket, entry.data_bucket, entry.artifact_bucket):
            buckets[bucket] = folder / bucket
        split = ClientData.split(data, seed=seed)
        write_csv(buckets[entry.data_bucket] / "data_prep" / "train.csv", split.train)
        write_csv(buckets[entry.data_bucket] / "data_prep" / "validation.csv", split.validation)
        code = buckets[entry.code_bucket] / "code" / BUNDLE_NAME
        code.parent.mkdir(parents=True, exist_ok=True)
        if bundle is not None:  # the real bundle (its wheels install in the job), e.g. the synthesized one
            code.write_bytes(bundle.read_bytes())
        else:
            slim_bundle(code)
        settings.append(entry)
        stand_in = folder / "jobs" / "ssm" / entry.launch.pins_parameter.lstrip("/")  # LocalJobs' SSM
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_bytes(pins[name].read_bytes())
    return RehearsalServer.describe(
        folder / "rehearsal.json",
        server=server_settings(settings, port=port, private_name=private_name),
        clients=settings,
        buckets=buckets,
        jobs_folder=folder / "jobs",
        python=python,
        install_requirements=install_requirements,
    )


def publish_server_settings(ssm, settings: ServerAccountSettings, prefix: str = "/fl-fraud") -> None:
    """Into (moto's) SSM as ServerStack publishes them: the settings, then each client's entry beside them."""
    published = {server_parameter(prefix): json.dumps(settings.published())}
    published.update({server_client_parameter(prefix, entry.name): entry.to_json() for entry in settings.clients})
    for name, value in published.items():
        ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)
