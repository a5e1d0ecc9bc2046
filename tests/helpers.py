"""What tests share besides fixtures: where the project and the CMS data are, hand-made CSVs."""

from __future__ import annotations

import ast
import csv
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

PROJECT = Path(__file__).resolve().parent.parent
CMS_CSV = PROJECT.parent / "shared" / "data" / "cms_provider_fraud.csv"


def run_cli(*args, cwd=None) -> subprocess.CompletedProcess:
    """``python -m fl_runtime ARGS`` as a user runs it, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "fl_runtime", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or PROJECT,
        timeout=300,
    )


def as_a_shell_starts_it() -> None:
    """``preexec_fn`` for a launcher a test will Ctrl-C: Ctrl-C handled as a user's shell leaves it (SIGINT at its
    default action, not blocked), whatever an earlier test did to the worker process that starts it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def signal_state(pid: int) -> str:
    """A process's signal masks (pending, blocked, ignored, caught), for a test whose Ctrl-C went unanswered."""
    status = Path(f"/proc/{pid}/status")
    lines = status.read_text().splitlines() if status.exists() else []
    return "; ".join(line for line in lines if line.startswith(("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")))


def ctrl_c(process: subprocess.Popen, timeout: float) -> tuple[str, str]:
    """Ctrl-C to a launcher (started with ``as_a_shell_starts_it``): its stdout and stderr once it has exited. If it
    outlives ``timeout`` seconds, SIGTERM (the same clean-up path) and fail, saying what its signal masks were."""
    before = signal_state(process.pid)
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        after = signal_state(process.pid)
        process.terminate()
        out, err = process.communicate(timeout=120)
        raise AssertionError(
            f"Ctrl-C unanswered for {timeout} s; signals before: {before}; after: {after}\n{err[-2000:]}\n{out[-2000:]}"
        ) from None


def write_rows(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    """A hand-made CSV, for inputs the data module must reject."""
    path.write_text("\n".join([",".join(header), *(",".join(str(c) for c in row) for row in rows)]) + "\n")
    return path


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """A CSV's header and rows as text, to make variants of a good file."""
    with path.open(newline="") as handle:
        header, *rows = csv.reader(handle)
    return header, rows


class PublishedRun(NamedTuple):
    """A finished local federation: its output folder (model.joblib, metrics.json) and its server's test CSV."""

    out: Path
    test_csv: Path


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function, as absolute names
    (``from fl_runtime.app import records`` imports the module fl_runtime.app.records)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (use absolute ones, which the architecture tests read)"
            base = node.module or ""
            found.update(f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names)
    return found


def _is_module(name: str) -> bool:
    return PROJECT.joinpath(*name.split(".")).with_suffix(".py").exists()


def in_temp(folder: Path) -> dict[str, str]:
    """The launcher's environment with its temporary workspace inside ``folder``: the leak checks look
    for this run's processes only, not those of another run on the machine."""
    return {**os.environ, "TMPDIR": str(folder)}


def workspaces(folder: Path) -> str:
    return str(folder / "fl-local-")


def flower_processes_under(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (a run's workspace or output path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in command and int(entry.name) != os.getpid():
            found.append(command)
    return found


HONEST_LINE = "    node = NodeSettings.of(context.node_config)\n"  # the first line of the ClientApp's keys handler


def hostile_app(folder: Path, marker: Path) -> Path:
    """This runtime's app with one line changed: the keys handler copies the member's data to ``marker``."""
    from fl_runtime.launch.fab import stage_app

    app = stage_app(folder / "app")
    client_app = app / "fl_runtime" / "app" / "client_app.py"
    source = client_app.read_text()
    assert source.count(HONEST_LINE) >= 1
    steal = f"Path({str(marker)!r}).write_text(node.first_file.read_text())"
    evil = f"    node = NodeSettings.of(context.node_config); {steal}\n"
    client_app.write_text(source.replace(HONEST_LINE, evil, 1))
    return app
