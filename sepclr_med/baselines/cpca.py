"""Contrastive PCA (Abid et al., Nature Communications 2018) on voxel features in the brain mask.

Salient directions are the top eigenvectors of ``C_target - alpha * C_background``; the common
space is ordinary PCA of all subjects. The eigenproblem is solved in the span of the data
(rank <= number of subjects), so 10^5 voxels cost no more than a few subjects-sized matrices.
``alpha`` is chosen from a grid without labels: the one whose salient projections of the
patients form the best-separated k-means clusters (silhouette), as the original paper's
spectral selection intends.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator


class ContrastivePCA(BaseEstimator):
    """cPCA estimator (scikit-learn contract).

    Parameters
    ----------
    n_salient : int
        Number of contrastive components.
    n_common : int
        Number of ordinary PCA components.
    alphas : tuple of float
        Contrast strengths tried; ``alpha_`` is the chosen one.
    random_state : int
        Seed of the k-means that scores each alpha.
    """

    def __init__(
        self,
        n_salient: int = 10,
        n_common: int = 10,
        alphas: tuple[float, ...] = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0),
        random_state: int = 0,
    ) -> None:
        self.n_salient = n_salient
        self.n_common = n_common
        self.alphas = alphas
        self.random_state = random_state

    def fit(self, features: np.ndarray, is_target: np.ndarray) -> ContrastivePCA:
        """Learn ``salient_components_``, ``common_components_``, ``mean_``, ``alpha_``."""
        from sklearn.cluster import KMeans
        from sklearn.metrics import silhouette_score

        x = np.asarray(features, dtype=np.float64)
        is_target = np.asarray(is_target, dtype=bool)
        self.mean_ = x[~is_target].mean(axis=0)
        xt = x[is_target] - x[is_target].mean(axis=0)
        xb = x[~is_target] - self.mean_
        _, _, vt = np.linalg.svd(np.vstack([xt, xb]), full_matrices=False)
        basis = vt  # rows span the data
        ct = (xt @ basis.T).T @ (xt @ basis.T) / len(xt)
        cb = (xb @ basis.T).T @ (xb @ basis.T) / len(xb)
        best = None
        for alpha in self.alphas:
            values, vectors = np.linalg.eigh(ct - alpha * cb)
            top = vectors[:, np.argsort(values)[::-1][: self.n_salient]]
            comps = top.T @ basis
            proj = (x[is_target] - self.mean_) @ comps.T
            labels = KMeans(n_clusters=2, n_init=10, random_state=self.random_state).fit_predict(proj)
            score = silhouette_score(proj, labels) if len(set(labels)) > 1 else -1
            if best is None or score > best[0]:
                best = (score, alpha, comps)
        assert best is not None  # the grid of alphas is never empty
        _, self.alpha_, self.salient_components_ = best
        centred = x - x.mean(axis=0)
        self.common_mean_ = x.mean(axis=0)
        self.common_components_ = np.linalg.svd(centred, full_matrices=False)[2][: self.n_common]
        return self

    def transform(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Common (PCA) and salient (cPCA) projections."""
        x = np.asarray(features, dtype=np.float64)
        return ((x - self.common_mean_) @ self.common_components_.T, (x - self.mean_) @ self.salient_components_.T)
