"""The code bundle: a deterministic ``source.tar.gz`` that installs and runs with no internet.

Training jobs and notebooks sit in private subnets with no route to PyPI, so the bundle carries its
own wheels. Layout (the SageMaker training toolkit unpacks it into /opt/ml/code and runs
``pip install -r requirements.txt`` there, then the ``sagemaker_program``):

    sagemaker_client.py          script-mode entry point of a client job
    fl_runtime/*.py              the federated runtime
    pyproject.toml               the Flower app definition
    requirements.txt             training job: --no-index --find-links wheels + every pin
    requirements-notebook.txt    notebooks: the same plus plots and boto3
    notebook/*.sh, notebook/*.py notebook start-up: offline install, idle auto-stop
    wheels/*.whl                 every locked package, for each Python served (3.11 and 3.12)

Built at synth time, no Docker: wheels are downloaded once per lock and cached in .cache/, and the
tarball is byte-for-byte reproducible (sorted entries, zero mtimes and owners), so an unchanged bundle
keeps its asset hash and is not redeployed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PYTHON_VERSIONS = ("3.11", "3.12")  # the notebooks' Python and the training image's; the locks serve both
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
BUNDLE_NAME = "source.tar.gz"
ENTRY_POINT = "sagemaker_client.py"
OFFLINE = "--no-index\n--find-links wheels\n"
ENTRY_POINT_SOURCE = '''"""SageMaker script-mode entry point of a federation client: see fl_runtime/sagemaker_client.py."""

import sys

from fl_runtime.sagemaker_client import main

if __name__ == "__main__":
    sys.exit(main())
'''


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


def _digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(hashlib.sha256(part).digest())
    return hasher.hexdigest()


class BundleError(RuntimeError):
    """The bundle could not be built (typically: PyPI unreachable while the wheel cache is empty)."""


def run_pip(*args: str) -> str:
    """``pip ARGS`` with this interpreter; its output only if it fails."""
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise BundleError(f"pip {' '.join(args[:2])} failed:\n{done.stderr.strip()[-3000:]}")
    return done.stdout


def download_wheels(cache: Path) -> Path:
    """Every locked wheel for every Python served; reused from the cache when the lock is unchanged."""
    pins = _lock_lines("notebook")  # the notebook set contains the training set
    key = _digest("\n".join(pins).encode(), " ".join(PYTHON_VERSIONS).encode(), " ".join(PLATFORMS).encode())[:16]
    target = cache / f"wheels-{key}"
    if (target / ".complete").exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".wheels-", dir=cache))
    try:
        requirements = staging / "pins.txt"
        requirements.write_text("\n".join(pins) + "\n")
        platforms = [arg for platform in PLATFORMS for arg in ("--platform", platform)]
        for version in PYTHON_VERSIONS:
            run_pip(
                "download", "--no-deps", "--only-binary=:all:", "--python-version", version, "--implementation", "cp",
                *platforms, "--dest", str(staging / "wheels"), "-r", str(requirements),
            )
        (staging / "wheels" / ".complete").write_text("\n".join(pins))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staging / "wheels", target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def bundle_files(wheels: Path | None) -> dict[str, bytes | Path]:
    """Archive path -> content (bytes) or file to copy; without ``wheels``, a bundle that installs nothing."""
    files: dict[str, bytes | Path] = {
        ENTRY_POINT: ENTRY_POINT_SOURCE.encode(),
        "pyproject.toml": PROJECT / "pyproject.toml",
        "requirements.txt": (OFFLINE + "\n".join(_lock_lines("training")) + "\n").encode(),
        "requirements-notebook.txt": (OFFLINE + "\n".join(_lock_lines("notebook")) + "\n").encode(),
    }
    for source in sorted((PROJECT / "fl_runtime").glob("*.py")):
        files[f"fl_runtime/{source.name}"] = source
    for source in sorted((HERE / "notebook").iterdir()):
        files[f"notebook/{source.name}"] = source
    for wheel in sorted(wheels.glob("*.whl")) if wheels else []:
        files[f"wheels/{wheel.name}"] = wheel
    return files


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if name.endswith(".sh") else 0o644
    return info


def write_tarball(path: Path, files: dict[str, bytes | Path]) -> None:
    """gzip'd tar with sorted entries, no timestamps and no owners: the same input gives the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as zipped:
        with tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive:
            for name in sorted(files):
                content = files[name]
                data = content if isinstance(content, bytes) else content.read_bytes()
                archive.addfile(_tar_info(name, len(data)), io.BytesIO(data))


def build(cache: Path = PROJECT / ".cache" / "bundle") -> Bundle:
    """Build (or reuse) the bundle for the current sources and locks."""
    wheels = download_wheels(cache)
    files = bundle_files(wheels)
    small = {name: c for name, c in files.items() if not name.startswith("wheels/")}  # wheels: keyed by lock
    digest = _digest(wheels.name.encode(), *(name.encode() + (c if isinstance(c, bytes) else c.read_bytes()) for name, c in sorted(small.items())))
    folder = cache / f"source-{digest[:16]}"
    if not (folder / BUNDLE_NAME).exists():
        staging = Path(tempfile.mkdtemp(prefix=".source-", dir=cache))
        try:
            write_tarball(staging / BUNDLE_NAME, files)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return Bundle(folder, digest)
