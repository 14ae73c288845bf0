"""How well a churn model's risks match what happened: ROC AUC, Brier score, calibration, the ROC curve. Pure."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = 5) -> list[dict[str, float]]:
    """Predicted against observed churn rate in bins of equal size (by predicted risk)."""
    order = np.argsort(p, kind="stable")
    out = []
    for chunk in np.array_split(order, min(bins, len(order))):
        if len(chunk):
            out.append(
                {
                    "from": round(float(p[chunk].min()), 4),
                    "to": round(float(p[chunk].max()), 4),
                    "n": len(chunk),
                    "predicted": round(float(p[chunk].mean()), 4),
                    "observed": round(float(y[chunk].mean()), 4),
                }
            )
    return out


def roc_points(y: np.ndarray, p: np.ndarray, max_points: int = 50) -> list[dict[str, float]]:
    """The ROC curve (false against true positive rate), thinned to at most ``max_points`` points that keep
    both ends, so the model's metrics stay small whatever the number of customers."""
    fpr, tpr, _ = roc_curve(y, p, drop_intermediate=True)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).round().astype(int))
    return [{"fpr": round(float(fpr[i]), 4), "tpr": round(float(tpr[i]), 4)} for i in keep]


def scores(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    """The measures a training run reports for one model: labels ``y`` against predicted risks ``p``."""
    return {
        "roc_auc": round(float(roc_auc_score(y, p)), 4),
        "brier": round(float(brier_score_loss(y, p)), 4),
        "calibration": calibration_table(y, p),
        "roc": roc_points(y, p),
    }
