"""What tests share besides fixtures: where the project and the CMS data are, hand-made CSVs."""

from __future__ import annotations

from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
CMS_CSV = PROJECT.parent / "shared" / "data" / "cms_provider_fraud.csv"


def write_rows(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    """A hand-made CSV, for inputs the data module must reject."""
    path.write_text("\n".join([",".join(header), *(",".join(str(c) for c in row) for row in rows)]) + "\n")
    return path
