"""What the tests of the local federation share: one CMS split written as CSVs, and ``local`` as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fl_runtime.learning.data import write_csv
from fl_runtime.learning.partition import PartitionSpec, partition
from tests.helpers import PROJECT, in_temp

SEED = 3


def launcher(*args) -> list[str]:
    return [sys.executable, "-m", "fl_runtime", "local", *map(str, args)]


def run_local(folder, *args, timeout: float = 300, faults: str = "") -> subprocess.CompletedProcess:
    """``local`` with ``args``, its temporary files and processes under ``folder``; ``faults`` sets the drop-out
    tests' fault points (``fl_runtime.launch.faults``)."""
    env = {**in_temp(folder), **({"FL_TEST_FAULTS": faults} if faults else {})}
    return subprocess.run(launcher(*args), capture_output=True, text=True, cwd=PROJECT, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def split(cms, tmp_path_factory):
    """Three members' CSVs and the server's test set (non-IID label skew), and the same as data."""
    folder = tmp_path_factory.mktemp("split")
    test, clients = partition(cms, PartitionSpec(3, "non-iid", "label", 1.0, test_fraction=0.2, seed=SEED))
    write_csv(folder / "test.csv", test)
    paths = []
    for name, client in zip(("insurer_a", "insurer_b", "insurer_c"), clients):
        write_csv(folder / f"{name}.csv", client)
        paths.append(folder / f"{name}.csv")
    return folder / "test.csv", paths, test, clients
