"""The code bundle: a deterministic ``source.tar.gz`` that installs and runs with no internet.

Training jobs and notebooks sit in private subnets with no route to PyPI, so the bundle carries its
own wheels. Layout (the SageMaker training toolkit unpacks it into /opt/ml/code and runs
``pip install -r requirements.txt`` there, then the ``sagemaker_program``):

    sagemaker_client.py          script-mode entry point of a client job
    fl_runtime/                  the whole runtime, package by package (the Flower app, its FAB, is
                                 built from it by ``federate`` on the server notebook)
    requirements.txt             training job: --no-index --find-links wheels + every pin
    requirements-notebook.txt    notebooks: the same plus plots and boto3
    notebook/*.sh, notebook/*.py notebook start-up: offline install, idle auto-stop
    wheels/*.whl                 every locked package, for each target: the notebooks' Python 3.11, and
                                 the training image's Python and platform (from the federation config)

Built at synth time, no Docker: wheels are downloaded once per lock and cached in .cache/bundle (the
three most recently used wheel sets and bundles are kept), and the tarball is byte-for-byte
reproducible (sorted entries, zero mtimes and owners), so an unchanged bundle keeps its asset hash
and is not redeployed.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fl_runtime.errors import BundleError, ConfigError
from fl_runtime.files import write_tarball
from fl_runtime.launch.fab import runtime_files

PROJECT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LEGACY_MANYLINUX = {"manylinux1": 5, "manylinux2010": 12, "manylinux2014": 17}  # their glibc 2.x
BUNDLE_NAME = "source.tar.gz"
CACHE_KEEP = 3  # bundles and wheel sets kept in .cache/bundle: the current one and two to switch back to
ENTRY_POINT = "sagemaker_client.py"
OFFLINE = "--no-index\n--find-links wheels\n"
ENTRY_POINT_SOURCE = '''"""Script-mode entry point of a federation client job (fl_runtime/aws/sagemaker_client.py)."""

import sys

from fl_runtime.aws.sagemaker_client import main

if __name__ == "__main__":
    sys.exit(main())
'''


def manylinux_tags(newest: str) -> tuple[str, ...]:
    """Every manylinux tag a machine with ``newest``'s glibc installs, as pip would list them on it.

    ``manylinux_2_28_x86_64`` -> ``manylinux_2_28_x86_64`` ... ``manylinux_2_17_x86_64`` and ``manylinux2014_x86_64``.
    """
    for legacy, minor in LEGACY_MANYLINUX.items():
        if newest.startswith(legacy + "_"):
            arch, glibc_minor = newest[len(legacy) + 1 :], minor
            break
    else:
        parts = newest.split("_", 3)  # manylinux, 2, <minor>, <arch>
        if len(parts) != 4 or parts[0] != "manylinux" or parts[1] != "2" or not parts[2].isdigit():
            raise BundleError(
                f"{newest!r} is not a manylinux platform tag such as manylinux_2_28_x86_64 or manylinux2014_x86_64"
            )
        glibc_minor, arch = int(parts[2]), parts[3]
    tags = [f"manylinux_2_{minor}_{arch}" for minor in range(glibc_minor, LEGACY_MANYLINUX["manylinux1"] - 1, -1)]
    tags += [f"{legacy}_{arch}" for legacy, minor in LEGACY_MANYLINUX.items() if minor <= glibc_minor]
    return tuple(tags)


@dataclass(frozen=True)
class Target:
    """A Python and platform the bundle's wheels must install on, and which locked set installs there."""

    python_version: str  # "3.12"
    platforms: tuple[str, ...]  # pip --platform tags
    requirements: str  # "training" or "notebook": requirements-<set>.lock

    def pip_arguments(self) -> list[str]:
        platforms = [arg for platform in self.platforms for arg in ("--platform", platform)]
        return ["--only-binary=:all:", "--python-version", self.python_version, "--implementation", "cp", *platforms]


# the notebooks run Amazon Linux 2023 (glibc 2.34) with Python 3.11 from its repository (notebook/install.sh)
NOTEBOOK = Target("3.11", manylinux_tags("manylinux_2_34_x86_64"), "notebook")


def bundle_targets(training_image) -> tuple[Target, ...]:
    """The notebooks' target and the training image's (a ``config.TrainingImage``: Python, newest manylinux tag)."""
    training = Target(training_image.python_version, manylinux_tags(training_image.platform), "training")
    same_machine = (training.python_version, training.platforms) == (NOTEBOOK.python_version, NOTEBOOK.platforms)
    return (NOTEBOOK,) if same_machine else (NOTEBOOK, training)  # the notebook set contains the training set


@dataclass(frozen=True)
class Bundle:
    folder: Path  # holds only source.tar.gz: the asset BucketDeployment uploads
    digest: str

    @property
    def tarball(self) -> Path:
        return self.folder / BUNDLE_NAME


def _lock_lines(name: str) -> list[str]:
    lines = (HERE / f"requirements-{name}.lock").read_text().splitlines()
    return [line for line in lines if line and not line.startswith("#")]


