"""Following a run: when the launcher asks the SuperLink for the run's status (each ask is a ``flwr ls`` process),
and what it makes of the answer. A fake SuperLink counts the asks; the ServerApp is a thread writing events."""

from __future__ import annotations

import io
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rich.console import Console

from fl_runtime.app.events import EVENTS_FILE
from fl_runtime.app.run_settings import OUTPUT_FILES
from fl_runtime.errors import FederationError
from fl_runtime.launch import follow
from fl_runtime.launch.flower import COMPLETED

QUIET_SECONDS = 1.0  # stands in for STATUS_POLL_SECONDS (ten seconds) so that the tests take a few seconds


@dataclass
class FakeSuperLink:
    """Answers ``running`` until ``finish`` is set (or it has been asked ``finish_on_ask`` times), then ``finish``;
    records when it was asked."""

    finish: str | None = None
    finish_on_ask: tuple[int, str] | None = None
    asked: list[float] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)

    def status(self, run_id: str) -> str:
        self.asked.append(time.monotonic())
        if self.finish_on_ask is not None and len(self.asked) >= self.finish_on_ask[0]:
            return self.finish_on_ask[1]
        return self.finish or "running"

    def stop_run(self, run_id: str) -> None:
        self.stopped.append(run_id)


class NoProcesses:
    def exited(self) -> dict[str, int]:
        return {}


@dataclass
class Folders:
    staging: Path
    supervisor: NoProcesses = field(default_factory=NoProcesses)


@dataclass(frozen=True)
class Options:
    run_seconds: float = 30.0
    deadline_rule: str = "the test's deadline"


@pytest.fixture(autouse=True)
def short_quiet_period(monkeypatch):
    monkeypatch.setattr(follow, "STATUS_POLL_SECONDS", QUIET_SECONDS)
    monkeypatch.setattr(follow, "TICK_SECONDS", 0.02)


def watch(tmp_path: Path, superlink: FakeSuperLink, run_seconds: float = 30.0) -> follow.RunWatch:
    return follow.RunWatch(superlink, Folders(tmp_path), "run-1", Options(run_seconds))  # type: ignore[arg-type]


def server_app(tmp_path: Path, superlink: FakeSuperLink, events: list[dict], every: float) -> dict[str, float]:
    """Writes ``events`` one per ``every`` seconds, then the outputs, then lets the fake SuperLink say completed;
    returns a record of when its last event was written."""
    written: dict[str, float] = {}

    def run() -> None:
        for event in events:
            time.sleep(every)
            with (tmp_path / EVENTS_FILE).open("a") as log:
                log.write(json.dumps(event) + "\n")
            written["last"] = time.monotonic()
        for name in OUTPUT_FILES:
            (tmp_path / name).write_text("x")
        superlink.finish = COMPLETED

    threading.Thread(target=run, daemon=True).start()
    return written


def follow_quietly(run: follow.RunWatch) -> None:
    follow.follow_run(run, Console(file=io.StringIO()), "test run")


def test_a_server_app_logging_its_steps_is_not_asked_its_status_until_it_logs_its_end(tmp_path):
    superlink = FakeSuperLink()
    steps = [{"event": "keys", "members": [f"member-{number}"]} for number in range(15)]  # 1.5 quiet periods
    written = server_app(tmp_path, superlink, [*steps, {"event": "done"}], every=QUIET_SECONDS / 10)
    follow_quietly(watch(tmp_path, superlink))
    assert superlink.asked, "the run's end was never confirmed with the SuperLink"
    assert min(superlink.asked) >= written["last"], (superlink.asked, written)  # none while it logged


def test_a_silent_server_app_is_asked_after_each_quiet_period_and_its_failure_is_named(tmp_path):
    superlink = FakeSuperLink(finish_on_ask=(3, "finished:failed"))
    run = watch(tmp_path, superlink)
    started = time.monotonic()
    with pytest.raises(FederationError, match="run ended with status finished:failed"):
        follow_quietly(run)
    waits = [asked - before for before, asked in zip([started, *superlink.asked], superlink.asked)]
    assert len(waits) == 3 and all(QUIET_SECONDS - 0.05 <= wait < 2 * QUIET_SECONDS for wait in waits), waits


def test_a_run_past_its_deadline_is_stopped_and_named(tmp_path):
    superlink = FakeSuperLink()
    with pytest.raises(FederationError, match="did not finish in time \\(the test's deadline\\)"):
        follow_quietly(watch(tmp_path, superlink, run_seconds=0.3))
    assert superlink.stopped == ["run-1"]


def test_a_completed_run_whose_server_app_logged_a_failure_fails_with_its_message(tmp_path):
    superlink = FakeSuperLink()
    server_app(tmp_path, superlink, [{"event": "failed", "message": "fewer than k members replied"}], every=0.05)
    with pytest.raises(FederationError, match="the federation failed: fewer than k members replied"):
        follow_quietly(watch(tmp_path, superlink))
