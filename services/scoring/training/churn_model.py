"""The trainable churn model: training with cross-validation, prediction with factors.

Its inputs (feature snapshots and their labels) are in snapshots.py, the measures a training run reports
in evaluation.py, and the fast path of the logistic model in linear.py.

Pure apart from CPU: no database, no clock. The service assembles the labelled snapshots (each one as
it stood BEFORE the customer's churn date, so nothing after churn leaks into training) and stores the
fitted model as joblib bytes.

Model: a scikit-learn Pipeline (ColumnTransformer: numeric = median impute + scale, categorical =
most-frequent impute + one-hot ignoring unknown values) followed by histogram gradient boosting (the
default from GBM_FROM labelled customers on) or a logistic regression (the default below), wrapped in
CalibratedClassifierCV (sigmoid) so the risk is a calibrated probability. Gradient boosting is the
default on a large enough book because real churn has interactions and thresholds (a month-to-month
customer leaves mostly in its first months; a price increase matters on some plans only) that a model
with one term per column cannot represent; it is regularised (leaves of 20 customers or more, L2, early
stopping on 15% held out). On a small book the trees lack examples and the logistic model ranks better,
hence the threshold. Each training run reports, on the same stratified folds, ROC AUC, Brier score and a
calibration table for the model and for a plain logistic-regression baseline on the same columns.

The folds depend on the examples' contents, not on the order or ids the platform gave the customers:
the same data trains the same model and reports the same quality wherever it came from.

Factors: for each feature, the change in log-odds when the customer's value is replaced by the
training population's typical value (median / most frequent), signed so positive raises the risk.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import joblib
import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from contracts.scoring import Factor
from services.scoring.training.evaluation import scores
from services.scoring.training.linear import LinearScorer
from services.scoring.training.snapshots import ATTRIBUTE_PREFIX, EVENT_FEATURES, label

# Scoring and the training jobs take snapshots through the model's module.
from services.scoring.training.snapshots import profile_snapshot as profile_snapshot
from services.scoring.training.snapshots import snapshot as snapshot

ALGORITHMS = ("logistic", "gbm")
# Below this many labelled customers the trees have too few examples per combination of values and rank
# worse than the logistic model (measured on the generator: 1,000 customers 0.776 against 0.780; 2,000
# customers 0.768 against 0.762; 3,000 customers 0.778 against 0.760).
GBM_FROM = 2000


def default_algorithm(n_examples: int) -> str:
    """The algorithm a training run uses when none is asked for: gradient boosting on a book large enough."""
    return "gbm" if n_examples >= GBM_FROM else "logistic"


# One OpenMP thread per process: on a busy small machine the gradient-boosting model's spinning OpenMP
# threads made fitting and prediction many times slower, and the consumer predicts small batches, where threads
# do not pay off. Scale out with consumer processes instead.
threadpool_limits(limits=1, user_api="openmp")
TOP_FACTORS = 5

# ---- design matrix --------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class FeatureSpec:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    @classmethod
    def infer(cls, snapshots: list[dict[str, Any]]) -> FeatureSpec:
        """Event features are numeric; an attribute is numeric if every value it takes is a number."""
        attributes: dict[str, bool] = {}
        for snap in snapshots:
            for key, value in snap.items():
                if key.startswith(ATTRIBUTE_PREFIX) and value is not None:
                    attributes[key] = attributes.get(key, True) and _is_number(value)
                elif key.startswith(ATTRIBUTE_PREFIX):
                    attributes.setdefault(key, True)
        numeric = EVENT_FEATURES + tuple(sorted(k for k, num in attributes.items() if num))
        categorical = tuple(sorted(k for k, num in attributes.items() if not num))
        return cls(numeric, categorical)

    def arrays(self, snapshots: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(numeric float matrix, categorical object matrix) in column order; missing or non-conforming
        values become NaN / None."""
        numeric = np.array(
            [[_as_number(snap.get(name)) for name in self.numeric] for snap in snapshots], dtype=float
        ).reshape(len(snapshots), len(self.numeric))
        categorical = np.empty((len(snapshots), len(self.categorical)), dtype=object)
        for i, snap in enumerate(snapshots):
            categorical[i, :] = [_as_category(snap.get(name)) for name in self.categorical]
        return numeric, categorical

    def combine(self, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
        """The object matrix the scikit-learn pipeline takes, from the two blocks."""
        out = np.empty((len(numeric), len(self.columns)), dtype=object)
        out[:, : len(self.numeric)] = numeric
        out[:, len(self.numeric) :] = categorical
        return out

    def matrix(self, snapshots: list[dict[str, Any]]) -> np.ndarray:
        """Object matrix in `columns` order; missing and non-conforming values become NaN / None."""
        return self.combine(*self.arrays(snapshots))


def _as_number(value: Any) -> float:
    return float(value) if _is_number(value) else np.nan


def _as_category(value: Any) -> str | None:
    return None if value is None else str(value)


def _pipeline(spec: FeatureSpec, classifier: Any) -> Pipeline:
    n_num = len(spec.numeric)
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="(missing)")),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    transformers: list[tuple[str, Any, list[int]]] = [("num", numeric, list(range(n_num)))]
    if spec.categorical:
        transformers.append(("cat", categorical, list(range(n_num, len(spec.columns)))))
    # keep_empty_features: a feature missing for everyone still holds its column (stable width).
    numeric.steps[0][1].set_params(keep_empty_features=True)
    return Pipeline([("prep", ColumnTransformer(transformers)), ("clf", classifier)])


