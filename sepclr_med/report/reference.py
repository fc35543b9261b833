"""The reference a new subject is placed against: the run's training controls and patients."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import BaseEstimator

from sepclr_med.explain.directions import SalientDirections


class Reference(BaseEstimator):
    """Deviation distributions, patient clusters and a 2D map of the training patients.

    Parameters
    ----------
    patient_label : str
        Label of the target group.
    random_state : int
        Seed of the patient clusters and of the directions' cross-validation (a run's seed).

    Attributes
    ----------
    reference_split_ : {"validation", "training"}
        Subjects the percentiles are computed among (validation subjects when the run has at
        least 5 of each group; they were not used to fit the encoders).
    directions_ : SalientDirections
    control_deviation_, patient_deviation_ : ndarray
    scale_mean_, scale_ : ndarray (d,)
        Standardisation of the patients' salient reps (the clusters' space).
    cluster_centers_ : ndarray (k, d)
        k-means centres of the standardised patients' reps.
    projection_mean_ : ndarray (d,)
    projection_components_ : ndarray (2, d)
        The patients' first two principal axes (the page's 2D map).
    patient_points_ : ndarray (n_patients, 2)
    patient_clusters_ : ndarray (n_patients,)

    The fitted state is plain arrays (:meth:`state`, :meth:`from_state`): an exported model
    stores it without per-subject rows or pickled objects.
    """

    def __init__(self, patient_label: str = "patient", random_state: int = 0) -> None:
        self.patient_label = patient_label
        self.random_state = random_state

    def fit(self, latents: pd.DataFrame) -> Reference:
        """Learn the reference from ``reference_latents.csv`` of a run (``group``, ``split``, ``salient_*``)."""
        from sklearn.cluster import KMeans
        from sklearn.decomposition import PCA
        from sklearn.preprocessing import StandardScaler

        from sepclr_med.evaluation.dependence import patient_cluster_silhouette

        salient = latents.filter(like="salient_").to_numpy(float)
        patient_label = self.patient_label
        patient = (latents["group"] == patient_label).to_numpy()
        if not patient.any() or patient.all():
            from sepclr_med.errors import SepclrError

            raise SepclrError(
                f"the run's reference holds no {patient_label!r} subjects or no controls; check --patient-label"
            )
        # Training subjects were fitted by the encoders (controls pulled to the information-less
        # point): their distances are optimistic. The reference distributions use the run's
        # validation subjects when there are enough of them.
        held_out = (
            (latents["split"] == "val").to_numpy() if "split" in latents.columns else np.zeros(len(latents), bool)
        )
        self.reference_split_ = (
            "validation" if min((held_out & ~patient).sum(), (held_out & patient).sum()) >= 5 else "training"
        )
        fit_rows = ~held_out if self.reference_split_ == "validation" else np.ones(len(latents), bool)
        ref_rows = held_out if self.reference_split_ == "validation" else np.ones(len(latents), bool)
        self.directions_ = SalientDirections(random_state=self.random_state).fit(salient[fit_rows], patient[fit_rows])
        deviation = self.directions_.deviation(salient)["deviation"].to_numpy()
        self.control_deviation_ = deviation[ref_rows & ~patient]
        self.patient_deviation_ = deviation[ref_rows & patient]
        scaler = StandardScaler().fit(salient[patient])
        self.scale_mean_, self.scale_ = scaler.mean_, scaler.scale_
        k = patient_cluster_silhouette(salient[patient])["n_clusters"] or 2
        clusters = KMeans(k, n_init=10, random_state=self.random_state).fit(scaler.transform(salient[patient]))
        self.cluster_centers_ = clusters.cluster_centers_
        projection = PCA(n_components=2).fit(salient[patient])
        self.projection_mean_, self.projection_components_ = projection.mean_, projection.components_
        self.patient_points_ = self._project(salient[patient])
        self.patient_clusters_ = clusters.labels_
        return self

    def _project(self, salient: np.ndarray) -> np.ndarray:
        return (salient - self.projection_mean_) @ self.projection_components_.T

    def _clusters(self, salient: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest k-means centre of each rep (standardised) and the distance to it."""
        scaled = (salient - self.scale_mean_) / self.scale_
        distances = np.linalg.norm(scaled[:, None, :] - self.cluster_centers_[None], axis=2)
        cluster = distances.argmin(axis=1)
        return cluster, distances[np.arange(len(cluster)), cluster]

    def state(self) -> dict[str, np.ndarray]:
        """The fitted reference as named arrays (``numpy.savez``-able; no subject ids).

        The patients' 2D points are shuffled with their clusters (by the operating system's
        randomness, not the run's seed, which travels with the state) and the deviation
        distributions sorted, so that no array lines up with the run's subject order.
        """
        directions = self.directions_
        order = np.random.default_rng().permutation(len(self.patient_points_))
        state = {
            "patient_label": np.array(self.patient_label),
            "random_state": np.array(self.random_state),
            "reference_split": np.array(self.reference_split_),
            "control_deviation": np.sort(self.control_deviation_),
            "patient_deviation": np.sort(self.patient_deviation_),
            "patient_points": self.patient_points_[order],
            "patient_clusters": np.asarray(self.patient_clusters_)[order],
            **{k: getattr(self, k + "_") for k in _ARRAYS},
            **{f"directions.{k}": getattr(directions, k + "_") for k in _DIRECTION_ARRAYS},
            "directions.n_components": np.array(directions.n_components),
            "directions.n_splits": np.array(directions.n_splits),
        }
        state["directions.control_distances"] = np.sort(state["directions.control_distances"])
        return state

    @classmethod
    def from_state(cls, state) -> Reference:
        """A fitted reference from :meth:`state`'s arrays (e.g. a loaded ``.npz``)."""
        reference = cls(str(state["patient_label"]), int(state["random_state"]))
        reference.reference_split_ = str(state["reference_split"])
        reference.control_deviation_ = np.asarray(state["control_deviation"], dtype=float)
        reference.patient_deviation_ = np.asarray(state["patient_deviation"], dtype=float)
        reference.patient_points_ = np.asarray(state["patient_points"], dtype=float)
        reference.patient_clusters_ = np.asarray(state["patient_clusters"])
        for k in _ARRAYS:
            setattr(reference, k + "_", np.asarray(state[k], dtype=float))
        directions = SalientDirections(
            int(state["directions.n_components"]), int(state["directions.n_splits"]), int(state["random_state"])
        )
        for k in _DIRECTION_ARRAYS:
            setattr(directions, k + "_", np.asarray(state[f"directions.{k}"], dtype=float))
        directions.score_directions_, directions.score_cv_r2_ = {}, {}
        reference.directions_ = directions
        return reference

    def place(self, salient: np.ndarray) -> pd.DataFrame:
        """Deviation, percentiles among training controls and patients, cluster, 2D position."""
        salient = np.atleast_2d(np.asarray(salient, dtype=np.float64))
        deviation = self.directions_.deviation(salient)["deviation"].to_numpy()
        cluster, distance = self._clusters(salient)
        xy = self._project(salient)
        low, high = percentile_interval(self.control_deviation_, deviation)
        return pd.DataFrame(
            {
                "deviation": deviation,
                "percentile_controls": [
                    stats.percentileofscore(self.control_deviation_, d, kind="weak") for d in deviation
                ],
                "percentile_controls_low": low,
                "percentile_controls_high": high,
                "percentile_patients": [
                    stats.percentileofscore(self.patient_deviation_, d, kind="weak") for d in deviation
                ],
                "cluster": [f"cluster {c + 1}" for c in cluster],
                "cluster_distance": distance,
                "x": xy[:, 0],
                "y": xy[:, 1],
            }
        )


_ARRAYS = ("scale_mean", "scale", "cluster_centers", "projection_mean", "projection_components")
_DIRECTION_ARRAYS = ("components", "explained_variance_ratio", "control_mean", "control_precision", "control_distances")

SMALL_REFERENCE = (
    30  # fewer reference controls: the page warns (95% interval of a median subject wider than +-17 points)
)


def percentile_interval(
    reference: np.ndarray, values: np.ndarray, level: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Interval (in percent) of the population percentile of each value among the reference.

    With ``k`` of ``n`` reference values at or below a value, the share of the reference
    population below it has the posterior Beta(k + 1, n - k + 1) under a uniform prior; the
    equal-tailed ``level`` interval of that share is returned, in percent.
    """
    reference = np.asarray(reference, dtype=float)
    k = (reference[None, :] <= np.asarray(values, dtype=float)[:, None]).sum(axis=1)
    n = len(reference)
    tail = (1 - level) / 2
    return 100 * stats.beta.ppf(tail, k + 1, n - k + 1), 100 * stats.beta.ppf(1 - tail, k + 1, n - k + 1)
