"""Processes a launcher starts, and stops again whatever happens.

Every process is started in its own session and tracked by a ``Supervisor``, which stops whole
process groups (a SuperNode's ClientApps) and every other descendant (the SuperLink's SuperExec and
ServerApp, which Flower starts in sessions of their own) on exit, on Ctrl-C and on failure: Flower's
SuperNodes never exit by themselves. Linux reads the process table from /proc; elsewhere (macOS)
``ps`` gives the same.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import NamedTuple

from fl_runtime.errors import ProcessError

PROC = Path("/proc")  # Linux's process table; macOS has none


class ProcessStatus(NamedTuple):
    state: str  # "R", "S", ... or "Z": dead, waiting to be reaped
    parent: int
    started: str  # when it started (opaque): a pid reused by a new process has another value


def _linux_status(pid: int) -> ProcessStatus | None:
    try:
        # pid (comm) state ppid ... starttime (22nd): comm may hold spaces, so split after its ")"
        fields = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
        return ProcessStatus(fields[0], int(fields[1]), fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _ps_table(*selection: str) -> dict[int, ProcessStatus]:
    """``ps`` (macOS and other systems without /proc): one call for all the processes selected."""
    out = subprocess.run(
        ["ps", *selection, "-o", "pid=,stat=,ppid=,lstart="], capture_output=True, text=True, check=False
    ).stdout
    table = {}
    for line in out.splitlines():
        pid, state, parent, started = line.split(maxsplit=3)
        table[int(pid)] = ProcessStatus(state[0], int(parent), started.strip())
    return table


def process_status(pid: int) -> ProcessStatus | None:
    """A process's state, parent and start time; None when there is no such process. Linux reads
    /proc; elsewhere (macOS) ``ps`` gives the same."""
    if (PROC / "self").exists():
        return _linux_status(pid)
    return _ps_table("-p", str(pid)).get(pid)


def process_table() -> dict[int, ProcessStatus]:
    """Every process's status, read once."""
    if (PROC / "self").exists():
        statuses = {int(entry.name): _linux_status(int(entry.name)) for entry in PROC.iterdir() if entry.name.isdigit()}
        return {pid: status for pid, status in statuses.items() if status is not None}
    return _ps_table("-A")


def descendants(pid: int, table: dict[int, ProcessStatus] | None = None) -> dict[int, str]:
    """Every process below ``pid`` (pid -> start time), through parent links: Flower's SuperLink
    starts its SuperExec in a session of its own, so killing the SuperLink's process group misses
    the SuperExec and its ServerApp. ``table``: a process table already read (``process_table``)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for other, status in (process_table() if table is None else table).items():
        children.setdefault(status.parent, []).append((other, status.started))
    found, frontier = {}, [pid]
    while frontier:
        for child, started in children.get(frontier.pop(), []):
            found[child] = started
            frontier.append(child)
    return found


def _running(pid: int, started: str) -> bool:
    """Still the same process (not a new one with a reused pid), and not a zombie."""
    status = process_status(pid)
    return status is not None and status.started == started and status.state != "Z"


def _stop_strays(family: dict[int, str], grace: float) -> None:
    """SIGTERM, up to ``grace`` seconds to exit, then SIGKILL: for processes outside our groups."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        family = {pid: started for pid, started in family.items() if _running(pid, started)}
        for pid in family:
            with contextlib.suppress(OSError):  # gone meanwhile, or not ours to signal
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(_running(pid, started) for pid, started in family.items()) and time.monotonic() < deadline:
            time.sleep(0.05)


class Supervisor:
    """Starts processes in their own process groups and stops every group it started."""

    def __init__(self, log_dir: Path, grace: float = 5.0) -> None:
        """``grace``: seconds a process gets between SIGTERM and SIGKILL to clean up after itself."""
        self.log_dir = log_dir
        self.grace = grace
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str, command: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.Popen:
        if name in self.processes and self.processes[name].poll() is None:
            raise ProcessError(f"a process named {name} is already running: it would no longer be tracked")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        log = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            list(command),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        log.close()
        self.processes[name] = process
        return process

    def exited(self) -> dict[str, int]:
        """Processes that have stopped, with their exit codes."""
        return {name: p.returncode for name, p in self.processes.items() if p.poll() is not None}

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.log_dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, name: str) -> None:
        self._stop([name])

    def stop_all(self) -> None:
        """Every process at once, the last started first: one at a time, each SuperNode's shutdown (about 0.7 s)
        came after the one before, and a local federation of three took 3 s to stop instead of 0.8 s."""
        self._stop(list(reversed(self.processes)))

    def _stop(self, names: list[str]) -> None:
        """SIGTERM to each process group, up to ``grace`` seconds for all of them to exit, then SIGKILL."""
        stopping = [self.processes[name] for name in names if name in self.processes]
        # found while the leaders run (a reaped leader's pid may be someone else's), before their detached
        # children go to init
        table = process_table()
        family: dict[int, str] = {}
        for process in stopping:
            if process.poll() is None:
                family.update(descendants(process.pid, table))
        for process in stopping:
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        for process in stopping:
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            # past the grace, or the group outlives its leader (a ClientApp mid-round): nothing is left
            with suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _stop_strays(family, self.grace)  # the SuperLink's SuperExec and ServerApp run in sessions of their own


@contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM (e.g. from a job scheduler) takes the same clean-up path as Ctrl-C."""

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
