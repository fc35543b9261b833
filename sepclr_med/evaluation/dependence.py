"""Label-free checks of a two-space representation: dependence between spaces, salient norms,
cluster structure of patients."""

from __future__ import annotations

import numpy as np


def _centred_distances(x: np.ndarray) -> np.ndarray:
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    return d - d.mean(axis=0) - d.mean(axis=1)[:, None] + d.mean()


def distance_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Székely's distance correlation between the rows of ``x`` and ``y`` (0 = independent).

    Parameters
    ----------
    x, y : numpy.ndarray
        ``(n, p)`` and ``(n, q)`` samples of two variables.

    Returns
    -------
    float
        In [0, 1]; 0 exactly when independent (in the population).
    """
    x = np.asarray(x, dtype=float).reshape(len(x), -1)
    y = np.asarray(y, dtype=float).reshape(len(y), -1)
    a, b = _centred_distances(x), _centred_distances(y)
    dcov2 = (a * b).mean()
    denom = np.sqrt((a * a).mean() * (b * b).mean())
    return float(np.sqrt(max(dcov2, 0.0) / denom)) if denom > 0 else 0.0


def salient_norm_separation(salient: np.ndarray, is_target: np.ndarray) -> dict[str, float]:
    """Salient-rep distance from the controls' mean, for controls and patients, and the AUC of
    that distance for telling patients from controls (0.5 = no separation)."""
    from sklearn.metrics import roc_auc_score

    is_target = np.asarray(is_target, dtype=bool)
    centre = salient[~is_target].mean(axis=0)
    dist = np.linalg.norm(salient - centre, axis=1)
    return {"salient_distance_control": float(dist[~is_target].mean()),
            "salient_distance_patient": float(dist[is_target].mean()),
            "salient_distance_auc": float(roc_auc_score(is_target, dist))}


def patient_cluster_silhouette(salient: np.ndarray, ks=(2, 3, 4), seed: int = 0) -> dict[str, float]:
    """Best silhouette of k-means clusterings of standardised patient salient reps."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    x = StandardScaler().fit_transform(salient)
    best = {"silhouette": float("nan"), "n_clusters": 0}
    for k in ks:
        if len(x) <= k:
            continue
        labels = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
        score = float(silhouette_score(x, labels))
        if not best["silhouette"] >= score:
            best = {"silhouette": score, "n_clusters": k}
    return best
