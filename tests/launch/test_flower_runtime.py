"""The one module that uses Flower modules which are not public API: every name and signature it relies on, so
that an upgrade of flwr fails here, loudly and first, not in a client's training job."""

from __future__ import annotations

import ast
import importlib
import inspect

import flwr

from fl_runtime.launch import flower_runtime
from tests.helpers import PROJECT

MODULE = PROJECT / "fl_runtime" / "launch" / "flower_runtime.py"

# the parameters each Flower function or class is called with, by name
SIGNATURES = {
    ("flwr.supercore.inflatable.inflatable_utils", "pull_and_inflate_object_from_tree"): {
        "object_tree", "pull_object_fn", "confirm_object_received_fn", "return_type", "initial_backoff", "backoff_cap",
    },
    ("flwr.supernode.runtime.run_clientapp", "push_message"): {"client", "message", "context"},
    ("flwr.supernode.runtime.run_clientapp", "push_task_output"): {"client", "context", "sub_status", "details"},
    ("flwr.clientapp.utils", "get_load_client_app_fn"): {"default_app_ref", "app_path", "multi_app"},
    ("flwr.supercore.interceptors.http.superexec_auth", "SuperExecAuthHttpInterceptor"): {
        "master_secret", "protected_methods",
    },
    ("flwr.supercore.heartbeat", "HeartbeatSender"): {"heartbeat_fn"},
    ("flwr.supercore.inflatable.inflatable_protobuf_utils", "make_pull_object_fn_protobuf"): {
        "pull_object_protobuf", "node", "run_id",
    },
}  # fmt: skip


def flower_imports() -> list[tuple[str, str]]:
    tree = ast.parse(MODULE.read_text())
    return [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flwr")
        for alias in node.names
    ]


def test_the_installed_flower_is_the_release_the_runner_was_written_for():
    assert flwr.__version__ == flower_runtime.FLOWER_VERSION


def test_every_flower_name_the_runner_imports_exists():
    missing = []
    for module, name in flower_imports():
        if not hasattr(importlib.import_module(module), name):
            missing.append(f"{module}.{name}")
    assert missing == []
    assert ("flwr.supernode.runtime.run_clientapp", "push_message") in flower_imports()  # the reader reads


def test_the_flower_functions_the_runner_calls_take_the_parameters_it_passes():
    for (module, name), parameters in SIGNATURES.items():
        target = getattr(importlib.import_module(module), name)
        accepted = set(inspect.signature(target).parameters)
        assert parameters <= accepted, f"{module}.{name} no longer takes {sorted(parameters - accepted)}"


def test_the_runtime_api_still_offers_what_a_task_needs():
    from flwr.common.constant import ErrorCode, SubStatus
    from flwr.supercore.constant import TaskType
    from flwr.supercore.runtime import RuntimeHttpClient
    from flwr.supercore.task_identity import TaskIdentity

    for method in ("AcquireTask", "PullTaskInput", "PullMessages", "PullObject", "ConfirmMessageReceived",
                   "PushMessages", "PushObject", "PushTaskOutput", "SendTaskHeartbeat"):  # fmt: skip
        assert callable(getattr(RuntimeHttpClient, method)), method
    assert {"server_address", "insecure", "root_certificates", "interceptors", "retry_invoker"} <= set(
        inspect.signature(RuntimeHttpClient.from_server_address).parameters
    )
    assert TaskType.CLIENT_APP == "flwr-clientapp"
    assert SubStatus.COMPLETED and SubStatus.FAILED and ErrorCode.CLIENT_APP_RAISED_EXCEPTION
    assert {"task_id", "run_id", "node_id"} <= {name.lstrip("_") for name in vars(TaskIdentity)}
