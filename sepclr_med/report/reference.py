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
    cluster_model_ : KMeans fitted on standardised patients' salient reps
    projection_ : PCA (2 components) of the patients' salient reps
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
        self.scaler_ = StandardScaler().fit(salient[patient])
        k = patient_cluster_silhouette(salient[patient])["n_clusters"] or 2
        self.cluster_model_ = KMeans(k, n_init=10, random_state=self.random_state).fit(
            self.scaler_.transform(salient[patient])
        )
        self.projection_ = PCA(n_components=2).fit(salient[patient])
        self.patient_points_ = self.projection_.transform(salient[patient])
        self.patient_clusters_ = self.cluster_model_.labels_
        return self

    def place(self, salient: np.ndarray) -> pd.DataFrame:
        """Deviation, percentiles among training controls and patients, cluster, 2D position."""
        salient = np.atleast_2d(np.asarray(salient, dtype=np.float64))
        deviation = self.directions_.deviation(salient)["deviation"].to_numpy()
        scaled = self.scaler_.transform(salient)
        cluster = self.cluster_model_.predict(scaled)
        distance = np.linalg.norm(scaled - self.cluster_model_.cluster_centers_[cluster], axis=1)
        xy = self.projection_.transform(salient)
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
