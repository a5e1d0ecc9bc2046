"""Class balance by evidence on the real CMS data: every compare split, seeds 0-4, the 0.01 bound.

    python bench/bench_class_balance.py [--data ../shared/data/cms_provider_fraud.csv] [--out DIR]

Runs ``python -m fl_runtime compare --data CSV --seeds 0 1 2 3 4`` (auto class balance: the method picked
per split by the federated models' PR-AUC on the clients' pooled validation parts), prints the markdown
table of ROC-AUC by split, and exits 1 unless the chosen federated model is within 0.01 ROC-AUC of the
best centralised reference (plain, class-weighted, pooled SMOTE) on every split and seed. Two to four
minutes on a busy 2-core machine, too long for the test suite (tests/learning/test_compare.py checks two
of the splits).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
BOUND = 0.01


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=PROJECT.parent / "shared" / "data" / "cms_provider_fraud.csv")
    parser.add_argument(
        "--out", type=Path, help="where compare writes compare.md and compare.json (default: temporary)"
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="class-balance-"))
    command = [sys.executable, "-m", "fl_runtime", "compare", "--data", str(args.data), "--seeds", "0", "1", "2", "3"]
    command += ["4", "--out", str(out)]
    subprocess.run(command, check=True, cwd=PROJECT, stdout=subprocess.DEVNULL)
    markdown = (out / "compare.md").read_text()
    print(markdown.split("## ROC-AUC by split\n", 1)[1].split("\n## ", 1)[0].strip())
    document = json.loads((out / "compare.json").read_text())
    worst = document["summary"]["max-abs-gap-federated-best-centralised"]
    print(
        f"\nlargest |federated (chosen) - best centralised|: {worst:.4f} (bound {BOUND}); "
        f"chosen {document['summary']['chosen']}"
    )
    return 0 if worst <= BOUND else 1


if __name__ == "__main__":
    sys.exit(main())
