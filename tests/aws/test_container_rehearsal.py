"""Container rehearsal: the synthesized bundle, a clean virtualenv, the SageMaker script-mode contract.

What a client's training job does, on this machine: /opt/ml laid out (code, input/data/train, model,
output), the bundle's requirements installed with --no-index from its own wheels into a virtualenv
that has nothing else, and the entry point run with the SM_* variables and the hyperparameters of the
CreateTrainingJob request, against a real SuperLink started by `federate`.

(The image's Python is 3.12; this machine has 3.11, for which the bundle carries wheels too. That the
3.12 set resolves from the bundle alone is tested in test_bundle.py.)
"""

from __future__ import annotations

import json
import subprocess
import venv

import joblib
import pytest

from fl_runtime.launch.flower import free_port
from fl_runtime.learning.partition import PartitionSpec, partition
from tests.aws.conftest import federate
from tests.rehearsal import rehearsal

pytestmark = pytest.mark.slow


def test_the_entry_point_runs_from_the_bundle_in_a_clean_virtualenv_and_saves_the_model(
    cms, synthesized_bundle, tmp_path
):
    environment = tmp_path / "clean-venv"
    venv.create(environment, with_pip=True)
    python = environment / "bin" / "python"
    assert subprocess.run([python, "-c", "import flwr"], capture_output=True).returncode != 0  # nothing installed yet
    test, clients = partition(cms, PartitionSpec(1, "iid", test_fraction=0.2, seed=0))
    description = rehearsal(
        tmp_path,
        test,
        {"insurer-a": clients[0]},
        port=free_port(),
        python=str(python),
        bundle=synthesized_bundle,
        install_requirements=True,
    )
    # the clean virtualenv installs the bundle's wheels before it connects: a longer connect timeout
    process = federate(description, tmp_path / "out", "--rounds", 2, "--min-clients", 1, "--run-name", "rehearsal",
                       "--connect-timeout", 300)  # fmt: skip
    stdout, stderr = process.communicate(timeout=900)
    assert process.returncode == 0, stderr[-3000:] + stdout[-3000:]
    job = tmp_path / "jobs" / "fl-client-rehearsal-insurer-a"
    opt_ml = job / "opt_ml"
    assert sorted(p.name for p in (opt_ml / "input" / "data" / "train").iterdir()) == ["train.csv", "validation.csv"]
    assert (opt_ml / "code" / "wheels").is_dir() and (opt_ml / "code" / "sagemaker_client.py").is_file()
    model = joblib.load(opt_ml / "model" / "model.joblib")
    assert model.predict_proba(test.X[:5]).shape == (5, 2)
    installed = subprocess.run(
        [
            python,
            "-c",
            "import sklearn, flwr, imblearn, numpy; print(sklearn.__version__, flwr.__version__, numpy.__version__)",
        ],
        capture_output=True,
        text=True,
    )
    assert installed.stdout.split() == ["1.4.2", "1.42.0", "2.1.0"]  # the image's versions, from the bundle's wheels
    assert "client insurer-a: job fl-client-rehearsal-insurer-a Completed" in stdout
    view = json.loads((opt_ml / "output" / "data" / "client_view.json").read_text())  # the member's own record
    assert view["member"] == "insurer-a" and view["final-validation"]["roc-auc"] > 0.5
    assert (opt_ml / "output" / "data" / "transcript.jsonl").is_file()
