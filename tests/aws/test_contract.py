"""The settings contract: what the stacks publish reads back as the same typed settings, and anything else is
refused naming the document and the field."""

from __future__ import annotations

import dataclasses
import json

import pytest

from fl_runtime.aws.contract import (
    ClientAccountSettings,
    LaunchSettings,
    ServerAccountSettings,
    client_parameter,
    job_name,
    server_parameter,
)
from fl_runtime.errors import BadInput, ConfigError
from tests.rehearsal import client_settings, server_settings


@pytest.fixture
def client():
    return client_settings("insurer-a", "222222222222")


def test_published_settings_read_back_as_the_same_settings(client):
    server = server_settings([client, client_settings("hospital-c", "333333333333")])
    assert ServerAccountSettings.from_json(server.to_json(), "here") == server
    assert ClientAccountSettings.from_json(client.to_json(), "here") == client
    document = json.loads(server.to_json())
    assert isinstance(document["clients"], list) and isinstance(document["clients"][0], dict)  # plain JSON
    assert document["clients"][1]["name"] == "hospital-c" and document["flower_port"] == 9092


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.pop("data_bucket"), "the settings /p: field 'data_bucket' is missing"),
        (
            lambda d: d["launch"].update(max_training_seconds="3600"),
            "field 'launch': field 'max_training_seconds' must be a whole number",
        ),
        (
            lambda d: d["launch"].update(max_training_seconds=True),
            "field 'max_training_seconds' must be a whole number",
        ),
        (lambda d: d["launch"].update(subnet_ids="subnet-0a"), "field 'subnet_ids' must be a list"),
        (lambda d: d["launch"].update(subnet_ids=["subnet-0a", 7]), r"field 'subnet_ids'\[1\] must be a string"),
        (lambda d: d.update(launch="{}"), r"field 'launch': expected a JSON object with the fields client, region"),
    ],
)
def test_a_document_of_another_shape_is_refused_naming_the_field(client, change, message):
    document = client.to_dict()
    change(document)
    with pytest.raises(ConfigError, match=message):
        ClientAccountSettings.from_json(json.dumps(document), "the settings /p")


def test_a_client_entry_of_the_server_settings_is_checked_too(client):
    document = server_settings([client]).to_dict()
    del document["clients"][0]["external_id"]
    with pytest.raises(ConfigError, match=r"server: field 'clients'\[0\]: field 'external_id' is missing"):
        ServerAccountSettings.from_dict(document, "server")
    with pytest.raises(ConfigError, match="server: not JSON"):
        ServerAccountSettings.from_json("{not json", "server")
    with pytest.raises(ConfigError, match="server: expected a JSON object with the fields region, notebook"):
        ServerAccountSettings.from_json("[]", "server")
    assert issubclass(ConfigError, BadInput)  # the command line exits 2 for it


def test_parameter_paths_and_job_names_are_computed_in_one_place():
    assert server_parameter("/fl-fraud") == "/fl-fraud/server/settings"
    assert client_parameter("/fl-fraud", "insurer-a") == "/fl-fraud/client/insurer-a/settings"
    assert client_parameter("/x", "b", "supernode-keys") == "/x/client/b/supernode-keys"
    assert job_name("fl-client", "run1", "insurer-a") == "fl-client-run1-insurer-a"


def test_every_field_has_a_type_the_reader_checks():
    for settings in (ServerAccountSettings, ClientAccountSettings, LaunchSettings):
        for field in dataclasses.fields(settings):
            assert field.type in ("str", "int", "tuple[str, ...]", "tuple[ClientEntry, ...]", "LaunchSettings"), field


def test_a_document_in_parts_joins_back_whole_and_no_cut_splits_the_placeholder():
    from fl_runtime.aws.contract import document_parts, part_parameter, read_document

    placeholder = "arn:aws:kms:us-east-1:222222222222:key/" + "0" * 36
    for offset in range(0, 200, 7):  # the placeholder at every position around the first cut
        text = "x" * (4079 - offset) + placeholder + "y" * 9000
        head, parts = document_parts(text, "0123456789abcdef", whole=placeholder)
        assert all(len(part) <= 4096 and part.startswith("0123456789abcdef\n") for part in parts)
        assert sum(part.count(placeholder) for part in parts) == 1
        values = {"/p": head} | {part_parameter("/p", i): v for i, v in enumerate(parts, 1)}
        assert read_document("/p", values.__getitem__) == text
    assert read_document("/p", {"/p": '{"client":"a"}'}.__getitem__) == '{"client":"a"}'  # one parameter: as it is


def test_parts_of_two_deploys_are_never_joined():
    """A stack update between two reads: the reader reads again, and gives up naming the parameter if it keeps
    changing, rather than join one deploy's part with another's."""
    from fl_runtime.aws.contract import document_parts, part_parameter, read_document
    from fl_runtime.errors import ConfigError

    old_head, old_parts = document_parts("a" * 9000, "1111111111111111")
    new_head, new_parts = document_parts("b" * 9000, "2222222222222222")
    reads = iter([old_head, new_parts[0], new_parts[1], new_parts[2], new_head, *new_parts])
    assert read_document("/p", lambda name: next(reads)) == "b" * 9000
    mixed = {"/p": old_head, part_parameter("/p", 1): old_parts[0], part_parameter("/p", 2): new_parts[1],
             part_parameter("/p", 3): old_parts[2]}  # fmt: skip
    with pytest.raises(ConfigError, match="/p: its parts changed while being read, 3 times"):
        read_document("/p", mixed.__getitem__)
