"""Flower ClientApp: a member of the federation, on its own data, by its own rules (``member``).

The member's runner (``fl_runtime.launch.runner``) calls this app in one warm process for every message of a run,
so the member keeps its session (keys, transcript, state machine) and its prepared rows in memory, in this
module, from the keys query to the last step; nothing of them travels through Flower's context. A process that
lost its session (restarted mid-run) refuses the run's further steps: the member has dropped out.

Node config (``flower-supernode --node-config``), set by the member's own launcher, never by the server:
- ``data-path``: the member's CSV, split here into training and validation parts; or ``train-path`` and
  ``validation-path``: a split made beforehand (``stage-data`` does that);
- ``pins-file``: the member's pinned settings (``pins.ClientPins``): its name, the members and their identity
  fingerprints, k, m, re-runs, seed, identity key, ranges;
- ``view-dir`` (optional): where it writes its own view of the run and its signed transcript, after every step;
- ``model-dir`` (optional): where the final model is saved as ``model.joblib`` when it is known;
- ``progress-file`` (optional): one JSON line per message handled, for whoever supervises the node.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fl_runtime.app import protocol
from fl_runtime.app.identity import load_identity
from fl_runtime.app.member import MemberSession
from fl_runtime.app.pins import ClientPins
from fl_runtime.app.run_settings import MODEL_FILE, TASK_STARTED_ENV, VIEW_FILE
from fl_runtime.app.signed import Malformed
from fl_runtime.app.transcript import TRANSCRIPT_FILE, TranscriptError
from fl_runtime.errors import ConfigError, OptionsError
from fl_runtime.files import write_bytes_atomic, write_text_atomic
from fl_runtime.learning.data import check_split, check_trainable, read_columns, read_csv
from fl_runtime.learning.machine import Declined
from fl_runtime.learning.task import ClientData, ClientRows

app = ClientApp()
# what a member refuses with its reason told to the server: each names a rule, a field or a member, never data
REFUSALS = (Declined, TranscriptError, Malformed, protocol.ProtocolError, ConfigError)


def _task_start() -> float:
    """When this task started on the client (wall clock): the runner says when it took it; a process
    started for this one message started with it (Linux /proc)."""
    if TASK_STARTED_ENV in os.environ:
        return float(os.environ[TASK_STARTED_ENV])
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            return time.time() - float(uptime.read().split()[0]) + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.time()


@dataclass(frozen=True)
class NodeSettings:
    """This SuperNode's ``--node-config``, validated."""

    data: Path | tuple[Path, Path]  # one CSV to split here, or a (train, validation) split made beforehand
    pins_file: Path
    view_dir: Path | None
    model_dir: Path | None
    progress_file: Path | None

    @classmethod
    def of(cls, config: Mapping) -> NodeSettings:
        def path(key: str) -> Path | None:
            return Path(str(config[key])) if config.get(key) else None

        data, train, validation = path("data-path"), path("train-path"), path("validation-path")
        source: Path | tuple[Path, Path]
        if data is not None:
            source = data
        elif train is not None and validation is not None:
            source = (train, validation)
        else:
            raise OptionsError(
                'this SuperNode\'s --node-config needs data-path="/path/client.csv", or train-path and validation-path'
            )
        pins = path("pins-file")
        if pins is None:
            raise OptionsError("this SuperNode's --node-config needs pins-file: the member's pinned settings")
        return cls(source, pins, path("view-dir"), path("model-dir"), path("progress-file"))

    @property
    def first_file(self) -> Path:
        """A CSV of this member's, for its column names."""
        return self.data if isinstance(self.data, Path) else self.data[1]

    def client_data(self, seed: int) -> ClientData:
        if isinstance(self.data, Path):
            data = read_csv(self.data)
            check_trainable(data)
            return ClientData.split(data, seed=seed)
        train, validation = read_csv(self.data[0]), read_csv(self.data[1])
        check_split(train, validation)  # the very check stage-data and the job's entry point make
        return ClientData(train, validation)

    def report(self, event: dict) -> None:
        if self.progress_file is not None:
            with self.progress_file.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps({**event, "time": time.time()}) + "\n")


