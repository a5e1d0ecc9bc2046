"""Flower ServerApp: the relay of a run, evaluation on the server-only test set, and the outputs.

1. Wait (bounded) for every expected member's SuperNode: a run starts with all of them (``relay``), and one
   that never joined is named.
2. Keys: every member announces its signed per-run keys, having checked the proposed settings against its own
   ranges.
3. Steps of the model family's state machine (``learning.families``: logistic regression's moments, rounds
   and evaluation; gradient-boosted trees' bin counts, tree levels and evaluation). The server relays the
   members' signed, masked contributions, adds them, and steps its own copy of the
   state machine from the totals to score each model on its test set; the final evaluation's totals fix the
   decision threshold.
4. ``model.joblib`` (the family's model: a scikit-learn Pipeline, or ``tree_model.BoostedTreesModel``),
   ``metrics.json``, ``report.md``, plots and the server's transcript, written atomically into
   ``out-dir``.

Run config (``[tool.flwr.app.config]``, overridden by the launchers with ``flwr run --run-config``): see
``run_settings.RunSettings``. ``test-data`` and ``out-dir`` are absolute paths on the SuperLink's machine.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fl_runtime.app.events import EVENTS_FILE, EventLog
from fl_runtime.app.grid import PollingGrid, wait_for_clients
from fl_runtime.app.history import History
from fl_runtime.app.relay import Relay, RelayHooks
from fl_runtime.app.run_settings import RunSettings, read_node_names
from fl_runtime.errors import FederationError, FlError
from fl_runtime.learning.data import read_csv
from fl_runtime.learning.families import family

app = ServerApp()


def wait_for_members(grid: PollingGrid, settings: RunSettings) -> list[int]:
    """Every expected member's node, or FederationError naming those that never joined."""
    expected = max(settings.expected_clients, settings.min_clients)
    try:
        nodes = wait_for_clients(grid, expected, settings.node_wait_timeout, expected=expected)
    except FederationError:
        nodes = list(grid.get_node_ids())
        known = read_node_names(settings.node_names)
        joined = {known.get(node) for node in nodes}
        missing = [name for name in settings.expected_members if name not in joined]
        who = ", ".join(missing) if missing else f"{expected - len(nodes)} of the {expected} expected"
        raise FederationError(
            f"a run starts with every member, and {who} never joined: no SuperNode connected within "
            f"{settings.node_wait_timeout:g} s (raise node-wait-timeout, or check those members' logs)"
        ) from None
    return nodes


def run(grid: Grid, settings: RunSettings, events: EventLog, run_id: str) -> None:
    """Members, keys, steps, outputs (see the module docstring)."""
    from fl_runtime.app.report import write_outputs

    test = read_csv(settings.test_data)
    polling = PollingGrid(grid, settings.reply_poll_seconds)
    nodes = wait_for_members(polling, settings)
    relay = Relay(polling, settings, run_id, lambda: read_node_names(settings.node_names))
    members = relay.exchange_keys(nodes, test.features)
    events.emit({"event": "keys", "members": members})
    history = History(test, events.emit)
    final = relay.run(test.features, RelayHooks(history.on_findings, history.drop))
    threshold = history.thresholds[history.final_round]  # chosen on the members' pooled validation parts
    model = family(settings.plan.family).model(final, tuple(test.features), threshold)
    write_outputs(
        settings.out_dir,
        model=model,
        history=history,
        members=members,
        settings=settings,
        transcript=relay.transcript.closed(None),
    )
    events.emit({"event": "done", "out-dir": str(settings.out_dir)})


@app.main()
def main(grid: Grid, context: Context) -> None:
    settings = RunSettings.from_run_config(context.run_config)
    events = EventLog(settings.out_dir / EVENTS_FILE)
    try:
        run(grid, settings, events, str(context.run_id))
    except Exception as error:
        events.emit(
            {
                "event": "failed",
                "message": str(error) if isinstance(error, FlError) else f"{type(error).__name__}: {error}",
            }
        )
        raise
