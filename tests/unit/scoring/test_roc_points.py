"""The ROC curve kept with a churn model's metrics (the console plots it)."""

from __future__ import annotations

import numpy as np

from services.scoring.training.evaluation import roc_points
from services.scoring.training.evaluation import scores as model_scores


def test_a_perfect_ranking_runs_from_the_origin_up_to_the_top_left_and_on_to_one_one():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.8, 0.9])
    points = roc_points(y, p)
    assert points[0] == {"fpr": 0.0, "tpr": 0.0}
    assert {"fpr": 0.0, "tpr": 1.0} in points
    assert points[-1] == {"fpr": 1.0, "tpr": 1.0}


def test_the_curve_is_thinned_to_the_limit_keeping_both_ends_in_order():
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 5000)
    p = np.clip(y * 0.3 + rng.random(5000) * 0.7, 0, 1)
    points = roc_points(y, p, max_points=20)
    assert len(points) <= 20
    assert points[0] == {"fpr": 0.0, "tpr": 0.0} and points[-1] == {"fpr": 1.0, "tpr": 1.0}
    assert [pt["fpr"] for pt in points] == sorted(pt["fpr"] for pt in points)
    assert [pt["tpr"] for pt in points] == sorted(pt["tpr"] for pt in points)


def test_the_model_scores_carry_the_roc_next_to_auc_brier_and_calibration():
    y = np.array([0, 1, 0, 1, 1, 0])
    p = np.array([0.2, 0.7, 0.4, 0.6, 0.9, 0.1])
    scores = model_scores(y, p)
    assert scores["roc_auc"] == 1.0
    assert scores["roc"][0] == {"fpr": 0.0, "tpr": 0.0}


def test_the_classes_a_stored_model_pickles_keep_their_module():
    """Stored models are joblib pickles that name these classes by module: moving them breaks every stored model."""
    from services.scoring.training.churn_model import FeatureSpec, TrainedChurnModel

    assert {TrainedChurnModel.__module__, FeatureSpec.__module__} == {"services.scoring.training.churn_model"}
