"""Following a submitted run until it ends, and deciding whether it succeeded: one loop for every launcher.

The loop renders the ServerApp's events as they arrive, watches the processes the launcher started,
asks the SuperLink for the run's status and gives up at the run's deadline. Asking costs a ``flwr ls`` process
(about 1.2 s of CPU; in a three-round local run five of them were about a sixth of the federation's CPU), so it asks
only after ten seconds without a word from the ServerApp (one that dies silently is noticed within ten seconds, as
when it asked every ten; one that is logging rounds is alive), and every half second once the ServerApp has logged
its end (``done`` or ``failed``). A run
succeeded only if Flower says ``finished:completed``, the ServerApp logged ``done`` and no ``failed``
event, and every output file is there: Flower reports a run whose ServerApp raised as completed too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console

from fl_runtime.app.events import EVENTS_FILE
from fl_runtime.app.run_settings import OUTPUT_FILES
from fl_runtime.errors import FederationError
from fl_runtime.launch.flower import COMPLETED, FINISHED, SuperLink
from fl_runtime.launch.options import RunOptions
from fl_runtime.launch.progress import EventReader, ProgressView
from fl_runtime.launch.run_folders import RunFolders

STATUS_POLL_SECONDS = 10.0  # while the run goes on: after this long without an event or an answer
ENDING_POLL_SECONDS = 0.5  # once the ServerApp has logged ``done`` or ``failed``
ENDING_EVENTS = ("done", "failed")
TICK_SECONDS = 0.2


@dataclass
class RunWatch:
    """One submitted run and what may end it early."""

    superlink: SuperLink
    folders: RunFolders  # the ServerApp writes into folders.staging; folders.supervisor runs the processes
    run_id: str
    options: RunOptions  # sets the deadline: joining, every round, the final evaluation
    vital: dict[str, str] = field(default_factory=lambda: {"superlink": "the SuperLink"})  # process -> its name
    on_tick: Callable[[ProgressView], None] | None = None  # the launcher's own work each turn (keys, jobs)
    events: EventReader = field(init=False)
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.events = EventReader(self.folders.staging / EVENTS_FILE)
        self.deadline = time.monotonic() + self.options.run_seconds


def follow_run(watch: RunWatch, console: Console, title: str) -> None:
    """Show the run live until it finishes; then raise FederationError unless it succeeded (module
    docstring). Whatever ends the loop early (a vital process exiting, the deadline, Ctrl-C) stops the run."""
    try:
        with ProgressView(console, title) as view:
            status = _until_finished(watch, view)
    except BaseException:
        watch.superlink.stop_run(watch.run_id)
        raise
    failed = watch.events.last("failed")
    if status != COMPLETED or failed or not watch.events.last("done"):
        reason = failed["message"] if failed else f"run ended with status {status}"
        raise FederationError(f"the federation failed: {reason}")
    missing = [name for name in OUTPUT_FILES if not (watch.folders.staging / name).is_file()]
    if missing:
        raise FederationError(f"the run completed but wrote no {', '.join(missing)}")


def _until_finished(watch: RunWatch, view: ProgressView) -> str:
    next_status = time.monotonic() + STATUS_POLL_SECONDS
    ending = False  # the ServerApp has logged its end: ask often
    reported: set[str] = set()
    while True:
        for event in watch.events.new():
            view.add(event)
            if event.get("event") in ENDING_EVENTS:
                ending, next_status = True, 0.0
            elif not ending:  # the ServerApp is alive: no need to ask for a while
                next_status = time.monotonic() + STATUS_POLL_SECONDS
        supervisor = watch.folders.supervisor
        exited = supervisor.exited()
        for name in sorted(set(exited) - reported):
            if name in watch.vital:
                raise FederationError(f"{watch.vital[name]} exited (code {exited[name]}):\n{supervisor.log_tail(name)}")
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
            next_status = time.monotonic() + (ENDING_POLL_SECONDS if ending else STATUS_POLL_SECONDS)
        if time.monotonic() > watch.deadline:
            raise FederationError(f"the run did not finish in time ({watch.options.deadline_rule})")
        time.sleep(TICK_SECONDS)
