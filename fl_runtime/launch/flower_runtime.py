"""The SuperNode's Runtime API, as a client-owned ClientApp runner needs it.

Flower's own executor (``flower-superexec --plugin-type clientapp``) starts a fresh ``flwr-clientapp``
process per message, and runs whatever FAB the SuperLink sent. The runner in ``runner`` takes its
place: it acquires each task, pulls the task's FAB and message, runs the ClientApp in one long-lived
process and pushes the reply, exactly as ``flwr-clientapp`` does, but only for an approved app.

This is the one module of the project that uses Flower modules which are not public API
(``flwr.supercore``, ``flwr.supernode.runtime``, ``flwr.clientapp.utils``, ``flwr.proto``). They are
those ``flwr-clientapp`` and ``flower-superexec`` use themselves; nothing of Flower is patched.
``tests/launch/test_flower_runtime.py`` checks every name and signature used here, so an upgrade of
flwr fails there, loudly, before anything else does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from flwr.app import Context, Message
from flwr.app.error import Error
from flwr.clientapp import ClientApp
from flwr.clientapp.utils import get_load_client_app_fn
from flwr.common.constant import ErrorCode, SubStatus
from flwr.common.serde import context_from_proto, fab_from_proto, run_from_proto
from flwr.proto.node_pb2 import Node  # pylint: disable=E0611
from flwr.proto.runtime_pb2 import (  # pylint: disable=E0611  # pylint: disable=E0611
    AcquireTaskRequest,
    PullAppMessagesRequest,
    PullTaskInputRequest,
    SendTaskHeartbeatRequest,
)
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender
from flwr.supercore.inflatable.inflatable_protobuf_utils import (
    make_confirm_message_received_fn_protobuf,
    make_pull_object_fn_protobuf,
)
from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.interceptors.http.superexec_auth import SuperExecAuthHttpInterceptor
from flwr.supercore.retry import RetryInvoker, exponential
from flwr.supercore.run import Run
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supercore.task_identity import TaskIdentity
from flwr.supernode.runtime.run_clientapp import push_message, push_task_output

FLOWER_VERSION = "1.42.0"  # the release these internals were read from
ACQUIRE_METHOD = "/flwr.proto.Runtime/AcquireTask"  # what the SuperNode's SuperExec auth protects
# A task is handed out while its SuperNode is still fetching the message's parts from the SuperLink; Flower's
# own pull then waits a first fixed second before asking again. Asking every 20 ms costs a few requests.
PULL_BACKOFF_SECONDS = 0.02
PULL_BACKOFF_CAP_SECONDS = 0.5


# How long a call may keep retrying an unreachable SuperNode. Flower's own invoker retries forever: a runner
# whose SuperNode died would then poll a dead port for ever (two were once found so, 19 and 43 minutes on).
ACQUIRE_RETRY_SECONDS = 0.0  # the runner polls for tasks anyway: one try, and it checks its node is alive
TASK_RETRY_SECONDS = 60.0


def _retries(seconds: float) -> RetryInvoker:
    return RetryInvoker(
        wait_gen_factory=lambda: exponential(max_delay=2),
        recoverable_exceptions=httpx.TransportError,
        max_tries=1 if seconds == 0 else None,
        max_time=seconds or None,
        jitter=None,
    )


def _client(address: str, interceptors: list, retry_seconds: float = TASK_RETRY_SECONDS) -> RuntimeHttpClient:
    return RuntimeHttpClient.from_server_address(
        server_address=address,
        insecure=True,  # the SuperNode's Runtime API listens on this machine's loopback only
        root_certificates=None,
        interceptors=interceptors,
        retry_invoker=_retries(retry_seconds),
    )


class TaskSource:
    """Acquires ClientApp tasks from a SuperNode, as its SuperExec would (signed with the node's secret)."""

    def __init__(self, address: str, auth_secret: bytes) -> None:
        self.address = address
        interceptors = [
            RuntimeVersionHttpInterceptor(component_name="SuperExec"),
            SuperExecAuthHttpInterceptor(master_secret=auth_secret, protected_methods={ACQUIRE_METHOD}),
        ]
        self._client = _client(address, interceptors, ACQUIRE_RETRY_SECONDS)

    def acquire(self) -> str | None:
        """The token of the next pending ClientApp task; None when there is none, or the SuperNode does not
        answer yet (it starts beside the runner, and restarts while a job retries joining)."""
        try:
            answer = self._client.AcquireTask(AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP]))
        except httpx.TransportError:
            return None
        return answer.token if answer.HasField("task") and answer.token else None

    def close(self) -> None:
        self._client.close()


@dataclass
class TaskInput:
    message: Message
    context: Context
    run: Run
    fab: bytes  # the FAB, as the SuperLink sent it


class Task:
    """One acquired task: pull its input once, reply once, finish; heartbeats while it runs."""

    def __init__(self, address: str, token: str) -> None:
        version = RuntimeVersionHttpInterceptor(component_name="flwr-clientapp")
        self._client = _client(address, [version, RuntimeTokenHttpInterceptor(token)])
        self._heartbeat = HeartbeatSender(self._beat)
        self.started = time.time()

    def _beat(self) -> bool:
        try:
            self._client.SendTaskHeartbeat(SendTaskHeartbeatRequest())
        except Exception:
            return False
        return True

    def pull(self) -> TaskInput:
        """The task's context, run, FAB and message: what ``flwr-clientapp`` pulls, without its fixed first
        second of waiting for the message's parts (see PULL_BACKOFF_SECONDS)."""
        self._heartbeat.start()
        answer = self._client.PullTaskInput(PullTaskInputRequest())
        TaskIdentity.task_id, TaskIdentity.run_id = answer.task_id, answer.run.run_id
        TaskIdentity.node_id = answer.context.node_id
        context, run, fab = context_from_proto(answer.context), run_from_proto(answer.run), fab_from_proto(answer.fab)
        pulled = self._client.PullMessages(PullAppMessagesRequest())
        if not pulled.messages_list:
            raise RuntimeError("the SuperNode handed out a task without a message")
        tree, node = pulled.message_object_trees[0], Node(node_id=context.node_id)
        message = pull_and_inflate_object_from_tree(
            tree,
            make_pull_object_fn_protobuf(self._client.PullObject, node, context.run_id),
            make_confirm_message_received_fn_protobuf(self._client.ConfirmMessageReceived, node, context.run_id),
            return_type=Message,
            initial_backoff=PULL_BACKOFF_SECONDS,
            backoff_cap=PULL_BACKOFF_CAP_SECONDS,
        )
        message.metadata.__dict__["_message_id"] = tree.object_id  # as flwr-clientapp: the id is not in the tree
        return TaskInput(message, context, run, fab.content)

    def reply(self, message: Message, context: Context) -> None:
        push_message(self._client, message, context)

    def refuse(self, task: TaskInput, reason: str) -> None:
        """An error reply in place of the ClientApp's: the server sees the reason, nothing ran."""
        error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason)
        self.reply(Message(error, reply_to=task.message), task.context)

    def finish(self, context: Context | None, failure: str | None = None) -> None:
        push_task_output(self._client, context, SubStatus.FAILED if failure else SubStatus.COMPLETED, failure or "")

    def close(self) -> None:
        if self._heartbeat.is_running:
            self._heartbeat.stop()
        self._client.close()


def load_client_app(run: Run, app_dir: Path) -> ClientApp:
    """The ClientApp that the pyproject.toml of the app unpacked in ``app_dir`` names."""
    load = get_load_client_app_fn(default_app_ref="", app_path=str(app_dir), multi_app=True)
    return load(run.fab_id, run.fab_version, run.fab_hash)
