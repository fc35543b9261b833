"""Cross-validated linear probes on representations (features standardised inside each fold).

Categorical factors: logistic regression, balanced accuracy. Continuous factors: ridge (alpha
chosen by inner CV), out-of-fold R^2 and mean absolute error.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error, r2_score
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

MIN_PER_CLASS = 2
MIN_SAMPLES_REGRESSION = 10


def classification_folds(labels, n_splits: int = 5) -> int:
    """Folds usable for stratified CV: at most the size of the smallest class."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return int(min(n_splits, counts.min()))


def probe_classification(features: np.ndarray, labels, *, n_splits: int = 5, seed: int = 0) -> float:
    """Balanced accuracy of a standardised logistic-regression probe, cross-validated.

    Raises
    ------
    ValueError
        With fewer than 2 classes or a class of fewer than 2 samples.
    """
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    if len(classes) < 2 or counts.min() < MIN_PER_CLASS:
        raise ValueError(
            f"needs >= 2 classes with >= {MIN_PER_CLASS} samples each "
            f"(found {dict(zip(classes.tolist(), counts.tolist(), strict=True))})"
        )
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=classification_folds(labels, n_splits), shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, features, labels, cv=cv)
    return float(balanced_accuracy_score(labels, predicted))


def probe_regression_scores(features: np.ndarray, target, *, n_splits: int = 5, seed: int = 0) -> dict[str, float]:
    """Out-of-fold R^2 and MAE of a standardised ridge probe (alpha by inner CV).

    Raises
    ------
    ValueError
        With fewer than 10 samples or a constant target.
    """
    target = np.asarray(target, dtype=float)
    if len(target) < MIN_SAMPLES_REGRESSION or np.ptp(target) == 0:
        raise ValueError(f"needs >= {MIN_SAMPLES_REGRESSION} samples with varying values (found {len(target)})")
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    cv = KFold(n_splits=min(n_splits, len(target)), shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, features, target, cv=cv)
    return {"r2": float(r2_score(target, predicted)), "mae": float(mean_absolute_error(target, predicted))}


def probe_regression(features: np.ndarray, target, *, n_splits: int = 5, seed: int = 0) -> float:
    """Out-of-fold R^2 of a standardised ridge probe."""
    return probe_regression_scores(features, target, n_splits=n_splits, seed=seed)["r2"]
