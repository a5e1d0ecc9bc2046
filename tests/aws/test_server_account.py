"""The server account's side of `federate` against moto: settings, the test set and the outputs, with clear errors."""

from __future__ import annotations

import dataclasses
import json

import boto3
import pytest

from fl_runtime.aws.server_account import AwsServer
from fl_runtime.errors import ConfigError, FederationError
from tests.rehearsal import client_settings, publish_server_settings, server_settings

pytestmark = pytest.mark.slow
SETTINGS = server_settings([], region="us-east-1")


@pytest.fixture
def server(local_aws):
    publish_server_settings(boto3.client("ssm"), SETTINGS)
    return AwsServer("/fl-fraud")


def test_missing_settings_name_the_parameter(local_aws):
    with pytest.raises(FederationError, match="reading /fl-fraud/server/settings failed .*ParameterNotFound"):
        AwsServer("/fl-fraud")


def test_the_settings_are_joined_with_each_clients_entry_from_the_parameters_beside_them(local_aws):
    """One parameter per client: the settings document stays the same size however many members there are."""
    settings = server_settings([client_settings(name, f"{222222222222 + i}") for i, name in
                                enumerate(["insurer-b", "clinic-a", "insurer-c"])], region="us-east-1")  # fmt: skip
    publish_server_settings(boto3.client("ssm"), settings)
    read = AwsServer("/fl-fraud").settings
    assert read == dataclasses.replace(settings, clients=tuple(sorted(settings.clients, key=lambda e: e.name)),
                                       client_count=3)  # fmt: skip
    assert "insurer-b" not in boto3.client("ssm").get_parameter(Name="/fl-fraud/server/settings")["Parameter"]["Value"]


def test_settings_with_their_entries_inline_as_an_earlier_serverstack_published_them_are_read_as_they_are(local_aws):
    settings = server_settings([client_settings("insurer-a", "222222222222")], region="us-east-1")
    boto3.client("ssm").put_parameter(Name="/fl-fraud/server/settings", Value=settings.to_json(), Type="String")
    assert AwsServer("/fl-fraud").settings == settings


def test_a_missing_client_entry_is_named_with_what_the_stack_published(local_aws):
    settings = server_settings([client_settings("insurer-a", "222222222222"), client_settings("insurer-b",
                                "333333333333")], region="us-east-1")  # fmt: skip
    publish_server_settings(boto3.client("ssm"), settings)
    boto3.client("ssm").delete_parameter(Name="/fl-fraud/server/client/insurer-b")
    with pytest.raises(ConfigError, match=r"/fl-fraud/server/settings: ServerStack published 2 client entries, but 1 "
                       r"are under /fl-fraud/server/client/ \(insurer-a\); deploy ServerStack again"):  # fmt: skip
        AwsServer("/fl-fraud")


def test_settings_of_another_shape_name_the_parameter_and_the_field(local_aws):
    document = SETTINGS.to_dict()
    del document["results_bucket"]
    boto3.client("ssm").put_parameter(Name="/fl-fraud/server/settings", Value=json.dumps(document), Type="String")
    with pytest.raises(
        ConfigError, match=r"the server's settings /fl-fraud/server/settings: field 'results_bucket' is missing"
    ):
        AwsServer("/fl-fraud")


def test_a_missing_test_set_names_its_location_and_how_to_stage_it(server, tmp_path):
    boto3.client("s3").create_bucket(Bucket="results")
    with pytest.raises(FederationError, match=r"no test set at s3://results/data/test\.csv .*stage-data --server"):
        server.fetch_test_set(tmp_path / "test.csv")


def test_outputs_are_uploaded_under_the_run_prefix(server, tmp_path):
    boto3.client("s3").create_bucket(Bucket="results")
    (tmp_path / "out" / "logs").mkdir(parents=True)
    (tmp_path / "out" / "metrics.json").write_text("{}")
    (tmp_path / "out" / "logs" / "superlink.log").write_text("log")
    assert server.publish(tmp_path / "out", "run1") == "s3://results/model/run1/"
    listed = boto3.client("s3").list_objects_v2(Bucket="results")["Contents"]
    assert sorted(o["Key"] for o in listed) == ["model/run1/logs/superlink.log", "model/run1/metrics.json"]


def test_a_failed_upload_names_the_file_and_the_destination(server, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "metrics.json").write_text("{}")
    with pytest.raises(
        FederationError, match=r"uploading metrics\.json to s3://results/model/run1/ failed: .*NoSuchBucket"
    ):
        server.publish(tmp_path / "out", "run1")
