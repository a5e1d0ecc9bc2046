"""What tests share besides fixtures: where the project and the CMS data are, hand-made CSVs."""

from __future__ import annotations

import ast
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
CMS_CSV = PROJECT.parent / "shared" / "data" / "cms_provider_fraud.csv"


def write_rows(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    """A hand-made CSV, for inputs the data module must reject."""
    path.write_text("\n".join([",".join(header), *(",".join(str(c) for c in row) for row in rows)]) + "\n")
    return path


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function, as absolute names
    (``from fl_runtime.app import records`` imports the module fl_runtime.app.records)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import (use absolute ones, which the architecture tests read)"
            base = node.module or ""
            found.update(f"{base}.{a.name}" if _is_module(f"{base}.{a.name}") else base for a in node.names)
    return found


def _is_module(name: str) -> bool:
    return PROJECT.joinpath(*name.split(".")).with_suffix(".py").exists()
