"""The layout is the architecture: layers import only downwards, the Flower app carries no launcher or AWS code,
the CDK app synthesizes without Flower or the AWS SDK, and no module or function outgrows a quick read.

Read from the import statements themselves (every one, those inside functions included), so it cannot drift.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import PROJECT, imports_of

RUNTIME = PROJECT / "fl_runtime"
# lower number: lower layer. A module may import from its own layer and the ones below it.
LAYERS = {"base": 0, "learning": 1, "app": 2, "launch": 3, "aws": 4, "cli": 5}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60


def layer_of(module: str) -> str:
    """``fl_runtime.app.records`` -> app; the top-level modules are the base, but for the command line (``cli``,
    its options ``cli_options``, ``__main__``)."""
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and (RUNTIME / parts[1]).is_dir()):
        return parts[1]
    return "cli" if parts[-1] in ("cli", "cli_options", "__main__") else "base"


def module_name(path: Path) -> str:
    relative = path.relative_to(PROJECT).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def runtime_modules() -> list[Path]:
    return sorted(p for p in RUNTIME.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_package_of_the_runtime_is_a_known_layer():
    packages = {p.name for p in RUNTIME.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert packages == set(LAYERS) - {"base", "cli"}


@pytest.mark.parametrize("path", runtime_modules(), ids=lambda p: str(p.relative_to(PROJECT)))
def test_a_module_imports_only_from_its_own_layer_and_those_below(path):
    here = layer_of(module_name(path))
    upward = sorted(
        name for name in imports_of(path) if name.startswith("fl_runtime.") and LAYERS[layer_of(name)] > LAYERS[here]
    )
    assert upward == [], f"{module_name(path)} ({here}) imports from higher layers: {upward}"


def test_the_learning_task_and_the_base_need_neither_flower_nor_aws():
    for path in runtime_modules():
        if layer_of(module_name(path)) in ("base", "learning"):
            third_party = {name.split(".")[0] for name in imports_of(path)}
            assert not third_party & {"flwr", "boto3", "botocore"}, path


def test_the_flower_app_imports_nothing_of_launch_or_aws_and_no_aws_sdk():
    for path in runtime_modules():
        if layer_of(module_name(path)) in ("app", "learning", "base"):
            names = imports_of(path)
            assert not [
                n for n in names if n.startswith(("fl_runtime.launch", "fl_runtime.aws", "boto3", "botocore"))
            ], path


def _all_code() -> list[Path]:
    return [
        *runtime_modules(),
        *sorted((PROJECT / "stacks").rglob("*.py")),
        PROJECT / "app.py",
        *sorted((PROJECT / "bench").glob("*.py")),
    ]


def test_no_module_is_over_400_lines_and_no_function_over_60():
    too_long = []
    for path in _all_code():
        text = path.read_text()
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(PROJECT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(PROJECT)}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []


def test_the_cdk_app_loads_without_flower_or_the_aws_sdk():
    """Synthesizing must not import the federation's runtime dependencies: the CDK app reads the settings
    contract and packages the runtime's files, nothing more."""
    probe = (
        "import sys, app, stacks.bundle.lock\n"
        "heavy = {'flwr', 'boto3', 'botocore', 'sklearn', 'imblearn'}\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & heavy)\n"
        "print(','.join(loaded))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=PROJECT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_layer_reader_sees_imports_inside_functions_and_package_relative_names(tmp_path):
    """The checks above are only as good as the import reader: it must not miss a lazy import."""
    sample = RUNTIME / "app" / "server_app.py"
    names = imports_of(sample)
    assert "fl_runtime.app.events" in names  # `from fl_runtime.app.events import ...`
    assert "fl_runtime.app.protocol" in imports_of(
        RUNTIME / "app" / "client_app.py"
    )  # `from fl_runtime.app import protocol`
    assert "fl_runtime.app.report" in names  # imported inside run()
    assert layer_of("fl_runtime.aws.federate") == "aws" and layer_of("fl_runtime.files") == "base"
    assert layer_of("fl_runtime.cli") == "cli" and layer_of("fl_runtime.app") == "app"
