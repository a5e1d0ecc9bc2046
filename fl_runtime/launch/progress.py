"""Live progress of a run, from the ServerApp's event log: a per-round table, the jobs, and notices.

The ServerApp appends JSON events to ``events.jsonl`` in its output folder; launchers tail that file.
On a terminal the table updates in place (rich); otherwise each event is printed as one line, which
keeps CI logs and pipes readable.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text


class EventReader:
    """Reads the complete lines appended to an events file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.seen: list[dict] = []

    def new(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        events = [json.loads(line) for line in complete.decode("utf-8").splitlines() if line.strip()]
        self.seen.extend(events)
        return events

    def last(self, kind: str) -> dict | None:
        return next((event for event in reversed(self.seen) if event.get("event") == kind), None)


@dataclass
class JobRow:
    """One client's training job as the jobs table shows it; elapsed runs until the job ends."""

    job: str
    status: str
    started: float  # time.monotonic() when the job was created
    ended: float | None = None

    def elapsed(self, now: float) -> float:
        return (now if self.ended is None else self.ended) - self.started


class ProgressView:
    """Per-round table (round, seconds, ROC-AUC, PR-AUC, log loss, clients), a table of the clients'
    training jobs (status, elapsed time, ticking while they run) when there are jobs, plus notices."""

    def __init__(self, console: Console, title: str) -> None:
        self.console = console
        self.title = title
        self.rows: list[dict] = []
        self.jobs: dict[str, JobRow] = {}
        self.notices: list[str] = []
        self._live: Live | None = None

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            # rendered afresh at every refresh, so the jobs' elapsed times tick
            self._live = Live(console=self.console, refresh_per_second=4, transient=False, get_renderable=self._render)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.refresh()
            self._live.__exit__(*exc)

    def _table(self) -> Table:
        table = Table(title=self.title, title_justify="left")
        version = self.rows[-1].get("version", "round") if self.rows else "round"  # trees, for gbdt
        for column in (version, "seconds", "ROC-AUC", "PR-AUC", "log loss", "clients"):
            table.add_column(column, justify="right")
        for row in self.rows:
            table.add_row(
                str(row["round"]),
                f"{row['seconds']:.1f}",
                f"{row['roc-auc']:.4f}",
                f"{row['pr-auc']:.4f}",
                f"{row['log-loss']:.4f}",
                str(len(row.get("clients", []))),
            )
        return table

    def _jobs_table(self) -> Table:
        table = Table(title="Client training jobs", title_justify="left")
        table.add_column("client")
        table.add_column("job")
        table.add_column("status")
        table.add_column("elapsed", justify="right")
        now = time.monotonic()
        for client, row in list(self.jobs.items()):  # rich renders on its own thread; job() may add a row meanwhile
            table.add_row(client, row.job, row.status, f"{row.elapsed(now):.0f} s")
        return table

    def _render(self) -> Group:
        tables = [self._table(), *([self._jobs_table()] if self.jobs else [])]
        return Group(*tables, *(Text(notice) for notice in self.notices[-8:]))

    def job(self, client: str, row: JobRow) -> None:
        """A job's current status: shown in the live jobs table (status changes are also notices)."""
        self.jobs[client] = row

    def notice(self, text: str) -> None:
        self.notices.append(text)
        if self._live is None:
            self.console.print(text, highlight=False)
        else:
            self._live.refresh()

    def add(self, event: dict) -> None:
        kind = event.get("event")
        if kind == "round":
            self.rows.append(event)
            if self._live is None:
                self.console.print(
                    f"{event.get('version', 'round')} {event['round']:>3}  {event['seconds']:6.1f} s  "
                    f"ROC-AUC {event['roc-auc']:.4f}  "
                    f"PR-AUC {event['pr-auc']:.4f}  log loss {event['log-loss']:.4f}  clients "
                    f"{len(event.get('clients', []))}",
                    highlight=False,
                )
            else:
                self._live.refresh()
        elif kind == "keys":
            self.notice(f"members announced their keys: {', '.join(event['members'])}")
        elif kind == "federation":
            self.notice(
                f"federation: {len(event['members'])} members, {event['training-rows']} training rows in total "
                f"({event['training-positives']} fraudulent)"
            )
        elif kind == "stopped":
            self.notice(f"training {event['reason']}")
        elif kind == "dropout":
            self.notice(f"member {event['member']} dropped out of {event['question']}: {event['reason']}")
        elif kind == "failed":
            self.notice(f"server failed: {event['message']}")