def content_digest(*parts: bytes) -> str:
    """SHA-256 over the parts, each hashed on its own so part boundaries count."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()


def run_pip(*args: str) -> str:
    """``pip ARGS`` with this interpreter; its output only if it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise BundleError(f"pip {' '.join(args[:2])} failed:\n{done.stderr.strip()[-3000:]}")
    return done.stdout


def download_wheels(cache: Path, targets: tuple[Target, ...]) -> Path:
    """Each target's locked wheels; reused from the cache when the locks and targets are unchanged."""
    pins = {target.requirements: _lock_lines(target.requirements) for target in targets}
    key = content_digest(repr(sorted(pins.items())).encode(), repr(targets).encode())[:16]
    folder = cache / f"wheels-{key}"
    if (folder / ".complete").exists():
        os.utime(folder)  # recently used: kept by prune_cache
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wheels-", dir=cache))
    try:
        for target in targets:
            requirements = staging / f"{target.requirements}.txt"
            requirements.write_text("\n".join(pins[target.requirements]) + "\n")
            try:
                run_pip(
                    "download",
                    "--no-deps",
                    *target.pip_arguments(),
                    "--dest",
                    str(staging / "wheels"),
                    "-r",
                    str(requirements),
                )
            except BundleError as error:
                raise BundleError(
                    f"the {target.requirements} lock has no wheels for Python {target.python_version} on "
                    f"{target.platforms[0]} "
                    f"(see training_image in cdk.json; re-lock with `make bundle-locks`): {error}"
                ) from None
        (staging / "wheels" / ".complete").write_text(repr(targets))
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(staging / "wheels", folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def bundle_files(wheels: Path | None) -> dict[str, bytes | Path]:
    """Archive path -> content (bytes) or file to copy; without ``wheels``, a bundle that installs nothing."""
    files: dict[str, bytes | Path] = {
        ENTRY_POINT: ENTRY_POINT_SOURCE.encode(),
        "requirements.txt": (OFFLINE + "\n".join(_lock_lines("training")) + "\n").encode(),
        "requirements-notebook.txt": (OFFLINE + "\n".join(_lock_lines("notebook")) + "\n").encode(),
        **runtime_files(),
    }
    for source in sorted((HERE / "notebook").iterdir()):
        files[f"notebook/{source.name}"] = source
    for wheel in sorted(wheels.glob("*.whl")) if wheels else []:
        files[f"wheels/{wheel.name}"] = wheel
    return files


def build(targets: tuple[Target, ...], cache: Path = PROJECT / ".cache" / "bundle") -> Bundle:
    """Build (or reuse) the bundle for the current sources, locks and targets. One build at a time per
    cache (a `cdk synth` beside `make test`): two builds would replace each other's folders. CDK copies
    the bundle after this returns; pruning keeps the three newest, so only three more builds in that
    moment could remove it."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _build(targets, cache)


def configured_targets() -> tuple[Target, ...]:
    """The targets of cdk.json's training image: what `cdk synth` with the checked-in defaults bundles for."""
    from stacks.config import from_cdk_json

    return bundle_targets(from_cdk_json(PROJECT / "cdk.json").training_image)


def configured() -> Bundle:
    """The bundle of cdk.json's training image."""
    return build(configured_targets())


def main() -> int:
    """``python -m stacks.bundle.builder``: build (or reuse) the configured bundle ahead of a synth."""
    try:
        bundle = configured()
    except (BundleError, ConfigError) as error:
        print(f"Cannot build the code bundle: {error}", file=sys.stderr)
        return 1
    print(f"code bundle {bundle.digest[:16]}: {bundle.tarball}")
    return 0


def _build(targets: tuple[Target, ...], cache: Path) -> Bundle:
    wheels = download_wheels(cache, targets)
    files = bundle_files(wheels)
    small = {name: c for name, c in files.items() if not name.startswith("wheels/")}  # wheels: keyed by lock
    digest = content_digest(
        wheels.name.encode(),
        *(name.encode() + (c if isinstance(c, bytes) else c.read_bytes()) for name, c in sorted(small.items())),
    )
    folder = cache / f"source-{digest[:16]}"
    if (folder / BUNDLE_NAME).exists():
        os.utime(folder)
    else:
        staging = Path(tempfile.mkdtemp(prefix=".source-", dir=cache))
        try:
            write_tarball(staging / BUNDLE_NAME, files)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    prune_cache(cache, keep=CACHE_KEEP)
    return Bundle(folder, digest)


def prune_cache(cache: Path, keep: int) -> list[Path]:
    """Remove all but the ``keep`` most recently used wheel sets and bundles (each ~250 MB): every source
    edit makes a new bundle, and a cache that only grows fills the disk. Also the staging folders of
    builds that were killed (called under the build lock, so no build is using one). Returns what was
    removed."""
    removed = []
    for staging in [*cache.glob(".wheels-*"), *cache.glob(".source-*")]:
        shutil.rmtree(staging, ignore_errors=True)
        removed.append(staging)
    for kind in ("wheels-", "source-"):
        folders = sorted(
            (p for p in cache.glob(f"{kind}*") if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True
        )
        for old in folders[keep:]:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    return removed


if __name__ == "__main__":
    sys.exit(main())
