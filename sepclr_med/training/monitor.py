"""Does a run work? Per-epoch separation of the salient space on validation subjects, the choice
of the kept weights, and the verdict written into the run.

The salient deviation of a subject is the norm of its salient head output: the objective pins
controls to the information-less point 0, so a working salient space puts held-out patients
farther from 0 than held-out controls. Each epoch logs, on the validation subjects:

- ``val_salient_auc``: AUC of that norm, patients against controls (0.5 = no separation), with a
  95 % interval (``_lo``, ``_hi``) from the Hanley & McNeil (1982) standard error;
- ``val_salient_norm_ratio``: patients' mean norm / controls' mean norm (1 = collapsed).

Kept weights (``model.pt``): the epoch of the second half of training with the highest
validation AUC averaged over it and the two epochs before it (ties: the later epoch). Only group
labels are used.

The verdict judges those weights. The kept epoch is the best of many looks at the same few
validation subjects, so its AUC is biased upwards and its per-epoch interval is too optimistic
(a cohort without any patient effect was called separated at AUC 0.76, CI 0.56-0.95, with 12 + 12
validation subjects). The verdict therefore tests the *selection* itself: the validation
subjects' salient norms of every epoch are kept (``val_salient_norms.npz``), their group labels are
permuted (one permutation for all epochs, so the epochs' correlation is kept) and the selection
rule is replayed; ``p_value`` is the fraction of ``N_PERMUTATIONS`` label permutations whose best
smoothed AUC reaches the observed one (a max-statistic permutation test, Westfall & Young 1993).
``separated`` when ``p_value < ALPHA`` and the kept epoch's norm ratio is above ``MIN_NORM_RATIO``;
``not separated`` otherwise; ``unchecked`` without validation subjects.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

MIN_NORM_RATIO = 1.2
SMOOTHING_EPOCHS = 3
ALPHA = 0.05
VAL_NORMS = "val_salient_norms.npz"  # in the run folder: norms (n_epochs, n_val), epoch, is_target
N_PERMUTATIONS = 2000
ADVICE = (
    "try per-cohort loss weights (`sepclr-med tune --cohort FILE`, then `train --config`), more "
    "epochs, or check that the patients' images differ from the controls' (registration, "
    "labels); do not read its maps, regions or reports as findings"
)


def auc_with_interval(patients: np.ndarray, controls: np.ndarray, z: float = 1.96) -> tuple[float, float, float]:
    """Mann-Whitney AUC of ``patients > controls`` and its Hanley-McNeil 95 % interval.

    Ties count one half. Returns ``(auc, lo, hi)``, clipped to [0, 1].
    """
    p = np.asarray(patients, dtype=float)[:, None]
    c = np.asarray(controls, dtype=float)[None, :]
    auc = float(((p > c) + 0.5 * (p == c)).mean())
    n1, n2 = p.shape[0], c.shape[1]
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n1 - 1) * (q1 - auc**2) + (n2 - 1) * (q2 - auc**2)) / (n1 * n2)
    se = math.sqrt(max(var, 0.0))
    return auc, max(0.0, auc - z * se), min(1.0, auc + z * se)


def salient_separation(norms: np.ndarray, is_target: np.ndarray) -> dict[str, float]:
    """Validation metrics of salient norms (one per subject) for patients vs controls."""
    norms, is_target = np.asarray(norms, dtype=float), np.asarray(is_target, dtype=bool)
    auc, lo, hi = auc_with_interval(norms[is_target], norms[~is_target])
    ratio = float(norms[is_target].mean() / max(norms[~is_target].mean(), 1e-12))
    return {"salient_auc": auc, "salient_auc_lo": lo, "salient_auc_hi": hi, "salient_norm_ratio": ratio}


def smoothed_auc(history: list[dict]) -> list[float]:
    """Validation AUC of each epoch averaged with the ``SMOOTHING_EPOCHS - 1`` epochs before it."""
    values = [m.get("val_salient_auc", math.nan) for m in history]
    return [float(np.mean(values[max(0, i - SMOOTHING_EPOCHS + 1) : i + 1])) for i in range(len(values))]


def _trailing_mean(values: np.ndarray) -> np.ndarray:
    """Mean of each row (epoch) with the ``SMOOTHING_EPOCHS - 1`` rows before it (fewer at the start)."""
    csum = np.cumsum(values, axis=0)
    out = csum.copy()
    k = SMOOTHING_EPOCHS
    out[k:] = csum[k:] - csum[:-k]
    counts = np.minimum(np.arange(1, len(values) + 1), k).reshape(-1, *([1] * (values.ndim - 1)))
    return out / counts


def kept_epoch(history: list[dict], epochs: int) -> int | None:
    """1-based epoch whose weights become ``model.pt`` (None without validation AUCs)."""
    smooth = smoothed_auc(history)
    first = epochs // 2  # candidates: the second half of training
    candidates = [
        (s, m["epoch"]) for s, m in zip(smooth, history, strict=True) if m["epoch"] > first and not math.isnan(s)
    ]
    return max(candidates)[1] if candidates else None


def selection_p_value(
    norms: np.ndarray,
    is_target: np.ndarray,
    epoch_numbers: np.ndarray,
    epochs: int,
    n_permutations: int = N_PERMUTATIONS,
    seed: int = 0,
) -> float:
    """Permutation p-value of the kept epoch's smoothed validation AUC, allowing for its selection.

    Parameters
    ----------
    norms : ndarray, shape (n_epochs, n_val)
        Salient norm of each validation subject at each logged epoch.
    is_target : ndarray of bool, shape (n_val,)
        Patients (True) and controls (False).
    epoch_numbers : ndarray of int, shape (n_epochs,)
        The 1-based epoch of each row.
    epochs : int
        Planned epochs: candidates are the epochs after ``epochs // 2``, as in :func:`kept_epoch`.
    n_permutations : int
        Label permutations; the smallest possible p-value is ``1 / (n_permutations + 1)``.
    seed : int
        Seed of the permutations.

    Returns
    -------
    float
        ``(1 + #{permutations whose best smoothed AUC >= the observed one}) / (n_permutations + 1)``.
    """
    norms, y = np.asarray(norms, dtype=float), np.asarray(is_target, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    rng = np.random.default_rng(seed)
    labels = np.vstack([y] + [rng.permutation(y) for _ in range(n_permutations)]).astype(float)
    ranks = rankdata(norms, axis=1)  # ties: mean ranks, i.e. count one half as in auc_with_interval
    aucs = (ranks @ labels.T - n1 * (n1 + 1) / 2) / (n1 * n0)  # (n_epochs, 1 + n_permutations)
    best = _trailing_mean(aucs)[np.asarray(epoch_numbers) > epochs // 2].max(axis=0)
    return float((1 + np.sum(best[1:] >= best[0] - 1e-12)) / (n_permutations + 1))


def verdict(history: list[dict], epoch: int | None, n_val: dict[str, int], p_value: float | None = None) -> dict:
    """The run's verdict on the kept weights of ``epoch`` (see the module docstring).

    ``p_value`` is :func:`selection_p_value`; without it (a run whose per-epoch validation norms
    were not all kept, e.g. resumed from an older version) the verdict falls back on the kept
    epoch's interval and says that the selection is not allowed for.
    """
    if epoch is None:
        return {
            "status": "unchecked",
            "epoch": history[-1]["epoch"] if history else None,
            "n_val": n_val,
            "message": "no validation subjects (cohort too small for a split): whether the salient "
            "space separates patients from controls was NOT checked",
            "advice": ADVICE,
        }
    m = next(m for m in history if m["epoch"] == epoch)  # the epoch actually kept
    auc, lo, hi, ratio = (m[f"val_salient_{k}"] for k in ("auc", "auc_lo", "auc_hi", "norm_ratio"))
    if p_value is None:
        ok = lo > 0.5 and ratio > MIN_NORM_RATIO
        test = "the choice of the kept epoch is NOT allowed for (per-epoch norms missing)"
    else:
        ok = p_value < ALPHA and ratio > MIN_NORM_RATIO
        test = f"p = {p_value:.3f} allowing for the choice of the kept epoch"
    figures = (
        f"validation AUC {auc:.2f} (95% CI {lo:.2f}-{hi:.2f}, {n_val['patient']} patients, "
        f"{n_val['control']} controls; {test}), patients/controls salient norm {ratio:.2f}, "
        f"epoch {epoch}"
    )
    message = (
        f"the salient space separates held-out patients from controls: {figures}"
        if ok
        else f"the salient space does NOT separate held-out patients from controls: {figures}"
    )
    return {
        "status": "separated" if ok else "not separated",
        "epoch": epoch,
        "val_auc": auc,
        "val_auc_lo": lo,
        "val_auc_hi": hi,
        "val_norm_ratio": ratio,
        "p_value": p_value,
        "smoothed_val_auc": smoothed_auc(history)[[h["epoch"] for h in history].index(epoch)],
        "n_val": n_val,
        "message": message,
        "advice": "" if ok else ADVICE,
    }


def verdict_warning(v: dict) -> str | None:
    """One line for users when a verdict is not ``separated`` (None when it is)."""
    if not v or v.get("status") == "separated":
        return None
    return f"{v['message']}; {v['advice']}." if v.get("advice") else f"{v['message']}."
