"""explain: the threshold a saved model carries, including the edge a real run can produce."""

from __future__ import annotations

import numpy as np
import pytest

from fl_runtime.learning.explain import THRESHOLD_ATTRIBUTE, explain, threshold
from fl_runtime.learning.model import Weights, build_pipeline

FEATURES = ["a", "b", "c"]


def _model(value):
    pipeline = build_pipeline(
        FEATURES, np.zeros(3), np.ones(3), Weights(np.array([[1.0, -2.0, 0.5]]), np.zeros(1)), 0.0
    )
    if value is not None:
        setattr(pipeline, THRESHOLD_ATTRIBUTE, value)
    return pipeline


@pytest.mark.parametrize("value", [0.0, 0.2, 0.995])
def test_a_threshold_from_0_to_below_1_is_the_models_even_0_which_flags_everything(value):
    assert threshold(_model(value)) == value


@pytest.mark.parametrize("value", [None, 1.0, -0.1, "0.2"])
def test_a_model_without_a_threshold_in_range_is_refused_by_name(value):
    with pytest.raises(ValueError, match=THRESHOLD_ATTRIBUTE):
        threshold(_model(value))


def test_the_contributions_and_the_intercept_add_up_to_the_logit_of_predict_proba():
    pipeline = _model(0.5)
    rows = np.array([[0.0, 1.0, 3.0], [5.0, 0.0, 2.0]])
    explained = explain(pipeline, rows)
    np.testing.assert_allclose(explained.probabilities, pipeline.predict_proba(rows)[:, 1], atol=1e-12)
    np.testing.assert_allclose(explained.intercept + explained.contributions.sum(axis=1), explained.logits)
