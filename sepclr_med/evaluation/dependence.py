"""Label-free checks of a two-space representation: dependence between spaces, salient norms,
cluster structure of patients."""

from __future__ import annotations

import numpy as np


def distance_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Bias-corrected distance correlation between the rows of ``x`` and ``y`` (0 = independent).

    The square root of Székely & Rizzo's (2014) bias-corrected squared distance correlation,
    clipped at 0: unlike the plain V-statistic it does not drift above 0 for independent
    samples of small size, and it sees non-linear dependence. Computed by the project's one
    estimator, :func:`sepclr_med.losses.distance_correlation_sq` (float64, no epsilon).

    Parameters
    ----------
    x, y : numpy.ndarray
        ``(n, p)`` and ``(n, q)`` samples of two variables, n >= 4.

    Returns
    -------
    float
        In [0, 1].
    """
    import torch

    from sepclr_med.losses import distance_correlation_sq

    x = np.array(x, dtype=float).reshape(len(x), -1)  # copies: torch shares no caller's array
    y = np.array(y, dtype=float).reshape(len(y), -1)
    if len(x) < 4:
        return float("nan")
    if np.ptp(x, axis=0).max() == 0 or np.ptp(y, axis=0).max() == 0:
        return 0.0  # a constant sample is independent of anything
    dcor_sq = distance_correlation_sq(torch.from_numpy(x), torch.from_numpy(y), eps=0.0, bias_corrected=True)
    return float(np.sqrt(max(float(dcor_sq), 0.0)))


def salient_norm_separation(salient: np.ndarray, is_target: np.ndarray) -> dict[str, float]:
    """Salient-rep distance from the controls' mean, for controls and patients, and the AUC of
    that distance for telling patients from controls (0.5 = no separation)."""
    from sklearn.metrics import roc_auc_score

    is_target = np.asarray(is_target, dtype=bool)
    centre = salient[~is_target].mean(axis=0)
    dist = np.linalg.norm(salient - centre, axis=1)
    return {
        "salient_distance_control": float(dist[~is_target].mean()),
        "salient_distance_patient": float(dist[is_target].mean()),
        "salient_distance_auc": float(roc_auc_score(is_target, dist)),
    }


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
