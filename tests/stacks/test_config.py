"""The federation config: read once from the CDK context, every mistake named by its field."""

from __future__ import annotations

import copy
import json

import pytest

from stacks.config import ConfigError, parse
from tests.stacks.cdk_helpers import THREE_CLIENTS, default_context, generated_members


@pytest.fixture
def raw() -> dict:
    context = default_context()
    return {key.split(":", 1)[1]: value for key, value in context.items() if key.startswith("federation:")}


def test_the_defaults_in_cdk_json_are_a_valid_one_client_federation(raw):
    config = parse(raw)
    assert config.server_account == "111111111111" and config.clients[0].external_id.endswith(
        "change-me"
    )  # sample values
    assert [c.name for c in config.clients] == ["client-a"]
    assert config.training_image.python_version == "3.12" and "1.4-2-py312" in config.training_image.uri
    assert config.clients[0].kickoff_role_arn == "arn:aws:iam::222222222222:role/FL-kickoff-client-job"


def test_three_clients_parse(raw):
    raw["clients"] = THREE_CLIENTS
    assert [c.account for c in parse(raw).clients] == ["222222222222", "333333333333", "444444444444"]


def _with(raw, path, value):
    changed = copy.deepcopy(raw)
    target = changed
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


_DELETE = object()


@pytest.mark.parametrize(
    "path, value, message",
    [
        (["server_account"], "12345", "server_account: '12345' is not a 12-digit AWS account id"),
        (["server_account"], _DELETE, "server_account: missing"),
        (["region"], "mars-1", "region: 'mars-1' is not an AWS region"),
        (["availability_zones"], ["eu-west-1a", "eu-west-1b"], "availability_zones: "),
        (
            ["availability_zones"],
            ["us-east-1a", "us-east-1a"],
            "availability_zones: ['us-east-1a', 'us-east-1a'] must list at least two different zones",
        ),
        (["availability_zones"], ["us-east-1a", "us-east-12b"], "availability_zones: "),
        (
            ["server_vpc_cidr"],
            "10.0.0.0/24",
            "server_vpc_cidr: 10.0.0.0/24 cannot hold a /24 subnet in each of the 2 availability zones",
        ),
        (
            ["clients", 0, "vpc_cidr"],
            "10.1.0.0/24",
            "clients[0].vpc_cidr: 10.1.0.0/24 cannot hold a /24 subnet in each of the 2 availability zones",
        ),
        (["server_vpc_cidr"], "10.0.0.0/33", "server_vpc_cidr: '10.0.0.0/33' is not an IPv4 CIDR block"),
        (["server_vpc_cidr"], "8.8.0.0/16", "server_vpc_cidr: 8.8.0.0/16 must be a private range"),
        (
            ["clients", 0, "vpc_cidr"],
            "10.0.128.0/20",
            "clients[0].vpc_cidr: 10.0.128.0/20 overlaps server_vpc_cidr 10.0.0.0/16",
        ),
        (["clients", 0, "account"], "2222", "clients[0].account: '2222' is not a 12-digit AWS account id"),
        (
            ["clients", 0, "account"],
            "111111111111",
            "clients[0].account: 111111111111 is already the server's or another client's account",
        ),
        (["clients", 0, "name"], "Client A", "clients[0].name: 'Client A' is not a short name"),
        (["clients", 0, "external_id"], _DELETE, "clients[0].external_id: missing"),
        (["clients"], [], "clients: expected a non-empty list"),
        (["flower_port"], 80, "flower_port: 80 is not a whole number from 1024 to 65535"),
        (
            ["notebook_instance_type"],
            "t3.medium",
            "notebook_instance_type: 't3.medium' is not a SageMaker instance type",
        ),
        (
            ["training_image", "python_version"],
            "3.10",
            "training_image.python_version: '3.10': flwr 1.42 needs Python 3.11 or newer",
        ),
        (["training_image", "uri"], "sklearn:latest", "training_image.uri: 'sklearn:latest' is not an ECR image URI"),
        (["inference_image"], "sklearn:latest", "inference_image: 'sklearn:latest' is not an ECR image URI"),
        (["inference_image"], _DELETE, "inference_image: missing"),
        (["retain_data"], "no", "retain_data: 'no' is not true or false"),
        (
            ["deployment_mode"],
            "shared",
            "deployment_mode: 'shared' is not one of separate-organisations, one-organisation",
        ),
        (
            ["clients", 0, "peering_connection_id"],
            "vpc-123",
            "clients[0].peering_connection_id: 'vpc-123' is not a VPC peering connection id (pcx-...)",
        ),
        (["parameter_prefix"], "fl", "parameter_prefix: 'fl' is not an SSM parameter path"),
        (["clients", 0, "max_jobs_per_day"], 0, "clients[0].max_jobs_per_day: 0 is not a whole number from 1 to 1000"),
        (["clients", 0, "max_jobs_per_day"], 1001, "clients[0].max_jobs_per_day: 1001 is not a whole number from 1 to"),
        (["clients", 0, "max_jobs_per_day"], "10", "clients[0].max_jobs_per_day: '10' is not a whole number from 1"),
        (["clients", 0, "max_jobs_per_day"], 2.5, "clients[0].max_jobs_per_day: 2.5 is not a whole number from 1"),
        (["clients", 0, "max_jobs_per_day"], True, "clients[0].max_jobs_per_day: True is not a whole number from 1"),
        (
            ["clients", 0, "account"],
            "210987654321",
            "clients[0].external_id: 'fl-fraud-client-a-change-me' is the sample value; agree a unique one with "
            "client 'client-a' (account 210987654321)",
        ),
        (
            ["training_job_prefix"],
            "federated-fraud-detection-client-jobs",
            "training_job_prefix: 'federated-fraud-detection-client-jobs' with clients[0].name 'client-a' leaves no "
            "room",
        ),
    ],
)
def test_invalid_settings_are_refused_naming_the_field(raw, path, value, message):
    with pytest.raises(ConfigError) as error:
        parse(_with(raw, path, value))
    assert message in str(error.value)


