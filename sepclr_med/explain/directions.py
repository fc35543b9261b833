"""Salient directions: principal axes of patients, score-predicting directions, deviation scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator


class SalientDirections(BaseEstimator):
    """Directions in the salient space and each subject's deviation from controls.

    Follows scikit-learn's estimator contract: ``fit`` learns the attributes ending in ``_``.

    Parameters
    ----------
    n_components : int
        Principal axes of the patients' salient reps to keep.
    n_splits : int
        Cross-validation folds for the score directions.

    Attributes
    ----------
    components_ : ndarray (n_components, d)
        Unit principal axes of the patients' salient reps.
    explained_variance_ratio_ : ndarray (n_components,)
    score_directions_ : dict of str -> ndarray (d,)
        Unit direction of the ridge regression of each clinical score on salient reps.
    score_cv_r2_ : dict of str -> float
        Cross-validated R^2 of those regressions.
    control_mean_ : ndarray (d,)
    control_precision_ : ndarray (d, d)
        Inverse of the controls' Ledoit-Wolf covariance.
    control_distances_ : ndarray (n_controls,)
        Controls' own Mahalanobis distances (reference distribution of the percentile).
    """

    def __init__(self, n_components: int = 3, n_splits: int = 5, random_state: int = 0) -> None:
        self.n_components = n_components
        self.n_splits = n_splits
        self.random_state = random_state

    def fit(self, salient: np.ndarray, is_target: np.ndarray, scores: pd.DataFrame | None = None) -> SalientDirections:
        """Learn directions from salient reps (``(n, d)``), group labels and optional scores."""
        from sklearn.covariance import LedoitWolf
        from sklearn.decomposition import PCA
        from sklearn.linear_model import RidgeCV
        from sklearn.metrics import r2_score
        from sklearn.model_selection import KFold, cross_val_predict

        salient = np.asarray(salient, dtype=float)
        is_target = np.asarray(is_target, dtype=bool)
        patients, controls = salient[is_target], salient[~is_target]
        k = min(self.n_components, patients.shape[1], len(patients) - 1)
        pca = PCA(n_components=k).fit(patients)
        self.components_ = pca.components_
        self.explained_variance_ratio_ = pca.explained_variance_ratio_
        self.control_mean_ = controls.mean(axis=0)
        self.control_precision_ = np.linalg.pinv(LedoitWolf().fit(controls).covariance_)
        self.control_distances_ = self._mahalanobis(controls)
        self.score_directions_, self.score_cv_r2_ = {}, {}
        score_table = pd.DataFrame() if scores is None else scores
        for name in score_table.columns:
            y = pd.to_numeric(score_table[name], errors="coerce").to_numpy()
            keep = is_target & np.isfinite(y)
            if keep.sum() < max(10, self.n_splits):
                continue
            model = RidgeCV(alphas=np.logspace(-3, 3, 13))
            cv = KFold(self.n_splits, shuffle=True, random_state=self.random_state)
            predicted = cross_val_predict(model, salient[keep], y[keep], cv=cv)
            coef = model.fit(salient[keep], y[keep]).coef_
            self.score_directions_[name] = coef / (np.linalg.norm(coef) + 1e-12)
            self.score_cv_r2_[name] = float(r2_score(y[keep], predicted))
        return self

    def _mahalanobis(self, salient: np.ndarray) -> np.ndarray:
        delta = np.asarray(salient, dtype=float) - self.control_mean_
        return np.sqrt(np.einsum("ij,jk,ik->i", delta, self.control_precision_, delta))

    def deviation(self, salient: np.ndarray) -> pd.DataFrame:
        """Mahalanobis distance from the controls and its percentile among controls."""
        d = self._mahalanobis(salient)
        pct = np.array([stats.percentileofscore(self.control_distances_, v, kind="weak") for v in d])
        return pd.DataFrame({"deviation": d, "control_percentile": pct})

    def deviation_directions(self, salient: np.ndarray) -> np.ndarray:
        """Each subject's own unit direction, from the controls' mean salient rep to its rep (``(n, d)``)."""
        delta = np.asarray(salient, dtype=float) - self.control_mean_
        return delta / (np.linalg.norm(delta, axis=1, keepdims=True) + 1e-12)

    def toward(self, salient: np.ndarray) -> np.ndarray:
        """A group's shared unit direction, from the controls' mean salient rep to the group's mean."""
        return self.deviation_directions(np.asarray(salient, dtype=float).mean(axis=0, keepdims=True))[0]

    def directions(self) -> dict[str, np.ndarray]:
        """All named unit directions: ``pc1..pck`` and ``score:<name>``."""
        out = {f"pc{i + 1}": c / np.linalg.norm(c) for i, c in enumerate(self.components_)}
        out.update({f"score:{k}": v for k, v in self.score_directions_.items()})
        return out
