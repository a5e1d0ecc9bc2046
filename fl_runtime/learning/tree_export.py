"""The boosted trees as an XGBoost model (its JSON format, as XGBoost 3.2 saves and loads it).

XGBoost sends a row left when its float32 value is below the split condition: the federation's own rule (a row
with bin code <= b has a value below edges[b], ``binning``), so each split's condition is that edge, and a
missing value (NaN) the way the split's learned default direction says and the
exported model's margins are the federation's (leaf values and the base score rounded to float32 by XGBoost:
within 1e-5 on the CMS rows). The base score is the pooled positive rate, whose log-odds is the ensemble's
baseline. Written with the standard library alone; loading it needs XGBoost, scoring with it does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fl_runtime.learning.trees import Ensemble, Tree

XGBOOST_VERSION = (3, 2, 0)  # the format version written (XGBoost 3.1 and later read it)
NO_PARENT = 2147483647


def _number(value: float) -> str:
    return f"{value:.9E}"


def _condition(feature_edges: np.ndarray, bin_: int) -> float:
    """Values below it go left: the edge after ``bin_``; after the last bin (every present value left, only
    missing ones right, or the reverse) the largest float32."""
    return float(feature_edges[bin_]) if bin_ < len(feature_edges) else float(np.finfo(np.float32).max)


def _tree(tree: Tree, index: int, edges: Sequence[np.ndarray], features: int, lowest: Sequence[bool]) -> dict:
    nodes = len(tree.feature)
    leaf = [f < 0 for f in tree.feature]
    conditions = [
        tree.value[n] if leaf[n] else _condition(edges[tree.feature[n]], tree.bin[n]) for n in range(nodes)
    ]  # XGBoost keeps a leaf's value where a split keeps its condition
    zeros = [0] * nodes
    return {
        "base_weights": [float(v) for v in tree.value],
        "categories": [],
        "categories_nodes": [],
        "categories_segments": [],
        "categories_sizes": [],
        "default_left": [  # where NaN goes: the learned way, or left where it is taken as the lowest value
            int(not leaf[n] and (tree.default_left[n] or lowest[tree.feature[n]])) for n in range(nodes)
        ],
        "id": index,
        "left_children": [-1 if leaf[n] else tree.left[n] for n in range(nodes)],
        "loss_changes": [0.0] * nodes,
        "parents": [NO_PARENT if p < 0 else p for p in tree.parent],
        "right_children": [-1 if leaf[n] else tree.right[n] for n in range(nodes)],
        "split_conditions": conditions,
        "split_indices": [0 if leaf[n] else tree.feature[n] for n in range(nodes)],
        "split_type": zeros,
        "sum_hessian": tree.cover(),
        "tree_param": {
            "num_deleted": "0",
            "num_feature": str(features),
            "num_nodes": str(nodes),
            "size_leaf_vector": "1",
        },
    }


def to_xgboost(
    ensemble: Ensemble,
    edges: Sequence[np.ndarray],
    features: Sequence[str],
    missing_kept: Sequence[bool] | None = None,
) -> dict:
    """The ensemble as XGBoost's JSON model document (``json.dumps`` it; ``xgboost.Booster(model_file=...)``
    loads it). A feature whose missing values are taken as its lowest (``missing_kept`` False) sends NaN left at
    every split, as bin 0 goes."""
    count = len(features)
    base_score = 1.0 / (1.0 + math.exp(-ensemble.baseline))
    lowest = [not kept for kept in missing_kept] if missing_kept is not None else [False] * count
    trees = [_tree(tree, i, edges, count, lowest) for i, tree in enumerate(ensemble.trees)]
    return {
        "learner": {
            "attributes": {},
            "feature_names": list(features),
            "feature_types": [],
            "gradient_booster": {
                "model": {
                    "cats": {"enc": [], "feature_segments": [], "sorted_idx": []},
                    "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": str(len(trees))},
                    "iteration_indptr": list(range(len(trees) + 1)),
                    "tree_info": [0] * len(trees),
                    "trees": trees,
                },
                "name": "gbtree",
            },
            "learner_model_param": {
                "base_score": f"[{_number(base_score)}]",
                "boost_from_average": "1",
                "num_class": "0",
                "num_feature": str(count),
                "num_target": "1",
            },
            "objective": {"name": "binary:logistic", "reg_loss_param": {"scale_pos_weight": "1"}},
        },
        "version": list(XGBOOST_VERSION),
    }
