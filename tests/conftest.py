"""Shared fixtures: the real CMS dataset from ../shared, small synthetic datasets, the synthesized code
bundle, and a local AWS (moto server). Helpers that are not fixtures live in ``tests/helpers.py``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fl_runtime.launch.flower import IDLE_POLL_ENV
from fl_runtime.learning.data import LabelledData, read_csv, write_csv
from fl_runtime.learning.partition import PartitionSpec, partition
from fl_runtime.learning.synthetic import generate
from tests.helpers import CMS_CSV, PROJECT, PublishedRun, in_temp

# Every federation the tests start (and each process it starts) polls every 0.25 s when idle instead of every 50 ms:
# dozens of idle Flower processes on two cores otherwise spend about 15 % of a run's CPU asking. A launcher setting,
# not the app's (flower.idle_poll): the apps, their hashes and what they compute are the same.
os.environ.setdefault(IDLE_POLL_ENV, "0.25")


# The stack tests' modules share the session fixtures of tests/stacks/conftest.py (eight in-process synths); a session
# fixture is built once per worker, so on four workers with one module each (--dist loadfile) they were built up to
# four times (tests/stacks alone: 260 s of CPU on four workers, 155 s on one). They go to one worker, as one unit; the
# stack modules that build their own synths, and the notebook install, go to the others as before.
SHARED_SYNTH_MODULES = "tests/stacks/"
OWN_SYNTH_MODULES = ("tests/stacks/test_bundle.py", "tests/stacks/test_cdk_cli.py", "tests/stacks/test_limits.py")
# The longest units first (each 1.5 to 4 minutes in make test, from --durations): xdist hands out units by their number
# of tests, which put these few-test, long modules last, where they ran on while the other workers had finished.
# Only the order: every module runs either way, and a module missing here only starts later.
LONGEST_FIRST = (
    "tests/aws/test_federate_failures.py",
    SHARED_SYNTH_MODULES,
    "tests/launch/test_local_trees.py",
    "tests/launch/test_local_dropouts.py",
    "tests/launch/test_local.py",
    "tests/aws/test_federate.py",
    "tests/stacks/test_cdk_cli.py",
    "tests/aws/test_container_rehearsal.py",
    "tests/stacks/test_bundle.py",
    "tests/learning/test_compare.py",
    "tests/aws/test_inference.py",
    "tests/learning/test_scoring.py",
)


def work_unit(module: str) -> str:
    shared = module.startswith(SHARED_SYNTH_MODULES) and module not in OWN_SYNTH_MODULES
    return SHARED_SYNTH_MODULES if shared else module


def pytest_collection_modifyitems(items):
    """Every worker collects the same order: the longest units first, the rest as collected."""
    rank = {unit: index for index, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid.split("::")[0]), len(LONGEST_FIRST)))


def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile``, except that the modules sharing the deployment synths are one unit of work (xdist's own
    ``loadgroup`` would do this through marks, but does not group on pytest 9.2: pytest-dev/pytest-xdist#1386), and
    units are handed out in the collected order (LONGEST_FIRST) rather than by their number of tests."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedSynthsTogether(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(super()._split_scope(nodeid))

    config.option.loadscopereorder = False
    return SharedSynthsTogether(config, log)


@pytest.fixture(autouse=True)
def leaves_ctrl_c_as_it_found_it():
    """Fails the test that changes how the worker process takes Ctrl-C (its SIGINT handler or mask): processes
    the later tests start inherit an ignored or blocked SIGINT, and their Ctrl-C tests would then hang."""
    before = signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, set())
    yield
    after = signal.getsignal(signal.SIGINT), signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert after == before, f"this test changed the worker's SIGINT handling from {before} to {after}"


@pytest.fixture(scope="session")
def cms_path() -> Path:
    if not CMS_CSV.is_file():
        pytest.fail(f"{CMS_CSV} is missing: the tests use the curated CMS dataset from ../shared/data")
    return CMS_CSV


@pytest.fixture(scope="session")
def cms(cms_path) -> LabelledData:
    return read_csv(cms_path)


@pytest.fixture(scope="session")
def cms_missing(cms) -> LabelledData:
    """The CMS rows with missing values as claims extracts have them: 10 % of the cells of every feature empty,
    and in one payment feature missing far more often among the frauds (a missing value that says something)."""
    import numpy as np

    rng = np.random.default_rng(11)
    X = cms.X.copy()
    X[rng.random(X.shape) < 0.10] = np.nan
    telling = cms.features.index("total_drug_cost_sum")
    X[(cms.y == 1) & (rng.random(cms.n_rows) < 0.6), telling] = np.nan
    return LabelledData(cms.features, X, cms.y, "cms-with-missing")


@pytest.fixture(scope="session")
def synthetic() -> LabelledData:
    return generate(3000, seed=7)


@pytest.fixture(scope="session")
def published_run(cms, tmp_path_factory) -> PublishedRun:
    """One real local federation (SuperLink, two SuperNodes, TLS; two rounds on a CMS split): the cheapest run
    that publishes a model as users receive it. Built once per session, for the tests that score with it."""
    folder = tmp_path_factory.mktemp("published-run")
    test, clients = partition(cms, PartitionSpec(2, seed=1))
    write_csv(folder / "test.csv", test)
    client_paths = [folder / f"client_{number}.csv" for number in (1, 2)]
    for path, client in zip(client_paths, clients):
        write_csv(path, client)
    out = folder / "run"
    command = ["local", "--client-data", *client_paths, "--test-data", folder / "test.csv", "--rounds", 2, "--out", out]
    done = subprocess.run(
        [sys.executable, "-m", "fl_runtime", *map(str, command)],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        timeout=600,
        env=in_temp(folder),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return PublishedRun(out, folder / "test.csv")


@pytest.fixture(scope="session")
def synthesized_bundle(tmp_path_factory) -> Path:
    """The source.tar.gz that `cdk synth` puts into the cloud assembly (default config)."""
    from stacks.bundle.builder import BUNDLE_NAME
    from tests.stacks.cdk_helpers import synthesize

    synthesized = synthesize(tmp_path_factory.mktemp("cdk-bundle"), stage_assets=True)
    [tarball] = synthesized.outdir.glob(f"asset.*/{BUNDLE_NAME}")
    return tarball


@pytest.fixture
def small_csv(tmp_path, synthetic) -> Path:
    path = tmp_path / "small.csv"
    write_csv(path, synthetic.subset(range(200)))
    return path


@pytest.fixture
def local_aws(monkeypatch):
    """A moto server on 127.0.0.1 behind a recording proxy; boto3 in this process and its children talk to it."""
    from tests import aws_emulator

    with contextlib.ExitStack() as stack:
        recorder, endpoint = aws_emulator.start(stack)
        for key, value in aws_emulator.boto_env(endpoint).items():
            monkeypatch.setenv(key, value)
        yield recorder, endpoint
