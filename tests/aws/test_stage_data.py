"""stage-data against a moto server: validated data lands under data_prep/ (or data/), bad data never leaves."""

from __future__ import annotations

import os
import subprocess
import sys

import boto3
import pytest

from fl_runtime.learning.data import LABEL, read_csv, write_csv
from tests import aws_emulator as aws
from tests.helpers import PROJECT, write_rows
from tests.rehearsal import client_settings, server_settings

pytestmark = pytest.mark.slow


@pytest.fixture
def local_aws(local_aws):
    """moto with what the stacks publish: the settings in SSM and the empty buckets."""
    settings = client_settings("insurer-a", "123456789012")
    boto3.client("ssm").put_parameter(
        Name="/fl-fraud/client/insurer-a/settings", Value=settings.to_json(), Type="String"
    )
    server = server_settings([settings], region="us-east-1")
    boto3.client("ssm").put_parameter(Name="/fl-fraud/server/settings", Type="String", Value=server.to_json())
    for bucket in ("data-insurer-a", "results"):
        boto3.client("s3").create_bucket(Bucket=bucket)
    return local_aws


def stage(endpoint, *args):
    return subprocess.run(
        [sys.executable, "-m", "fl_runtime", "stage-data", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env={**os.environ, **aws.boto_env(endpoint)},
        timeout=120,
    )


def keys(bucket: str) -> list[str]:
    return sorted(o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=bucket).get("Contents", []))


def download(bucket: str, key: str, tmp_path):
    target = tmp_path / key.replace("/", "_")
    boto3.client("s3").download_file(bucket, key, str(target))
    return read_csv(target)


def test_a_clients_data_lands_split_under_data_prep_in_its_data_bucket(local_aws, tmp_path, synthetic):
    _, endpoint = local_aws
    write_csv(tmp_path / "claims.csv", synthetic)
    done = stage(endpoint, "--client", "insurer-a", "--data", tmp_path / "claims.csv")
    assert done.returncode == 0, done.stderr
    assert keys("data-insurer-a") == ["data_prep/train.csv", "data_prep/validation.csv"]
    train, validation = (
        download("data-insurer-a", "data_prep/train.csv", tmp_path),
        download("data-insurer-a", "data_prep/validation.csv", tmp_path),
    )
    assert train.n_rows + validation.n_rows == synthetic.n_rows
    assert validation.n_positive / validation.n_rows == pytest.approx(synthetic.n_positive / synthetic.n_rows, abs=0.01)
    assert "staged s3://data-insurer-a/data_prep/train.csv" in done.stdout


def test_the_server_test_set_lands_under_data_in_the_results_bucket(local_aws, tmp_path, synthetic):
    _, endpoint = local_aws
    write_csv(tmp_path / "test.csv", synthetic.subset(range(500)))
    done = stage(endpoint, "--server", "--data", tmp_path / "test.csv")
    assert done.returncode == 0, done.stderr
    assert keys("results") == ["data/test.csv"]
    assert download("results", "data/test.csv", tmp_path).n_rows == 500


def test_a_bad_csv_is_refused_naming_the_cell_and_nothing_is_uploaded(local_aws, tmp_path, synthetic):
    _recorder, endpoint = local_aws
    rows = [[0, *synthetic.X[i]] for i in range(100)]
    rows[41][3] = "n/a"
    bad = write_rows(tmp_path / "bad.csv", [LABEL, *synthetic.features], rows)
    done = stage(endpoint, "--client", "insurer-a", "--data", bad)
    assert done.returncode == 2
    assert f"{bad}: column '{synthetic.features[2]}', line 43: 'n/a' is not a number" in done.stderr
    assert keys("data-insurer-a") == []
    one_class = write_rows(
        tmp_path / "one_class.csv", [LABEL, *synthetic.features], [[0, *synthetic.X[i]] for i in range(100)]
    )
    done = stage(endpoint, "--client", "insurer-a", "--data", one_class)
    assert done.returncode == 2 and "has only one class" in done.stderr
    assert keys("data-insurer-a") == []


def test_a_staged_dataset_is_replaced_only_when_asked(local_aws, tmp_path, synthetic):
    _, endpoint = local_aws
    write_csv(tmp_path / "first.csv", synthetic.subset(range(1000)))
    write_csv(tmp_path / "second.csv", synthetic.subset(range(1000, 2000)))
    assert stage(endpoint, "--client", "insurer-a", "--data", tmp_path / "first.csv").returncode == 0
    before = download("data-insurer-a", "data_prep/train.csv", tmp_path).X
    done = stage(endpoint, "--client", "insurer-a", "--data", tmp_path / "second.csv")
    assert (
        done.returncode == 2
        and "s3://data-insurer-a/data_prep/train.csv: a dataset is already staged; pass --overwrite" in done.stderr
    )
    assert (before == download("data-insurer-a", "data_prep/train.csv", tmp_path).X).all()
    assert stage(endpoint, "--client", "insurer-a", "--data", tmp_path / "second.csv", "--overwrite").returncode == 0
    assert not (before == download("data-insurer-a", "data_prep/train.csv", tmp_path).X).all()


def test_a_failed_upload_leaves_no_half_staged_dataset(local_aws, tmp_path, synthetic):
    recorder, endpoint = local_aws
    recorder.rules.append(
        lambda c: (403, {}) if c.method == "PUT" and c.path.endswith("/data_prep/validation.csv") else None
    )
    write_csv(tmp_path / "claims.csv", synthetic)
    done = stage(endpoint, "--client", "insurer-a", "--data", tmp_path / "claims.csv")
    assert done.returncode == 1
    assert (
        "uploading to s3://data-insurer-a/data_prep/ failed" in done.stderr
        and "nothing of this attempt is left staged" in done.stderr
    )
    assert [c.method for c in recorder.calls if c.path.endswith("/data_prep/train.csv")] == ["PUT", "DELETE"]
    assert keys("data-insurer-a") == []


def test_whose_data_it_is_must_be_said():
    done = subprocess.run(
        [sys.executable, "-m", "fl_runtime", "stage-data", "--data", "x.csv"],
        capture_output=True,
        text=True,
        cwd=PROJECT,
    )
    assert done.returncode == 2 and "--client" in done.stderr
