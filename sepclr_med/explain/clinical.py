"""Association of salient (and, as a control, common) latent variables with clinical scores.

For every score x variable: Pearson and Spearman correlations, an OLS regression of the score on
the variable adjusted for confounds (age, sex, site), their p-values, Benjamini-Hochberg q-values
within each family of hypotheses (e.g. salient variables; common dimensions as a control), and
optionally max-T permutation p-values (nilearn ``permuted_ols``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def confound_matrix(table: pd.DataFrame, confounds: list[str]) -> np.ndarray:
    """Intercept plus numeric and one-hot-encoded categorical confounds."""
    parts = [np.ones((len(table), 1))]
    for name in confounds:
        if name not in table.columns:
            continue
        values = table[name]
        if values.isna().all():
            continue
        if pd.api.types.is_numeric_dtype(values):
            v = values.to_numpy(float)
            parts.append(((v - np.nanmean(v)) / (np.nanstd(v) + 1e-12))[:, None])
        else:
            parts.append(pd.get_dummies(values.astype(str), drop_first=True).to_numpy(float))
    return np.hstack(parts)


def adjusted_effect(y: np.ndarray, x: np.ndarray, confounds: np.ndarray) -> tuple[float, float]:
    """Standardised OLS coefficient of ``x`` on ``y`` given ``confounds``, and its two-sided p."""
    design = np.column_stack([confounds, (x - x.mean()) / (x.std() + 1e-12)])
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ beta
    dof = len(y) - design.shape[1]
    if dof <= 0:
        return float("nan"), float("nan")
    sigma2 = resid @ resid / dof
    cov = sigma2 * np.linalg.pinv(design.T @ design)
    t = beta[-1] / np.sqrt(cov[-1, -1])
    return float(beta[-1]), float(2 * stats.t.sf(abs(t), dof))


# what an empty association table still has
EMPTY_COLUMNS: tuple[str, ...] = ("score", "variable", "n", "pearson_r", "pearson_p", "spearman_rho", "spearman_p")
EMPTY_COLUMNS += ("adjusted_beta", "adjusted_p")


def associate(
    scores: pd.DataFrame,
    variables: pd.DataFrame,
    confounds: pd.DataFrame | None = None,
    *,
    families: dict[str, str] | None = None,
    n_permutations: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Association table of every score with every variable (rows with NaN scores dropped).

    Parameters
    ----------
    scores : pandas.DataFrame
        Clinical scores, one column each (patients).
    variables : pandas.DataFrame
        Latent variables (salient dims, directions, deviation, common dims), same rows.
    confounds : pandas.DataFrame, optional
        ``age``, ``sex``, ``site`` (whichever exist), same rows.
    families : dict, optional
        Variable name -> family of hypotheses (e.g. ``"salient"``, ``"common"``). q-values are
        computed within each family, so that strong effects in one family do not relax the
        threshold of another (a control family must stand on its own). Default: one family.
    n_permutations : int
        > 0 adds max-T permutation p-values per score (nilearn ``permuted_ols``).

    Returns
    -------
    pandas.DataFrame
        ``score, variable, n, pearson_r, pearson_p, spearman_rho, spearman_p, adjusted_beta,
        adjusted_p`` [, ``permutation_p``], ``family, q_value`` (Benjamini-Hochberg over the
        adjusted p-values of each family).
    """
    rows = []
    conf_cols = [] if confounds is None else list(confounds.columns)
    complete = np.ones(len(scores), dtype=bool) if confounds is None else confounds.notna().all(axis=1).to_numpy()
    for score in scores.columns:
        y_all = pd.to_numeric(scores[score], errors="coerce").to_numpy(float)
        keep = np.isfinite(y_all) & complete  # subjects with the score and every confound
        y = y_all[keep]
        c = confound_matrix(confounds.loc[keep], conf_cols) if confounds is not None else np.ones((keep.sum(), 1))
        for variable in variables.columns:
            x = variables[variable].to_numpy(float)[keep]
            if len(y) < 4 or np.ptp(x) == 0:
                continue
            r, p_r = stats.pearsonr(x, y)
            rho, p_rho = stats.spearmanr(x, y)
            beta, p_adj = adjusted_effect(y, x, c)
            rows.append(
                {
                    "score": score,
                    "variable": variable,
                    "n": int(len(y)),
                    "pearson_r": float(r),
                    "pearson_p": float(p_r),
                    "spearman_rho": float(rho),
                    "spearman_p": float(p_rho),
                    "adjusted_beta": beta,
                    "adjusted_p": p_adj,
                }
            )
        if n_permutations > 0 and len(y) >= 4:
            from nilearn.mass_univariate import permuted_ols

            # the score is the tested variable and the latent variables are the targets, so that the
            # maximum statistic is taken over variables: family-wise corrected p-values per score
            out = permuted_ols(
                y[:, None],
                variables.to_numpy(float)[keep],
                confounding_vars=c[:, 1:] if c.shape[1] > 1 else None,
                n_perm=n_permutations,
                random_state=seed,
                two_sided_test=True,
                verbose=0,
                output_type="dict",
            )
            neg_log = np.asarray(out["logp_max_t"]).ravel()
            for variable, value in zip(variables.columns, neg_log, strict=True):
                for row in rows:
                    if row["score"] == score and row["variable"] == variable:
                        row["permutation_p"] = float(10**-value)
    table = pd.DataFrame(rows)
    if not len(table):  # no score had enough patients: the table's columns, no rows
        return pd.DataFrame(columns=[*EMPTY_COLUMNS, "family", "q_value"])
    families = families or {}
    table["family"] = [families.get(v, "all") for v in table["variable"]]
    p = table["adjusted_p"].fillna(1.0)
    table["q_value"] = p.groupby(table["family"]).transform(
        lambda part: stats.false_discovery_control(part.to_numpy(), method="bh")
    )
    return table
