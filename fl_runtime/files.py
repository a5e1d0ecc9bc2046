"""Atomic file and folder writes: outputs either appear whole or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def publish_folder(staging: Path, destination: Path) -> None:
    """Move every file of a finished staging folder into ``destination`` (created if needed).

    The staging folder sits beside the destination, so each move is a rename on one file system.
    """
    destination.mkdir(parents=True, exist_ok=True)
    for item in sorted(staging.iterdir()):
        os.replace(item, destination / item.name)
    shutil.rmtree(staging, ignore_errors=True)


def refuse_existing(paths: list[Path], hint: str) -> None:
    """Raise FileExistsError naming the first output that would be overwritten."""
    existing = [p for p in paths if p.exists()]
    if existing:
        raise FileExistsError(f"{existing[0]}: already exists ({hint})")
