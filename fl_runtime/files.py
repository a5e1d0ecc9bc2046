"""Atomic file and folder writes: outputs either appear whole or not at all.

A command that writes a folder of outputs refuses a non-empty ``--out`` before it starts
(``empty_output_folder``), writes into a staging folder beside it (``staging_folder``) and moves the
files into place only when everything succeeded (``publish_folder``). Archives that are deployed (the
code bundle, the published model's ``model.tar.gz``) are reproducible: ``write_tarball``.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from fl_runtime.errors import OutputExists


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(descriptor)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp creates 0600; outputs get the usual mode
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)


def write_tarball(path: str | os.PathLike, files: Mapping[str, bytes | Path]) -> None:
    """gzip'd tar with sorted entries, no timestamps and no owners (scripts ``*.sh`` executable), written
    atomically: the same files give the same bytes, so an unchanged archive keeps its hash."""
    with (
        atomic_path(path) as temporary,
        open(temporary, "wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for name in sorted(files):
            content = files[name]
            data = content if isinstance(content, bytes) else content.read_bytes()
            archive.addfile(_tar_info(name, len(data)), io.BytesIO(data))


def _tar_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o755 if name.endswith(".sh") else 0o644
    return info


def publish_folder(staging: Path, destination: Path) -> None:
    """Move every file of a finished staging folder into ``destination`` (created if needed).

    The staging folder sits beside the destination, so each move is a rename on one file system.
    """
    destination.mkdir(parents=True, exist_ok=True)
    for item in sorted(staging.iterdir()):
        os.replace(item, destination / item.name)
    shutil.rmtree(staging, ignore_errors=True)


def refuse_existing(paths: list[Path], hint: str) -> None:
    """Raise OutputExists naming the first output that would be overwritten."""
    existing = [p for p in paths if p.exists()]
    if existing:
        raise OutputExists(f"{existing[0]}: already exists ({hint})")


def empty_output_folder(out: Path) -> Path:
    """``out`` as an absolute path, if it does not exist or is an empty folder; OutputExists otherwise."""
    out = out.resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputExists(f"{out}: already exists and is not empty; choose another --out")
    return out


def staging_folder(out: Path) -> Path:
    """Where the outputs of ``out`` are written until they are complete: beside it, on the same file system."""
    return out.parent / f".{out.name}.partial"
