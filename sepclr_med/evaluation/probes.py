"""Cross-validated linear probes on representations (features standardised inside each fold).

Categorical factors: logistic regression, balanced accuracy. Continuous factors: ridge, R^2.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict
from sklearn.metrics import balanced_accuracy_score, r2_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def probe_classification(features: np.ndarray, labels, *, n_splits: int = 5, seed: int = 0) -> float:
    """Balanced accuracy of a standardised logistic-regression probe, cross-validated."""
    labels = np.asarray(labels)
    n_splits = min(n_splits, int(np.unique(labels, return_counts=True)[1].min()))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, features, labels, cv=cv)
    return float(balanced_accuracy_score(labels, predicted))


def probe_regression(features: np.ndarray, target, *, n_splits: int = 5, seed: int = 0) -> float:
    """Out-of-fold R^2 of a standardised ridge probe (alpha chosen inside each fold)."""
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
    cv = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    predicted = cross_val_predict(model, features, np.asarray(target, dtype=float), cv=cv)
    return float(r2_score(target, predicted))
