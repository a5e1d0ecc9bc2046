"""The published model as SageMaker takes it: ``model.tar.gz``, and each run's version in the model registry.

``model_archive`` writes what SageMaker's scikit-learn inference container serves as it is: ``model.joblib`` at
the top, ``code/inference.py`` (this package's ``inference.py``) and ``code/explain.py`` (the bytes of
``fl_runtime/learning/explain.py``, copied when the archive is written, so there is one source), and for a tree
model the NumPy-only modules it unpickles from (``code/fl_runtime/...``: ``TREE_MODULES``). It lives here,
with the AWS layer, rather than beside ``explain`` in ``learning``: ``learning`` is part of the Flower app whose
content hash every client account approves, and how the server account serves its model is none of the code a
client runs; a change to serving must not ask every client to approve a new app.

``registration_request`` is the run's CreateModelPackage request: version N of the server's model package group,
``PendingManualApproval`` (a person approves a model for use, never the run), the archive in the results bucket
served by the configured inference image, the run's metrics (``metrics.json`` in S3 with its digest, and the
headline numbers as customer metadata), which clients trained it on how many rows, and the server's data key for
the registry's copy of all this. ``federate`` writes it next to the outputs (``model-package.json``), so a
registration that failed can be made later from the very same request.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fl_runtime.app.run_settings import METRICS_FILE, MODEL_FILE
from fl_runtime.aws.contract import ServerAccountSettings
from fl_runtime.files import write_tarball
from fl_runtime.learning import explain

MODEL_ARCHIVE = "model.tar.gz"
REQUEST_FILE = "model-package.json"
INFERENCE_SCRIPT = Path(__file__).with_name("inference.py")
# how SageMaker's framework containers find the script inside the model (the SageMaker Python SDK sets the same)
SERVING_ENVIRONMENT = {"SAGEMAKER_PROGRAM": INFERENCE_SCRIPT.name, "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code"}
CONTENT_TYPES = ["text/csv", "application/json"]  # what inference.py reads and answers
APPROVAL = "PendingManualApproval"
METADATA_MAX = 50  # CustomerMetadataProperties entries SageMaker keeps
DESCRIPTION_MAX = 1024


@dataclass(frozen=True)
class Registered:
    """A registered version: its ARN (or, in a rehearsal, where the request was kept) and its number."""

    where: str
    version: int


# the modules a tree model (learning.tree_model.BoostedTreesModel) needs to unpickle and score, NumPy only: the
# archive carries them under code/, where the container's Python finds them, as fl_runtime itself is not there
TREE_MODULES = (
    "__init__.py",
    "errors.py",
    "defaults.py",
    "learning/__init__.py",
    "learning/explain.py",
    "learning/trees.py",
    "learning/binning.py",
    "learning/tree_shap.py",
    "learning/tree_export.py",
    "learning/tree_model.py",
)


def model_archive(model_joblib: Path, out: Path) -> Path:
    """``out``: model.tar.gz for SageMaker's scikit-learn container, written reproducibly and atomically: the
    model, the script, ``explain`` beside it, and the tree model's modules (``TREE_MODULES``) as a package."""
    package = Path(explain.__file__).parent.parent
    write_tarball(
        out,
        {
            MODEL_FILE: Path(model_joblib),
            f"code/{INFERENCE_SCRIPT.name}": INFERENCE_SCRIPT,
            "code/explain.py": Path(explain.__file__),
            **{f"code/fl_runtime/{name}": package / name for name in TREE_MODULES},
        },
    )
    return out


def run_prefix(settings: ServerAccountSettings, run: str) -> str:
    """Where the run's outputs are published: s3://<results bucket>/<model prefix><run>/."""
    return f"s3://{settings.results_bucket}/{settings.model_prefix}{run}/"


def registration_request(settings: ServerAccountSettings, run: str, folder: Path) -> dict[str, Any]:
    """The CreateModelPackage request of the run whose outputs (with model.tar.gz) are in ``folder``."""
    metrics = json.loads((folder / METRICS_FILE).read_text())
    published = run_prefix(settings, run)
    archive = _sha256(folder / MODEL_ARCHIVE)
    container = {"Image": settings.inference_image, "ModelDataUrl": published + MODEL_ARCHIVE}
    return {
        "ModelPackageGroupName": settings.model_package_group,
        "ModelPackageDescription": description(run, metrics),
        "InferenceSpecification": {
            "Containers": [{**container, "Environment": dict(SERVING_ENVIRONMENT)}],
            "SupportedContentTypes": CONTENT_TYPES,
            "SupportedResponseMIMETypes": CONTENT_TYPES,
        },
        "ModelApprovalStatus": APPROVAL,
        "ModelMetrics": {
            "ModelQuality": {
                "Statistics": {
                    "ContentType": "application/json",
                    "S3Uri": published + METRICS_FILE,
                    "ContentDigest": f"sha256:{_sha256(folder / METRICS_FILE)}",
                }
            }
        },
        "CustomerMetadataProperties": metadata(run, metrics, archive),
        "MetadataProperties": {"GeneratedBy": f"python -m fl_runtime federate on notebook {settings.notebook}"},
        "Domain": "MACHINE_LEARNING",
        "Task": "CLASSIFICATION",
        "SecurityConfig": {"KmsKeyId": settings.data_key_arn},
        # a retried request (the SDK retries on a timeout) makes one version, not two; another model, another one
        "ClientToken": hashlib.sha256(f"{published}{archive}".encode()).hexdigest()[:32],
    }


def metadata(run: str, metrics: dict[str, Any], archive_sha256: str) -> dict[str, str]:
    """The numbers a reviewer compares versions by, and what the server saw of the members' data: totals over the
    members (their number and the least any member contributes to: k), never one member's figure. Values are
    numbers and the run name: within the characters SageMaker allows."""
    final, federation = metrics["final"], metrics["federation"]
    return {
        "run": run,
        "roc-auc": _number(final.get("roc-auc")),
        "pr-auc": _number(final.get("pr-auc")),
        "threshold": _number(final.get("threshold")),
        "family": str(metrics["model"]["family"]),
        "rounds": str(final["round"]),  # the model version: rounds, or trees
        "members": str(len(federation["members"])),
        "min-members": str(federation["min-clients"]),
        "training-rows-total": str(federation["training-rows"]),
        "training-positives-total": str(federation["training-positives"]),
        "test-rows": str(metrics["test-set"]["rows"]),
        "model-sha256": archive_sha256,
    }


def description(run: str, metrics: dict[str, Any]) -> str:
    """One line (SageMaker refuses line breaks here): the data behind the version and how it scored."""
    final, federation = metrics["final"], metrics["federation"]
    text = (
        f"Federated fraud model, run {run}: trained in {len(federation['members'])} client accounts "
        f"({federation['training-rows']} training rows in total), {metrics['model']['family']}, {final['round']} "
        f"{_plural(metrics['model']['version'])}; only masked, signed sums "
        f"left them, the server saw totals over at least {federation['min-clients']} members. Server test set, "
        f"{metrics['test-set']['rows']} "
        f"providers: ROC-AUC {_number(final.get('roc-auc'))}, PR-AUC {_number(final.get('pr-auc'))}; flags at "
        f"probability >= {_number(final.get('threshold'))}."
    )
    return text if len(text) <= DESCRIPTION_MAX else text[: DESCRIPTION_MAX - 3] + "..."


def version_of(arn: str) -> int:
    """``arn:...:model-package/<group>/<version>`` -> version."""
    return int(arn.rsplit("/", 1)[1])


def _plural(version: str) -> str:
    return version if version.endswith("s") else f"{version}s"


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.6f}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
