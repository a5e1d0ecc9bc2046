"""Where one launcher run works, and what is left when it ends.

A run gets a temporary workspace (TLS files, node keys, the staged app, every process's log), and the
ServerApp writes into a staging folder beside ``--out``. Only a completed run's outputs are moved into
``--out``, with the logs; otherwise ``--out`` stays as it was, the staging folder goes and the logs
are kept in the temporary folder, where the message says. Every process started is stopped either way.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from fl_runtime.files import empty_output_folder, publish_folder, staging_folder
from fl_runtime.launch.processes import Supervisor


@dataclass
class RunFolders:
    out: Path  # where a completed run's outputs go
    staging: Path  # where the ServerApp writes them meanwhile
    workspace: Path
    supervisor: Supervisor  # every process of the run; its logs are in workspace/logs
    published: bool = False

    @property
    def logs(self) -> Path:
        return self.workspace / "logs"

    def publish(self) -> Path:
        """Move the completed outputs and the process logs into ``out``."""
        publish_folder(self.staging, self.out)
        shutil.copytree(self.logs, self.out / "logs")
        self.published = True
        return self.out


@contextmanager
def run_folders(out: Path, prefix: str, console: Console) -> Iterator[RunFolders]:
    """``out`` checked (new or empty), a workspace named ``<prefix>...``; on leaving, see the module docstring."""
    out = empty_output_folder(out)
    workspace = Path(tempfile.mkdtemp(prefix=prefix))
    folders = RunFolders(out, staging_folder(out), workspace, Supervisor(workspace / "logs"))
    shutil.rmtree(folders.staging, ignore_errors=True)
    try:
        yield folders
    finally:
        folders.supervisor.stop_all()
        if not folders.published:
            shutil.rmtree(folders.staging, ignore_errors=True)
            _keep_logs(folders.logs, Path(tempfile.gettempdir()) / f"{prefix}logs-{out.name}", console)
        shutil.rmtree(workspace, ignore_errors=True)


def _keep_logs(logs: Path, kept: Path, console: Console) -> None:
    """After a failure: the process logs, where the user can read why."""
    if logs.exists() and any(logs.iterdir()):
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(logs, kept)
        console.print(f"Process logs kept in {kept}", highlight=False)