def test_two_clients_with_overlapping_cidrs_or_the_same_name_are_refused(raw):
    raw["clients"] = copy.deepcopy(THREE_CLIENTS)
    raw["clients"][2]["vpc_cidr"] = "10.2.4.0/22"
    with pytest.raises(
        ConfigError, match=r"clients\[2\].vpc_cidr: 10.2.4.0/22 overlaps clients\[1\].vpc_cidr 10.2.0.0/16"
    ):
        parse(raw)
    raw["clients"] = copy.deepcopy(THREE_CLIENTS)
    raw["clients"][1]["name"] = "insurer-a"
    with pytest.raises(ConfigError, match=r"clients\[1\].name: 'insurer-a' is used by another client"):
        parse(raw)


def test_context_overrides_are_json_decoded_per_field(tmp_path):
    import aws_cdk as cdk

    from stacks.config import from_context

    context = default_context()
    context["federation:clients"] = json.dumps(THREE_CLIENTS)  # what `-c federation:clients='[...]'` gives
    context["federation:flower_port"] = "9443"
    config = from_context(cdk.App(context=context).node)
    assert len(config.clients) == 3 and config.flower_port == 9443
    overrides = tmp_path / "federation.json"
    two = [dict(client, min_members=2) for client in THREE_CLIENTS[:2]]
    overrides.write_text(json.dumps({"server_account": "999999999999", "clients": two}))
    context = default_context()
    context["federation-file"] = str(overrides)
    config = from_context(cdk.App(context=context).node)
    assert config.server_account == "999999999999" and len(config.clients) == 2
    overrides.write_text(json.dumps({"sever_account": "999999999999"}))
    with pytest.raises(ConfigError, match="unknown field 'sever_account'"):
        from_context(cdk.App(context=context).node)


@pytest.mark.parametrize(
    "region, expected", [("us-east-1", "aws"), ("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov")]
)
def test_role_arns_carry_the_partition_of_the_region(raw, region, expected):
    raw["region"], raw["availability_zones"] = region, [f"{region}a", f"{region}b"]
    config = parse(raw)
    assert config.clients[0].kickoff_role_arn == f"arn:{expected}:iam::222222222222:role/FL-kickoff-client-job"
    assert config.server_notebook_role_arn == f"arn:{expected}:iam::111111111111:role/FL-server-notebook"


def test_claims_data_is_retained_unless_the_config_says_otherwise_and_one_organisation_is_the_default(raw):
    del raw["retain_data"], raw["deployment_mode"]
    config = parse(raw)
    assert config.retain_data is True and not config.separate_organisations
    assert parse(dict(raw, retain_data=False, deployment_mode="separate-organisations")).separate_organisations


def test_a_clients_daily_job_limit_is_its_own_and_defaults_to_the_runtimes(raw):
    from fl_runtime import defaults

    raw["clients"] = copy.deepcopy(THREE_CLIENTS)
    raw["clients"][1]["max_jobs_per_day"] = 3
    assert [c.max_jobs_per_day for c in parse(raw).clients] == [defaults.MAX_JOBS_PER_DAY, 3, defaults.MAX_JOBS_PER_DAY]


def test_more_clients_than_the_server_vpcs_peering_quota_are_refused_naming_the_quota(raw):
    raw["clients"] = generated_members(51)
    with pytest.raises(ConfigError, match=r"clients: 51 clients need 51 VPC peering connections of the server VPC, "
                       r"more than peering_quota 50 \(Amazon VPC's quota .*: 50 by default, at most 125"):  # fmt: skip
        parse(raw)
    raw["peering_quota"] = 60  # raised with AWS first
    assert parse(raw).peering_quota == 60
    raw["peering_quota"] = 126
    with pytest.raises(ConfigError, match="peering_quota: 126 is not a whole number from 1 to 125"):
        parse(raw)
    raw["clients"], raw["peering_quota"] = generated_members(50), None
    assert len(parse(raw).clients) == 50
