"""The separation table: every probe of the method page on a latents table, with its chance
level and what it should show.

Rows are *cells* ``(space, factor, metric)``:

- ``group`` (patient vs control, all subjects): salient high, common at chance;
- target-only factors (``subtype``, ``severity``, clinical scores, or columns the user names),
  probed on patients only: salient high, common at chance (leakage otherwise);
- shared factors (``age``, ``sex``, ``site``), all subjects: common high, salient at chance;
- label-free checks: salient distance from controls (AUC), patient clusters (silhouette), and
  the distance correlation between the two spaces.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sepclr_med.evaluation.dependence import distance_correlation, patient_cluster_silhouette, salient_norm_separation
from sepclr_med.evaluation.probes import probe_classification, probe_regression_scores

SHARED_FACTORS = ("age", "sex", "site")
DEFAULT_TARGET_FACTORS = ("subtype", "severity")
SPACES = ("common", "salient")
COLUMNS = ["space", "factor", "subjects", "metric", "value", "chance", "expected", "n", "note"]


def _is_numeric(values: pd.Series) -> bool:
    """Continuous factor? Numbers, unless a few integer codes (e.g. sex 0/1, site 1-3)."""
    if not pd.api.types.is_numeric_dtype(values):
        return False
    return not (values.nunique() <= 5 and bool((values.dropna() % 1 == 0).all()))


def _cells_for(
    factor: str,
    values: pd.Series,
    spaces: dict[str, np.ndarray],
    mask: np.ndarray,
    subjects: str,
    expected: dict[str, str],
    seed: int,
) -> list[dict]:
    rows = []
    keep = mask & values.notna().to_numpy() & (values.astype(str) != "").to_numpy()
    y = values[keep]
    numeric = _is_numeric(y)
    metrics = ("r2", "mae") if numeric else ("balanced_accuracy",)
    n_classes = y.nunique()
    for space, x in spaces.items():
        base = {
            "space": space,
            "factor": factor,
            "subjects": subjects,
            "expected": expected[space],
            "n": int(keep.sum()),
        }
        try:
            if numeric:
                scores = probe_regression_scores(x[keep], y.to_numpy(float), seed=seed)
                rows += [
                    {**base, "metric": "r2", "value": scores["r2"], "chance": 0.0, "note": ""},
                    {
                        **base,
                        "metric": "mae",
                        "value": scores["mae"],
                        "chance": float(np.mean(np.abs(y - y.median()))),
                        "note": "",
                    },
                ]
            else:
                score = probe_classification(x[keep], y.astype(str).to_numpy(), seed=seed)
                rows.append(
                    {
                        **base,
                        "metric": "balanced_accuracy",
                        "value": score,
                        "chance": 1.0 / max(n_classes, 1),
                        "note": "",
                    }
                )
        except ValueError as exc:
            rows += [
                {**base, "metric": m, "value": np.nan, "chance": np.nan, "note": f"not computed: {exc}"}
                for m in metrics
            ]
    return rows


def evaluate_latents(
    latents: pd.DataFrame,
    factors: pd.DataFrame | None = None,
    *,
    target_factors: list[str] | None = None,
    shared_factors: list[str] | None = None,
    patient_label: str = "patient",
    seed: int = 0,
) -> pd.DataFrame:
    """Probe every factor from each space, plus label-free checks.

    Parameters
    ----------
    latents : pandas.DataFrame
        ``subject_id``, ``group`` (``patient``/other), ``common_*``, ``salient_*``.
    factors : pandas.DataFrame, optional
        ``subject_id`` and factor columns (cohort confounds and scores, ground truth).
    target_factors : list of str, optional
        Target-only factors probed on patients (default: ``subtype``, ``severity`` and any
        ``panss_*``-like score present; give names to choose).
    shared_factors : list of str, optional
        Shared factors (default ``age``, ``sex``, ``site``).
    patient_label : str
        Value of ``group`` marking patients.
    seed : int
        Seed of the CV splits.

    Returns
    -------
    pandas.DataFrame
        One row per cell with columns :data:`COLUMNS`; cells that could not be computed have
        ``value`` NaN and a ``note`` saying why.
    """
    df = (
        latents
        if factors is None
        else latents.merge(
            factors.drop(columns=[c for c in ("group",) if c in factors.columns]), on="subject_id", how="left"
        )
    )
    spaces = {s: df[[c for c in df.columns if c.startswith(f"{s}_")]].to_numpy(float) for s in SPACES}
    patient = (df["group"] == patient_label).to_numpy()
    everyone = np.ones(len(df), dtype=bool)
    rows = _cells_for(
        "group",
        pd.Series(np.where(patient, "patient", "control")),
        spaces,
        everyone,
        "all",
        {"common": "chance", "salient": "high"},
        seed,
    )
    if target_factors is None:
        extra = [c for c in (factors.columns if factors is not None else []) if c.startswith("panss")]
        target_factors = [*DEFAULT_TARGET_FACTORS, *extra]
    for factor in target_factors:
        if factor not in df.columns:
            rows += _missing(factor, "patients", {"common": "chance", "salient": "high"})
            continue
        rows += _cells_for(
            factor, df[factor], spaces, patient, "patients", {"common": "chance", "salient": "high"}, seed
        )
    for factor in shared_factors if shared_factors is not None else SHARED_FACTORS:
        if factor not in df.columns:
            rows += _missing(factor, "all", {"common": "high", "salient": "chance"})
            continue
        rows += _cells_for(factor, df[factor], spaces, everyone, "all", {"common": "high", "salient": "chance"}, seed)
    rows += _label_free(spaces, patient, seed)
    return pd.DataFrame(rows, columns=COLUMNS)


def _missing(factor: str, subjects: str, expected: dict[str, str]) -> list[dict]:
    return [
        {
            "space": s,
            "factor": factor,
            "subjects": subjects,
            "metric": "",
            "value": np.nan,
            "chance": np.nan,
            "expected": expected[s],
            "n": 0,
            "note": f"not computed: no column '{factor}' in the cohort or ground truth",
        }
        for s in SPACES
    ]


def _label_free(spaces: dict[str, np.ndarray], patient: np.ndarray, seed: int) -> list[dict]:
    rows = []
    if patient.any() and (~patient).any():
        sep = salient_norm_separation(spaces["salient"], patient)
        rows.append(
            {
                "space": "salient",
                "factor": "distance from controls",
                "subjects": "all",
                "metric": "auc",
                "value": sep["salient_distance_auc"],
                "chance": 0.5,
                "expected": "high",
                "n": len(patient),
                "note": f"mean distance control {sep['salient_distance_control']:.3g}, "
                f"patient {sep['salient_distance_patient']:.3g}",
            }
        )
    if patient.sum() > 4:
        sil = patient_cluster_silhouette(spaces["salient"][patient], seed=seed)
        rows.append(
            {
                "space": "salient",
                "factor": "patient clusters",
                "subjects": "patients",
                "metric": "silhouette",
                "value": sil["silhouette"],
                "chance": 0.0,
                "expected": "high",
                "n": int(patient.sum()),
                "note": f"best k = {sil['n_clusters']}",
            }
        )
    rows.append(
        {
            "space": "common~salient",
            "factor": "dependence between spaces",
            "subjects": "all",
            "metric": "distance_correlation",
            "value": distance_correlation(spaces["common"], spaces["salient"]),
            "chance": 0.0,
            "expected": "low",
            "n": len(patient),
            "note": "",
        }
    )
    return rows
