"""The trees exported as an XGBoost model score the CMS rows as the federation does."""

from __future__ import annotations

import json

import numpy as np
import xgboost

from fl_runtime.learning.binning import agree_edges, bin_codes
from fl_runtime.learning.tree_export import XGBOOST_VERSION, to_xgboost
from fl_runtime.learning.trees import TreeSettings, boost


def test_xgboost_loads_the_export_and_its_margins_are_the_federations_to_1e_5(cms, tmp_path):
    assert tuple(int(p) for p in xgboost.__version__.split(".")[:3]) == XGBOOST_VERSION
    edges = agree_edges([cms.X], 20)
    codes = bin_codes(cms.X, edges)
    ensemble = boost(codes, cms.y.astype(np.float64), TreeSettings())  # the default model: 80 trees of depth 4
    path = tmp_path / "model.json"
    path.write_text(json.dumps(to_xgboost(ensemble, edges, cms.features)))
    booster = xgboost.Booster(model_file=str(path))
    assert booster.feature_names == list(cms.features) and booster.num_boosted_rounds() == 80
    theirs = booster.predict(xgboost.DMatrix(cms.X, feature_names=list(cms.features)), output_margin=True)
    assert np.abs(theirs - ensemble.margin(codes)).max() < 1e-5


def test_a_value_on_an_edge_goes_right_in_xgboost_as_in_the_federation(cms, tmp_path):
    edges = agree_edges([cms.X], 20)
    ensemble = boost(bin_codes(cms.X, edges), cms.y.astype(np.float64), TreeSettings(trees=1, depth=1))
    [tree] = ensemble.trees
    feature, edge = tree.feature[0], edges[tree.feature[0]][tree.bin[0]]
    rows = np.tile(np.median(cms.X, axis=0), (2, 1))
    rows[:, feature] = [float(np.nextafter(edge, np.float32(0))), float(edge)]  # just below, and on the edge
    path = tmp_path / "model.json"
    path.write_text(json.dumps(to_xgboost(ensemble, edges, cms.features)))
    named = xgboost.DMatrix(rows, feature_names=list(cms.features))
    theirs = xgboost.Booster(model_file=str(path)).predict(named, output_margin=True)
    ours = ensemble.margin(bin_codes(rows, edges))
    assert ours[0] != ours[1] and np.abs(theirs - ours).max() < 1e-6


def test_xgboost_sends_a_missing_value_where_the_federation_does(cms_missing, tmp_path):
    edges = agree_edges([cms_missing.X], 20)
    codes = bin_codes(cms_missing.X, edges)
    ensemble = boost(codes, cms_missing.y.astype(np.float64), TreeSettings(trees=50, depth=4))
    assert any(any(tree.default_left) for tree in ensemble.trees)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(to_xgboost(ensemble, edges, cms_missing.features)))
    named = xgboost.DMatrix(cms_missing.X, feature_names=list(cms_missing.features))  # NaN: XGBoost's missing
    theirs = xgboost.Booster(model_file=str(path)).predict(named, output_margin=True)
    assert np.abs(theirs - ensemble.margin(codes)).max() < 1e-5
