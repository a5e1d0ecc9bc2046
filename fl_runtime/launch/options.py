"""What every launcher is asked for (``local`` on one machine, ``federate`` across accounts), checked
before anything starts, and how it becomes the ServerApp's run config."""

from __future__ import annotations

import dataclasses
import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Self

from fl_runtime import defaults
from fl_runtime.app.run_settings import RunSettings
from fl_runtime.errors import OptionsError
from fl_runtime.launch.flower import idle_poll
from fl_runtime.learning.families import family
from fl_runtime.learning.task import TrainingPlan


@dataclass(frozen=True)
class RunOptions(ABC):
    """A run's training plan, its tolerance of lost clients, its waits and its output folder.

    Each launcher adds how long clients may take to join (``wait_timeout``, a flag of its own).
    """

    plan: TrainingPlan = field(default_factory=TrainingPlan)
    min_clients: int | None = None  # the run stops when fewer remain; default: every client
    round_timeout: float = defaults.ROUND_TIMEOUT
    out: Path | None = None  # default: a folder under runs/

    WAIT_FLAG: ClassVar[str]  # the flag that sets wait_timeout

    @property
    @abstractmethod
    def wait_timeout(self) -> float:
        """How long clients may take to join."""

    def __post_init__(self) -> None:
        if self.min_clients is not None and self.min_clients < 1:
            raise OptionsError(f"--min-clients must be at least 1, got {self.min_clients}")
        for flag, value in ((self.WAIT_FLAG, self.wait_timeout), ("--round-timeout", self.round_timeout)):
            if value <= 0:
                raise OptionsError(f"{flag} must be positive, got {value}")

    def for_family(self, family: str, out: Path) -> Self:
        """The same options for one family's run into ``out`` (``--model auto`` runs each family)."""
        return dataclasses.replace(self, plan=dataclasses.replace(self.plan, family=family), out=out)

    def min_clients_among(self, clients: int, which: str) -> int:
        """--min-clients, or every client; refused above the ``clients`` there are (``which``: given, configured)."""
        if (self.min_clients or 0) > clients:
            raise OptionsError(f"--min-clients {self.min_clients} exceeds the {clients} clients {which}")
        return self.min_clients or clients

    @property
    def run_seconds(self) -> float:
        """The longest a run may take: clients joining, then every exchange the model family may ask for."""
        return self.wait_timeout + family(self.plan.family).most_steps(self.plan) * self.round_timeout

    @property
    def deadline_rule(self) -> str:
        return f"{self.WAIT_FLAG.removeprefix('--')} + exchanges x round-timeout"

    def run_settings(
        self,
        *,
        members: list[str],
        min_clients: int,
        test_data: Path,
        out_dir: Path,
        description: str,
        node_names: Path,
        reply_poll_seconds: float | None = None,
    ) -> RunSettings:
        """The ServerApp's run config for the members started (``reply_poll_seconds``: the launcher's idle poll by
        default, ``flower.idle_poll``)."""
        reply_poll = reply_poll_seconds if reply_poll_seconds is not None else idle_poll(defaults.REPLY_POLL_SECONDS)
        return RunSettings(
            plan=self.plan,
            min_clients=min_clients,
            expected_clients=len(members),
            node_wait_timeout=self.wait_timeout,
            round_timeout=self.round_timeout,
            test_data=test_data,
            out_dir=out_dir,
            data_description=description,
            reply_poll_seconds=reply_poll,
            node_names=node_names,
            expected_members=tuple(members),
        )


def timestamp(now: dt.datetime | None = None) -> str:
    """A run's default name from a time (default: now, local time; federate passes UTC for its run tag)."""
    return (now or dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
