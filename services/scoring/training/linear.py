"""The fast path for the calibrated logistic churn model: its pipeline's arithmetic in numpy. Pure.

The scikit-learn pipeline's per-call overhead dominates the small batches a consumer predicts; the same
arithmetic written out gives the same probabilities without it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class LinearScorer:
    """The calibrated logistic pipeline compiled to numpy: per calibration fold, impute -> scale ->
    dot coefficients (numeric), a coefficient per category (one-hot), then the fold's sigmoid
    calibrator; the probability is the mean over folds, as CalibratedClassifierCV computes it.

    ``model``: the fitted CalibratedClassifierCV over the pipeline (ColumnTransformer "prep" with "num"
    and, when there are categorical columns, "cat"; LogisticRegression "clf"); ``n_numeric``: how many of
    its columns are numeric (they come first); ``categorical``: whether any column is categorical.
    """

    def __init__(self, model: Any, n_numeric: int, categorical: bool) -> None:
        self.folds: list[tuple[np.ndarray, np.ndarray, list[dict[str, float]], float, float, float]] = []
        for calibrated in model.calibrated_classifiers_:
            pipeline = calibrated.estimator
            prep, clf = pipeline.named_steps["prep"], pipeline.named_steps["clf"]
            coef = clf.coef_[0]
            numeric = prep.named_transformers_["num"]
            median = numeric.named_steps["impute"].statistics_
            scaler = numeric.named_steps["scale"]
            w_num = coef[:n_numeric] / scaler.scale_
            offset = float(clf.intercept_[0] - np.dot(w_num, scaler.mean_))
            by_category: list[dict[str, float]] = []
            if categorical:
                encoder = prep.named_transformers_["cat"].named_steps["onehot"]
                start = n_numeric
                for categories in encoder.categories_:
                    by_category.append({str(c): float(coef[start + j]) for j, c in enumerate(categories)})
                    start += len(categories)
            calibrator = calibrated.calibrators[0]
            self.folds.append((median, w_num, by_category, offset, float(calibrator.a_), float(calibrator.b_)))

    def predict(self, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
        """Probabilities for rows given as (numeric float matrix, categorical object matrix).

        Sums run column by column, in the same order for every row, so a row's result never depends on
        how many rows are scored with it (a matrix product may change its summation order with shape).
        """
        missing = np.isnan(numeric)
        codes: list[tuple[np.ndarray, list[Any]]] = []
        for j in range(categorical.shape[1]):
            index: dict[Any, int] = {}
            column = np.fromiter((index.setdefault(v, len(index)) for v in categorical[:, j]), dtype=np.intp)
            codes.append((column, list(index)))
        out = np.zeros(len(numeric))
        for median, w_num, by_category, offset, a, b in self.folds:
            filled = np.where(missing, median, numeric)
            f = np.full(len(numeric), offset)
            for j in range(filled.shape[1]):
                f = f + filled[:, j] * w_num[j]
            for (column, values), coefs in zip(codes, by_category, strict=True):
                table = np.array([coefs.get("(missing)" if v is None else v, 0.0) for v in values], dtype=float)
                f = f + table[column]
            out += 1.0 / (1.0 + np.exp(a * f + b))
        return out / len(self.folds)
