"""SageMaker's scikit-learn inference container, as far as the published model's script can tell.

The container extracts ``model.tar.gz`` into the model directory, puts ``SAGEMAKER_SUBMIT_DIRECTORY`` (the
archive's ``code/``) where Python finds it, imports ``SAGEMAKER_PROGRAM`` (``inference.py``) as a top-level
module, calls ``model_fn`` with the model directory once, then ``input_fn``, ``predict_fn`` and ``output_fn``
per request. Here the same happens in this process, with the archive's own ``explain.py`` and nothing of
``fl_runtime`` on the way: the modules are imported from the extracted folder and removed afterwards.
"""

from __future__ import annotations

import importlib
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

SCRIPT_MODULES = ("inference", "explain")  # code/inference.py and the code/explain.py it imports


@dataclass(frozen=True)
class Served:
    script: ModuleType  # code/inference.py
    model: Any  # what its model_fn returned

    def invoke(self, body: str | bytes, content_type: str, accept: str | None) -> tuple[str, str]:
        """One InvokeEndpoint request, as the container's default transform chains the script's functions."""
        data = self.script.input_fn(body, content_type)
        return self.script.output_fn(self.script.predict_fn(data, self.model), accept)


@contextmanager
def serving(archive: Path, model_dir: Path) -> Iterator[Served]:
    with tarfile.open(archive) as packed:
        packed.extractall(model_dir, filter="data")
    code = str(model_dir / "code")
    saved = {name: sys.modules.pop(name) for name in SCRIPT_MODULES if name in sys.modules}
    sys.path.insert(0, code)
    try:
        script = importlib.import_module("inference")
        assert Path(script.explain.__file__).parent == Path(code), "explain must come from the archive"
        yield Served(script, script.model_fn(str(model_dir)))
    finally:
        sys.path.remove(code)
        for name in SCRIPT_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)
