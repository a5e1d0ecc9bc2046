"""The gbdt family's deliverable: the boosted trees with their bin edges, scoring raw rows.

``model.joblib`` holds one of these for a tree run, as it holds a scikit-learn Pipeline for logistic regression:
``predict_proba`` on raw feature values (binned with the federation's edges, ``binning.bin_codes``), the
column names it scores (``feature_names_in_``), the decision threshold the run chose (``fraud_threshold``, the
attribute ``explain`` reads), each row's reasons (``explain``: TreeSHAP) and the same model as XGBoost's JSON
(``tree_export``). Loading it needs this package (``joblib`` unpickles the class).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_runtime.learning import binning, tree_shap, trees
from fl_runtime.learning.explain import Explained
from fl_runtime.learning.tree_export import to_xgboost
from fl_runtime.learning.trees import Ensemble


@dataclass
class BoostedTreesModel:
    features: tuple[str, ...]
    edges: tuple[np.ndarray, ...]
    ensemble: Ensemble
    fraud_threshold: float | None = None  # named as explain.THRESHOLD_ATTRIBUTE, which explain.threshold reads
    missing_kept: tuple[bool, ...] | None = None  # per feature: missing values a bin of their own (else bin 0)

    @property
    def feature_names_in_(self) -> np.ndarray:
        return np.asarray(self.features, dtype=object)

    @property
    def classes_(self) -> np.ndarray:
        return np.array([0, 1])

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Each row's margin (log-odds of fraud)."""
        return self.ensemble.margin(self.codes(X))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = trees.sigmoid(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def explain(self, X: np.ndarray) -> Explained:
        """Each feature's exact contribution to each row's margin (path-dependent TreeSHAP, ``tree_shap``): the
        contributions and the bias add up to the margin."""
        codes = self.codes(X)
        contributions, bias = tree_shap.contributions(self.ensemble, codes)
        return Explained(self.ensemble.margin(codes), contributions, bias)

    def codes(self, X: np.ndarray) -> np.ndarray:
        return binning.bin_codes(np.asarray(X, dtype=np.float64), self.edges, self.missing_kept)

    def xgboost_json(self) -> dict:
        """The same model as XGBoost's JSON model document (``tree_export``)."""
        return to_xgboost(self.ensemble, self.edges, self.features, self.missing_kept)
