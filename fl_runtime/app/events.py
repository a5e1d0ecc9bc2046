"""The run's progress as JSON lines in ``out-dir/events.jsonl``: the ServerApp appends, the launchers
render them live (``launch.progress``), and the file stays with the outputs.

Events: ``federation`` (who takes part), ``round`` (each global model on the test set), ``dropout``,
``failed`` (the reason the run stopped) and ``done``.
"""

from __future__ import annotations

import json
from pathlib import Path

EVENTS_FILE = "events.jsonl"


class EventLog:
    """Appends one JSON object per line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    def emit(self, event: dict) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(event) + "\n")