def _classifier(algorithm: str, seed: int) -> Any:
    if algorithm == "logistic":
        return LogisticRegression(C=1.0, max_iter=2000)
    if algorithm == "gbm":
        return HistGradientBoostingClassifier(
            max_iter=500,
            learning_rate=0.05,
            max_leaf_nodes=15,
            min_samples_leaf=20,
            l2_regularization=1.0,
            early_stopping=True,
            validation_fraction=0.15,
            n_iter_no_change=20,
            random_state=seed,
        )
    raise ValueError(f"unknown algorithm {algorithm!r}; choose from {ALGORITHMS}")


def _model(spec: FeatureSpec, algorithm: str, seed: int, calibration_folds: int) -> Any:
    return CalibratedClassifierCV(_pipeline(spec, _classifier(algorithm, seed)), method="sigmoid", cv=calibration_folds)


def _baseline(spec: FeatureSpec) -> Any:
    return _pipeline(spec, LogisticRegression(max_iter=2000))


@dataclass
class TrainedChurnModel:
    algorithm: str
    spec: FeatureSpec
    model: Any
    reference: dict[str, Any]  # the typical value of each feature (the factors' baseline)
    metrics: dict[str, Any] = field(default_factory=dict)

    # ---- storage

    def dumps(self) -> bytes:
        buffer = io.BytesIO()
        joblib.dump(self, buffer, compress=3)
        return buffer.getvalue()

    @staticmethod
    def loads(blob: bytes) -> TrainedChurnModel:
        return joblib.load(io.BytesIO(blob))

    # ---- scoring

    def predict(self, snapshots: list[dict[str, Any]]) -> np.ndarray:
        return self._predict(*self.spec.arrays(snapshots))

    def _predict(self, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
        if self.algorithm == "logistic":
            # The same arithmetic as the sklearn pipeline, without its per-call overhead (which dominates
            # the small batches a consumer predicts).
            return _linear(self).predict(numeric, categorical)
        return self.model.predict_proba(self.spec.combine(numeric, categorical))[:, 1]

    def _variants(self, snapshots: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """Each snapshot's row followed by one row per column with that column set to its reference value
        (the factors' counterfactuals), built by copying arrays rather than one dict per variant."""
        numeric, categorical = self.spec.arrays(snapshots)
        n_num, n_cat = len(self.spec.numeric), len(self.spec.categorical)
        width = 1 + n_num + n_cat
        numeric = np.repeat(numeric, width, axis=0)
        categorical = np.repeat(categorical, width, axis=0)
        start = np.arange(len(snapshots))[:, None] * width + 1
        if n_num:
            cols = np.arange(n_num)[None, :]
            ref = np.array([_as_number(self.reference.get(name)) for name in self.spec.numeric])
            numeric[start + cols, cols] = ref[None, :]
        if n_cat:
            cols = np.arange(n_cat)[None, :]
            ref_cat = np.empty(n_cat, dtype=object)
            ref_cat[:] = [_as_category(self.reference.get(name)) for name in self.spec.categorical]
            categorical[start + n_num + cols, cols] = ref_cat[None, :]
        return numeric, categorical

    def risk_and_factors_batch(self, snapshots: list[dict[str, Any]]) -> list[tuple[float, list[Factor]]]:
        """Risk for each customer and the features that move it most, against the typical customer.

        One predict call scores every customer of the batch and every one-feature-replaced variant
        together; each row's arithmetic does not depend on the others, so a batch gives exactly what
        scoring the customers one by one gives.
        """
        if not snapshots:
            return []
        columns = self.spec.columns
        p = np.clip(self._predict(*self._variants(snapshots)), 1e-6, 1 - 1e-6)
        logit = np.log(p / (1 - p)).reshape(len(snapshots), 1 + len(columns))
        contributions = logit[:, :1] - logit[:, 1:]
        out = []
        for i, snap in enumerate(snapshots):
            row = contributions[i]
            ranked = sorted(
                ((round(float(row[j]), 3), columns[j]) for j in np.flatnonzero(np.abs(row) >= 1e-3)),
                key=lambda item: (-abs(item[0]), item[1]),
            )[:TOP_FACTORS]
            # Labels and Factor objects only for the few that are shown.
            factors = [Factor(code=name, label=label(name, snap.get(name)), contribution=c) for c, name in ranked]
            out.append((float(p[i * (1 + len(columns))]), factors))
        return out

    def risk_and_factors(self, snap: dict[str, Any]) -> tuple[float, list[Factor]]:
        """Risk for one customer and its top factors (a batch of one)."""
        return self.risk_and_factors_batch([snap])[0]


def _content(snap: dict[str, Any]) -> str:
    """An example's contents as text: the order the folds are drawn from."""
    return json.dumps(snap, sort_keys=True, default=str)


def _reference(spec: FeatureSpec, snapshots: list[dict[str, Any]]) -> dict[str, Any]:
    ref: dict[str, Any] = {}
    for name in spec.numeric:
        values = [float(s[name]) for s in snapshots if _is_number(s.get(name))]
        ref[name] = float(np.median(values)) if values else None
    for name in spec.categorical:
        values = [str(s[name]) for s in snapshots if s.get(name) is not None]
        ref[name] = max(sorted(set(values)), key=values.count) if values else None
    return ref


def train(
    snapshots: list[dict[str, Any]],
    labels: list[int],
    *,
    algorithm: str | None = None,
    folds: int = 5,
    seed: int = 0,
) -> TrainedChurnModel:
    """Cross-validate the model and the logistic baseline on the same folds, then fit on everything
    (``algorithm`` None: default_algorithm for the number of examples)."""
    algorithm = algorithm or default_algorithm(len(labels))
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}; choose from {ALGORITHMS}")
    # Sorted by content, then shuffled with the seed: an order that depends only on the examples (the
    # calibration's inner folds are drawn in order, so a sorted order alone would give skewed folds).
    by_content = sorted(range(len(labels)), key=lambda i: (labels[i], _content(snapshots[i])))
    order = [by_content[i] for i in np.random.default_rng(seed).permutation(len(by_content))]
    snapshots, labels = [snapshots[i] for i in order], [labels[i] for i in order]
    y = np.asarray(labels, dtype=int)
    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < 4:
        raise ValueError(f"need at least 4 churned and 4 active customers with features, have {minority} in one class")
    folds = max(2, min(folds, minority // 2))
    calibration_folds = 2 if minority < 2 * folds * 3 else 3
    spec = FeatureSpec.infer(snapshots)
    X = spec.matrix(snapshots)

    p_model = np.zeros(len(y))
    p_base = np.zeros(len(y))
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train_idx, test_idx in splitter.split(X, y):
        model = _model(spec, algorithm, seed, calibration_folds).fit(X[train_idx], y[train_idx])
        p_model[test_idx] = model.predict_proba(X[test_idx])[:, 1]
        base = _baseline(spec).fit(X[train_idx], y[train_idx])
        p_base[test_idx] = base.predict_proba(X[test_idx])[:, 1]

    final = _model(spec, algorithm, seed, calibration_folds).fit(X, y)
    metrics = {
        "folds": folds,
        "n_samples": len(y),
        "n_churned": int(y.sum()),
        "model": scores(y, p_model),
        "baseline_logistic": scores(y, p_base),
        "features": {"numeric": list(spec.numeric), "categorical": list(spec.categorical)},
    }
    return TrainedChurnModel(algorithm, spec, final, _reference(spec, snapshots), metrics)


# ---- the fast path for the calibrated logistic model (services.scoring.training.linear) ---------------


_COMPILED: dict[int, tuple[TrainedChurnModel, LinearScorer]] = {}


def _linear(trained: TrainedChurnModel) -> LinearScorer:
    cached = _COMPILED.get(id(trained))
    if cached is None or cached[0] is not trained:  # an id can be reused after garbage collection
        scorer = LinearScorer(trained.model, len(trained.spec.numeric), bool(trained.spec.categorical))
        cached = _COMPILED[id(trained)] = (trained, scorer)
    return cached[1]


# ---- the labelled set ----------------------------------------------------------------------------------


def training_set(
    customers: list[tuple[str, str | None, datetime | None]],
    history: list[tuple[str, datetime, dict[str, Any]]],
    cutoff: datetime,
) -> tuple[list[str], list[dict[str, Any]], list[int]]:
    """Labelled snapshots without leakage.

    customers: (id, status, churned_at). A churned customer (label 1) contributes the last snapshot
    taken strictly BEFORE its churn date; an active customer (label 0) its last snapshot at or before
    `cutoff`. Other statuses, and customers with no snapshot in time, are left out.
    history: (customer id, as_of, snapshot), any order.
    """
    bound: dict[str, tuple[datetime, int]] = {}
    for customer_id, status, churned_at in customers:
        if status == "churned" and churned_at is not None:
            bound[customer_id] = (churned_at, 1)
        elif status == "active":
            bound[customer_id] = (cutoff, 0)
    latest: dict[str, tuple[datetime, dict[str, Any]]] = {}
    for customer_id, as_of, snap in history:
        limit = bound.get(customer_id)
        if limit is None:
            continue
        in_time = as_of < limit[0] if limit[1] == 1 else as_of <= limit[0]
        if in_time and (customer_id not in latest or as_of >= latest[customer_id][0]):
            latest[customer_id] = (as_of, snap)
    ids = sorted(latest)
    return ids, [latest[c][1] for c in ids], [bound[c][1] for c in ids]
