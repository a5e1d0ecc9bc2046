"""What a launcher and the ServerApp agree on: the run config, the node-names file, the output files.

A launcher (``local``, ``federate``) builds ``RunSettings`` and submits ``to_run_config()`` with
``flwr run --run-config``; the ServerApp reads it back with ``from_run_config`` and checks every value.
The FAB's own defaults (``[tool.flwr.app.config]``) are ``default_run_config()``, from
``fl_runtime.defaults``. No Flower import: launchers use this module without loading Flower.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fl_runtime import defaults
from fl_runtime.errors import OptionsError
from fl_runtime.files import write_text_atomic
from fl_runtime.learning.task import TrainingPlan

# what a completed run leaves in out-dir (besides events.jsonl)
MODEL_FILE = "model.joblib"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
ROUNDS_PLOT = "metrics_per_round.png"
CURVES_PLOT = "roc_pr_curves.png"
OUTPUT_FILES = (MODEL_FILE, METRICS_FILE, REPORT_FILE, ROUNDS_PLOT, CURVES_PLOT)
VIEW_FILE = "client_view.json"  # a member's own record of a run, in its own account (with its transcript.jsonl)

NODE_NAMES_FILE = "node-names.json"
# set by the client's runner (launch.runner) before it calls the ClientApp: when it took the task, so the
# time breakdown tells the wait for a task from the work on it, whether the process is warm or new
TASK_STARTED_ENV = "FL_TASK_STARTED_AT"
DATA_DESCRIPTION_OF_ACCOUNTS = "client data staged in each client account (never left it)"


def _positive_number(config: Mapping, key: str) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise OptionsError(f"run config '{key}' must be a positive number, got {value!r}")
    return float(value)


def _positive_whole(config: Mapping, key: str) -> int:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value <= 0:
        raise OptionsError(f"run config '{key}' must be a positive whole number, got {value!r}")
    return int(value)


def _non_negative_number(config: Mapping, key: str) -> float:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise OptionsError(f"run config '{key}' must be a number of at least 0, got {value!r}")
    return float(value)


def _absolute_path(config: Mapping, key: str) -> Path:
    value = str(config[key])
    if not value or not Path(value).is_absolute():
        raise OptionsError(f"run config '{key}' must be an absolute path on the SuperLink's machine, got {value!r}")
    return Path(value)


@dataclass(frozen=True)
class RunSettings:
    """The run config, validated once."""

    plan: TrainingPlan
    min_clients: int
    expected_clients: int  # how many were started: a run starts with all of them
    node_wait_timeout: float
    round_timeout: float
    test_data: Path
    out_dir: Path
    data_description: str = ""
    reply_poll_seconds: float = defaults.REPLY_POLL_SECONDS
    node_names: Path | None = None  # see write_node_names
    expected_members: tuple[str, ...] = ()  # their names, to name one that never joins

    @classmethod
    def from_run_config(cls, config: Mapping) -> RunSettings:
        _positive_whole(config, "num-server-rounds")
        _non_negative_number(config, "convergence-tolerance")
        try:
            plan = TrainingPlan.from_config(config)
        except KeyError as missing:
            raise OptionsError(f"run config has no {missing}") from None
        return cls(
            plan=plan,
            min_clients=_positive_whole(config, "min-clients"),
            expected_clients=int(config.get("expected-clients", 0)),
            node_wait_timeout=_positive_number(config, "node-wait-timeout"),
            round_timeout=_positive_number(config, "round-timeout"),
            test_data=_absolute_path(config, "test-data"),
            out_dir=_absolute_path(config, "out-dir"),
            data_description=str(config.get("data-description", "")),
            reply_poll_seconds=_positive_number(config, "reply-poll-seconds"),
            node_names=_absolute_path(config, "node-names") if config.get("node-names") else None,
            expected_members=tuple(name for name in str(config.get("expected-members", "")).split(",") if name),
        )

    def to_run_config(self) -> dict:
        """What a launcher passes to ``flwr run --run-config``: the inverse of ``from_run_config``."""
        return {
            **self.plan.to_config(),
            "min-clients": self.min_clients,
            "expected-clients": self.expected_clients,
            "node-wait-timeout": float(self.node_wait_timeout),
            "round-timeout": float(self.round_timeout),
            "test-data": str(self.test_data),
            "out-dir": str(self.out_dir),
            "data-description": self.data_description,
            "reply-poll-seconds": float(self.reply_poll_seconds),
            "node-names": str(self.node_names or ""),
            "expected-members": ",".join(self.expected_members),
        }

    def summary(self) -> dict:
        """The settings as the report and metrics.json record them."""
        return {
            **self.plan.to_config(),
            "min-clients": self.min_clients,
            "expected-clients": self.expected_clients,
            "node-wait-timeout": self.node_wait_timeout,
            "round-timeout": self.round_timeout,
            "test-data": str(self.test_data),
            "data": self.data_description,
        }


def default_run_config() -> dict:
    """The FAB's ``[tool.flwr.app.config]``: every key the ServerApp reads, at its default. A launcher
    overrides every one of them; the paths are empty, so a run submitted without a launcher stops at
    once, naming the key."""
    template = RunSettings(
        plan=TrainingPlan(),
        min_clients=2,
        expected_clients=0,
        node_wait_timeout=defaults.NODE_WAIT_TIMEOUT,
        round_timeout=defaults.ROUND_TIMEOUT,
        test_data=Path("/unset"),
        out_dir=Path("/unset"),
    )
    return {**template.to_run_config(), "test-data": "", "out-dir": ""}


def write_node_names(path: Path, names: Mapping[int, str]) -> None:
    """Which client each registered SuperNode is, as the launcher knows it: so a node that never
    answers (and so never says its name) is still reported by its client's name."""
    write_text_atomic(path, json.dumps({str(node): name for node, name in names.items()}, indent=2))


def read_node_names(path: Path | None) -> dict[int, str]:
    if path is None or not path.exists():
        return {}
    return {int(node): str(name) for node, name in json.loads(path.read_text()).items()}


def node_label(node: int, known: Mapping[int, str]) -> str:
    return known.get(node, f"node {node}")
