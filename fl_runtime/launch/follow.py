"""Following a submitted run until it ends, and deciding whether it succeeded: one loop for every launcher.

The loop renders the ServerApp's events as they arrive, watches the processes the launcher started,
asks the SuperLink for the run's status every two seconds and gives up at the run's deadline. A run
succeeded only if Flower says ``finished:completed``, the ServerApp logged ``done`` and no ``failed``
event, and every output file is there: Flower reports a run whose ServerApp raised as completed too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fl_runtime.app.events import EVENTS_FILE
from fl_runtime.app.run_settings import OUTPUT_FILES
from fl_runtime.errors import FederationError
from fl_runtime.launch.flower import COMPLETED, FINISHED, SuperLink
from fl_runtime.launch.processes import Supervisor
from fl_runtime.launch.progress import EventReader, ProgressView

STATUS_POLL_SECONDS = 2.0
TICK_SECONDS = 0.2


@dataclass
class RunWatch:
    """One submitted run and what may end it early."""

    superlink: SuperLink
    supervisor: Supervisor
    run_id: str
    out_dir: Path  # where the ServerApp writes (the launcher's staging folder)
    deadline: float  # time.monotonic() after which the run is stopped
    deadline_rule: str  # how the deadline was set, for the message
    vital: tuple[str, ...] = ("superlink",)  # processes whose exit ends the run; others are reported
    on_tick: Callable[[ProgressView], None] | None = None  # the launcher's own work each turn (keys, jobs)
    events: EventReader = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventReader(self.out_dir / EVENTS_FILE)


def follow_run(watch: RunWatch, view: ProgressView) -> None:
    """Until the run finishes; then raise FederationError unless it succeeded (module docstring).
    Whatever ends the loop early (a vital process exiting, the deadline, Ctrl-C) stops the run."""
    try:
        status = _until_finished(watch, view)
    except BaseException:
        watch.superlink.stop_run(watch.run_id)
        raise
    failed = watch.events.last("failed")
    if status != COMPLETED or failed or not watch.events.last("done"):
        reason = failed["message"] if failed else f"run ended with status {status}"
        raise FederationError(f"the federation failed: {reason}")
    missing = [name for name in OUTPUT_FILES if not (watch.out_dir / name).is_file()]
    if missing:
        raise FederationError(f"the run completed but wrote no {', '.join(missing)}")


def _until_finished(watch: RunWatch, view: ProgressView) -> str:
    next_status = 0.0
    reported: set[str] = set()
    while True:
        for event in watch.events.new():
            view.add(event)
        exited = watch.supervisor.exited()
        for name in sorted(set(exited) - reported):
            if name in watch.vital:
                raise FederationError(f"the {name} exited (code {exited[name]}):\n{watch.supervisor.log_tail(name)}")
            reported.add(name)
            view.notice(f"{name} exited with code {exited[name]}")
        if watch.on_tick is not None:
            watch.on_tick(view)
        if time.monotonic() >= next_status:
            status = watch.superlink.status(watch.run_id)
            if status.startswith(FINISHED):
                for event in watch.events.new():
                    view.add(event)
                return status
            next_status = time.monotonic() + STATUS_POLL_SECONDS
        if time.monotonic() > watch.deadline:
            raise FederationError(f"the run did not finish in time ({watch.deadline_rule})")
        time.sleep(TICK_SECONDS)
