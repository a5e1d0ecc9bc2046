"""What the `federate` tests share: one CMS split among three client accounts, and `federate` as a user runs it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fl_runtime.learning.partition import PartitionSpec, partition
from tests.helpers import PROJECT, as_a_shell_starts_it

NAMES = ("insurer-a", "insurer-b", "hospital-c")


@pytest.fixture(scope="module")
def split(cms):
    test, clients = partition(cms, PartitionSpec(3, "non-iid", "label", 1.0, test_fraction=0.2, seed=5))
    return test, dict(zip(NAMES, clients))


def federate(description, out, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fl_runtime",
            "federate",
            "--rehearsal",
            str(description),
            "--address",
            "127.0.0.1",
            "--connect-timeout",
            "120",
            "--out",
            str(out),
            *map(str, args),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=PROJECT,
        preexec_fn=as_a_shell_starts_it,
    )
