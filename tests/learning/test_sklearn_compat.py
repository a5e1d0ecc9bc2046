"""The task code on scikit-learn 1.4.2, the version in the SageMaker scikit-learn 1.4-2 image.

A separate virtualenv with scikit-learn 1.4.2 (cached in .cache/) runs the client's whole local path
(its CSV written and read, split, SMOTE, the state machine's L2 and L1 rounds, the reference fit, the saved
Pipeline)
and must produce the same numbers as the project's environment with the latest scikit-learn.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import PROJECT

pytestmark = pytest.mark.slow
OLD_STACK = [
    "scikit-learn==1.4.2",
    "imbalanced-learn==0.14.2",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "joblib==1.6.0",
    "pyarrow==26.0.1",
]

SCRIPT = r"""
import json, sys, joblib, io, warnings
import numpy as np, sklearn
from fl_runtime.learning.synthetic import generate
from fl_runtime.learning.stats import GlobalStats
from fl_runtime.learning.task import ClientData, ClientRows, TrainConfig, TrainingPlan
from fl_runtime.learning.baselines import federated
from fl_runtime.learning.model import Weights, build_pipeline, fit_to_convergence
warnings.simplefilter("error", FutureWarning)  # no deprecated scikit-learn API on either version
import tempfile, pathlib
from fl_runtime.learning.data import read_csv, write_csv
csv_path = pathlib.Path(tempfile.mkdtemp()) / "client.csv"
write_csv(csv_path, generate(2000, seed=11))
data = read_csv(csv_path)
client = ClientData.split(data, seed=2)
smote = client.prepare(GlobalStats.from_moments([client.moments()], "smote"), seed=2)
test = client.validation
l2 = federated([client], test, TrainingPlan(seed=2))
l1 = federated([client], test, TrainingPlan(train=TrainConfig(C=0.05, penalty="l1"), seed=2, tolerance=1e-9))
stats = l2.state.stats
prepared = client.prepare(stats, seed=2)
reference = fit_to_convergence(prepared.train_Z, prepared.train_y, 1.0, "l2")
model = build_pipeline(data.features, stats.mean, stats.scale, l2.state.weights, stats.prior_logit)
buffer = io.BytesIO(); joblib.dump(model, buffer); buffer.seek(0)
print(json.dumps({
    "version": sklearn.__version__,
    "n_examples": smote.n_examples,
    "train_sum": float(smote.train_Z.sum()),
    "update": l2.state.weights.vector.tolist(),
    "l1": l1.state.weights.vector.tolist(),
    "reference": reference.vector.tolist(),
    "proba": joblib.load(buffer).predict_proba(data.X[:50])[:, 1].tolist(),
    "auc": prepared.validation_metrics(l2.state.weights, stats.prior_logit)["roc-auc"],
}))
"""


@pytest.fixture(scope="session")
def old_python():
    """Built once for every worker that asks (under a lock: two workers building it at once would clear each other's
    files), with uv (the dev environment's, a Flower dependency): its first test about 10 s here, where this fixture
    took 30 to 80 s with pip in make test."""
    folder = PROJECT / ".cache" / "venv-sklearn-1.4.2"
    python = folder / "bin" / "python"
    stamp = folder / ".installed"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / "venv-sklearn-1.4.2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not stamp.exists() or stamp.read_text() != " ".join(OLD_STACK):
            venv.create(folder, clear=True)
            uv = Path(sys.executable).parent / "uv"
            subprocess.run(
                [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", python, *OLD_STACK],
                check=True,
                timeout=600,
            )
            stamp.write_text(" ".join(OLD_STACK))
    return python


def run_script(python, script: str = SCRIPT) -> dict:
    """``script`` under ``python`` (with this project importable); its JSON answer."""
    done = subprocess.run(
        [python, "-c", script],
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env={"PYTHONPATH": str(PROJECT)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_client_path_gives_the_same_model_on_scikit_learn_1_4_2_and_the_latest(old_python):
    old, new = run_script(old_python), run_script(sys.executable)
    assert old["version"] == "1.4.2" and new["version"] != "1.4.2"
    assert old["n_examples"] == new["n_examples"]
    assert old["train_sum"] == pytest.approx(new["train_sum"], rel=1e-10)  # SMOTE: same synthetic rows
    np.testing.assert_allclose(old["update"], new["update"], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(old["reference"], new["reference"], atol=1e-5)
    np.testing.assert_allclose(old["l1"], new["l1"], rtol=1e-9, atol=1e-12)
    assert 0 < sum(v == 0 for v in new["l1"]) < len(new["l1"]) - 1  # L1 really zeroes coefficients
    np.testing.assert_allclose(old["proba"], new["proba"], rtol=1e-9)
    assert old["auc"] == pytest.approx(new["auc"])
