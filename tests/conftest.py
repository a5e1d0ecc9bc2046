"""Shared fixtures: the real CMS dataset from ../shared, small synthetic datasets, CSV helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from fl_runtime.data import LABEL, LabelledData, read_csv, write_csv
from fl_runtime.synthetic import generate

PROJECT = Path(__file__).resolve().parent.parent
CMS_CSV = PROJECT.parent / "shared" / "data" / "cms_provider_fraud.csv"


@pytest.fixture(scope="session")
def cms_path() -> Path:
    if not CMS_CSV.is_file():
        pytest.fail(f"{CMS_CSV} is missing: the tests use the curated CMS dataset from ../shared/data")
    return CMS_CSV


@pytest.fixture(scope="session")
def cms(cms_path) -> LabelledData:
    return read_csv(cms_path)


@pytest.fixture(scope="session")
def synthetic() -> LabelledData:
    return generate(3000, seed=7)


def write_rows(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    """A hand-made CSV, for inputs the data module must reject."""
    path.write_text("\n".join([",".join(header), *(",".join(str(c) for c in row) for row in rows)]) + "\n")
    return path


@pytest.fixture(scope="session")
def synthesized_bundle(tmp_path_factory) -> Path:
    """The source.tar.gz that `cdk synth` puts into the cloud assembly (default config)."""
    from stacks.bundle.builder import BUNDLE_NAME
    from tests.cdk_helpers import synthesize

    synthesized = synthesize(tmp_path_factory.mktemp("cdk-bundle"))
    [tarball] = synthesized.outdir.glob(f"asset.*/{BUNDLE_NAME}")
    return tarball


@pytest.fixture
def small_csv(tmp_path, synthetic) -> Path:
    path = tmp_path / "small.csv"
    write_csv(path, synthetic.subset(range(200)))
    return path


__all__ = ["LABEL", "write_rows", "PROJECT", "CMS_CSV"]


@pytest.fixture
def local_aws(monkeypatch):
    """A moto server on 127.0.0.1 behind a recording proxy; boto3 in this process and its children talk to it."""
    import contextlib

    from tests import aws

    with contextlib.ExitStack() as stack:
        recorder, endpoint = aws.start(stack)
        for key, value in aws.boto_env(endpoint).items():
            monkeypatch.setenv(key, value)
        yield recorder, endpoint