# this member's session of the run under way: one at a time, keyed by run, node and node config
_sessions: dict[tuple[int, int, str], MemberSession] = {}


def _session_key(context: Context) -> tuple[int, int, str]:
    return context.run_id, context.node_id, json.dumps(dict(context.node_config), sort_keys=True, default=str)


@app.query("keys")
def keys(msg: Message, context: Context) -> Message:
    """Check the run's settings against this member's ranges, then announce fresh per-run keys."""
    node = NodeSettings.of(context.node_config)
    try:
        settings = protocol.read_keys_request(msg.content)
        key = _session_key(context)
        if key in _sessions:
            raise Declined(f"this member already announced its keys for run {context.run_id}")
        for earlier in [k for k in _sessions if k[0] != context.run_id]:
            del _sessions[earlier]  # a new run: the previous run's session and rows go
        pins = ClientPins.read(node.pins_file)
        session = MemberSession.open(
            pins,
            load_identity(pins.identity),
            str(context.run_id),
            settings,
            read_columns(node.first_file),
            rows=lambda: ClientRows(node.client_data(pins.seed), pins.seed),
        )
    except REFUSALS as refusal:
        node.report({"message": "refused", "reason": str(refusal)})
        return protocol.refusal(msg, str(refusal))
    _sessions[key] = session
    node.report({"message": "keys", "member": session.name})
    return Message(protocol.keys_reply(session.announcement.to_bytes()), reply_to=msg)


@app.query("step")
def step(msg: Message, context: Context) -> Message:
    """Verify the previous step, step this member's own state machine, and answer its question."""
    started = time.time()
    node = NodeSettings.of(context.node_config)
    session = _sessions.get(_session_key(context))
    try:
        if session is None:
            raise Declined(
                f"this member holds no session of run {context.run_id} (it never announced its keys, or "
                "restarted since): it has dropped out"
            )
        request = protocol.read_step_request(msg.content)
        contribution = session.step(request)
    except REFUSALS as refusal:
        node.report({"message": "refused", "reason": str(refusal)})
        if session is not None:
            _write_view(node, session)
        return protocol.refusal(msg, str(refusal))
    model = _save_final_model(node, session) if session.done else None
    _write_view(node, session)
    node.report({"message": request.kind, "round": request.round, "attempt": request.attempt, "model": model})
    return Message(protocol.step_reply(contribution.to_bytes(), _task_start(), started), reply_to=msg)


def _write_view(node: NodeSettings, session: MemberSession) -> None:
    """This member's own record of the run, in its own account: what it answered, what it verified, its
    validation metrics of the final model, and its signed transcript."""
    if node.view_dir is None:
        return
    node.view_dir.mkdir(parents=True, exist_ok=True)
    view = {
        "member": session.name,
        "run": session.run,
        "settings": session.settings,
        "members": list(session.pins.member_names),
        "min-members": session.pins.min_members,
        "min-rows": session.pins.min_rows,
        "left": session.left,
        "steps": session.view,
        "final-validation": session.final_validation(),
    }
    write_text_atomic(node.view_dir / VIEW_FILE, json.dumps(view, indent=2, default=float))
    write_bytes_atomic(node.view_dir / TRANSCRIPT_FILE, session.transcript_bytes())


def _save_final_model(node: NodeSettings, session: MemberSession) -> str | None:
    """The final model, as the same model the server saves (without the threshold, which only the server's
    total of the final answers fixes), into this node's model-dir."""
    if node.model_dir is None:
        return None
    import joblib

    from fl_runtime.files import atomic_path

    path = node.model_dir / MODEL_FILE
    with atomic_path(path) as temporary:
        joblib.dump(session.machine.model(session.state, session.features, None), temporary)
    return str(path)


def _outside_the_protocol(msg: Message, context: Context) -> Message:
    """Any other message (a model to train, statistics to use, a question of the server's own): refused by name."""
    return protocol.refusal(
        msg,
        f"message type '{msg.metadata.message_type}' is not part of the relay protocol: a member answers only "
        f"{protocol.KEYS} and {protocol.STEP}, and takes no model, statistic or question from the server",
    )


for _register in (app.train(), app.evaluate(), app.query(), app.query("moments")):
    _register(_outside_the_protocol)
