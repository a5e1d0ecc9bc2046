"""The code bundle installs with no index at all: on the notebooks' Python here, and resolves for the training
image's."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from fl_runtime.errors import BundleError
from stacks.bundle import builder
from stacks.bundle.builder import ENTRY_POINT, NOTEBOOK, Target, bundle_targets, manylinux_tags, write_tarball
from stacks.config import TrainingImage
from tests.helpers import PROJECT

pytestmark = pytest.mark.slow


def isolated_pip_env() -> dict[str, str]:
    """pip with no configuration: this machine's pip.conf and PIP_* variables point at extra wheel sources."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory, synthesized_bundle) -> Path:
    """The source.tar.gz that synth put into the cloud assembly, unpacked like /opt/ml/code."""
    target = tmp_path_factory.mktemp("code")
    with tarfile.open(synthesized_bundle) as archive:
        archive.extractall(target, filter="data")
    return target


def test_the_bundle_holds_the_entry_point_runtime_offline_requirements_and_wheels(unpacked):
    assert (unpacked / ENTRY_POINT).is_file()
    # the whole runtime, package by package, exactly as in the repository
    shipped = {p.relative_to(unpacked).as_posix() for p in (unpacked / "fl_runtime").rglob("*.py")}
    sources = {
        p.relative_to(PROJECT).as_posix()
        for p in (PROJECT / "fl_runtime").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert (
        shipped == sources and "fl_runtime/aws/sagemaker_client.py" in shipped and "fl_runtime/__main__.py" in shipped
    )
    assert all((unpacked / name).read_bytes() == (PROJECT / name).read_bytes() for name in shipped)
    requirements = (unpacked / "requirements.txt").read_text().splitlines()
    assert requirements[:2] == ["--no-index", "--find-links wheels"]
    assert {"flwr==1.42.0", "scikit-learn==1.4.2", "imbalanced-learn==0.14.2", "numpy==2.1.0"} <= set(requirements)
    wheels = {p.name for p in (unpacked / "wheels").glob("*.whl")}
    assert any(name.startswith("scikit_learn-1.4.2-cp311") for name in wheels)
    assert any(name.startswith("scikit_learn-1.4.2-cp312") for name in wheels)


def test_the_training_images_python_and_platform_resolve_the_job_requirements_from_the_bundled_wheels_alone(
    unpacked, tmp_path
):
    [_, image] = builder.configured_targets()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-index",
            *image.pip_arguments(),
            "--target",
            str(tmp_path / "target"),
            "-r",
            "requirements.txt",
        ],
        cwd=unpacked,
        capture_output=True,
        text=True,
        env=isolated_pip_env(),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Would install" in done.stdout and "flwr-1.42.0" in done.stdout


def test_the_notebook_install_script_builds_a_working_virtualenv_offline(unpacked, tmp_path):
    done = subprocess.run(
        ["bash", str(unpacked / "notebook" / "install.sh"), str(unpacked), str(tmp_path / "fl-venv")],
        capture_output=True,
        text=True,
        env=isolated_pip_env(),
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = subprocess.run(
        [tmp_path / "fl-venv" / "bin" / "python", "-m", "fl_runtime", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert run.returncode == 0 and "prepare-data" in run.stdout


def test_tarballs_are_byte_for_byte_reproducible(tmp_path):
    files = {"b.txt": b"second", "a/run.sh": b"#!/bin/sh\n", "a/x.py": b"print(1)\n"}
    write_tarball(tmp_path / "one.tar.gz", files)
    write_tarball(tmp_path / "two.tar.gz", dict(reversed(list(files.items()))))
    assert (tmp_path / "one.tar.gz").read_bytes() == (tmp_path / "two.tar.gz").read_bytes()
    with tarfile.open(tmp_path / "one.tar.gz") as archive:
        members = archive.getmembers()
    assert [m.name for m in members] == ["a/run.sh", "a/x.py", "b.txt"]
    assert all(m.mtime == 0 and m.uid == m.gid == 0 and m.uname == "" for m in members)
    assert [oct(m.mode) for m in members] == ["0o755", "0o644", "0o644"]
    assert builder.configured().digest == builder.configured().digest


def test_manylinux_tags_cover_every_older_glibc_as_pip_would():
    assert manylinux_tags("manylinux2014_x86_64") == (
        "manylinux_2_17_x86_64",
        "manylinux_2_16_x86_64",
        "manylinux_2_15_x86_64",
        "manylinux_2_14_x86_64",
        "manylinux_2_13_x86_64",
        "manylinux_2_12_x86_64",
        "manylinux_2_11_x86_64",
        "manylinux_2_10_x86_64",
        "manylinux_2_9_x86_64",
        "manylinux_2_8_x86_64",
        "manylinux_2_7_x86_64",
        "manylinux_2_6_x86_64",
        "manylinux_2_5_x86_64",
        "manylinux1_x86_64",
        "manylinux2010_x86_64",
        "manylinux2014_x86_64",
    )
    assert manylinux_tags("manylinux_2_28_aarch64")[
        0
    ] == "manylinux_2_28_aarch64" and "manylinux2014_aarch64" in manylinux_tags("manylinux_2_28_aarch64")


def test_the_bundle_serves_the_configured_training_image_besides_the_notebooks():
    training = Target("3.12", manylinux_tags("manylinux_2_28_x86_64"), "training")
    assert bundle_targets(TrainingImage("image", "3.12", "manylinux_2_28_x86_64")) == (NOTEBOOK, training)
    assert bundle_targets(TrainingImage("image", NOTEBOOK.python_version, "manylinux_2_34_x86_64")) == (
        NOTEBOOK,
    )  # its set covers training


def test_the_cache_keeps_only_the_most_recently_used_bundles_and_wheel_sets_and_drops_killed_builds(tmp_path):
    from stacks.bundle.builder import prune_cache

    for age, name in enumerate(["source-a", "source-b", "source-c", "source-d", "wheels-a", "wheels-b"]):
        folder = tmp_path / name
        folder.mkdir()
        os.utime(folder, (1_000_000 - age * 100, 1_000_000 - age * 100))  # "a" used most recently
    (tmp_path / ".source-killed-build").mkdir()
    removed = prune_cache(tmp_path, keep=2)
    assert sorted(p.name for p in removed) == [".source-killed-build", "source-c", "source-d"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source-a", "source-b", "wheels-a", "wheels-b"]


def test_the_builder_command_names_the_bundle_it_built_and_a_failure_exits_non_zero(capsys, monkeypatch):
    assert builder.main() == 0
    assert capsys.readouterr().out.startswith(f"code bundle {builder.configured().digest[:16]}: ")

    def offline():
        raise BundleError("pip download failed: no route to pypi.org")

    monkeypatch.setattr(builder, "configured", offline)
    assert builder.main() == 1
    assert capsys.readouterr().err == "Cannot build the code bundle: pip download failed: no route to pypi.org\n"
