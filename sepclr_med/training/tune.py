"""Per-cohort loss weights: a small grid tried on validation folds with the run's own criterion.

Each setting of :data:`GRID` is trained once per fold (stratified by group; the other folds
train) and scored by the criterion that picks a run's kept weights (:mod:`.monitor`): the
validation AUC of the salient norm, averaged over 3 epochs, at the kept epoch. Settings are
ranked by that score averaged over folds (ties: higher patients/controls norm ratio). Only group
labels are used.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from sepclr_med.atomic import write_table, write_text
from sepclr_med.errors import SepclrError
from sepclr_med.io.cohort import Cohort
from sepclr_med.training.config import TrainConfig

# (beta_salient, beta_infoless, lambda_jem): the defaults first, the paper's MRI-like setting, then
# a stronger k-JEM and a stronger patients' spread (see docs/method.md).
GRID: tuple[dict[str, float], ...] = (
    {"loss.beta_salient": 10.0, "loss.beta_infoless": 10.0, "loss.lambda_jem": 10.0},
    {"loss.beta_salient": 1.0, "loss.beta_infoless": 10.0, "loss.lambda_jem": 10.0},
    {"loss.beta_salient": 10.0, "loss.beta_infoless": 10.0, "loss.lambda_jem": 100.0},
    {"loss.beta_salient": 30.0, "loss.beta_infoless": 10.0, "loss.lambda_jem": 10.0},
)


def folds(cohort: Cohort, n_folds: int, seed: int) -> list[np.ndarray]:
    """``n_folds`` splits (``"train"``/``"val"`` per subject), each group spread evenly."""
    from sklearn.model_selection import StratifiedKFold

    if min(cohort.is_target.sum(), (~cohort.is_target).sum()) < 2 * n_folds:
        raise SepclrError(f"tune: {n_folds} folds need >= {2 * n_folds} controls and patients")
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    out = []
    for _, val in splitter.split(np.zeros(len(cohort)), cohort.is_target):
        split = np.array(["train"] * len(cohort), dtype=object)
        split[val] = "val"
        out.append(split)
    return out


def _label(setting: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:g}" for k, v in setting.items())


def tune(
    cohort: Cohort,
    out: str | os.PathLike,
    base: TrainConfig | None = None,
    *,
    grid: tuple[dict, ...] = GRID,
    n_folds: int = 2,
    keep_runs: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> tuple[pd.DataFrame, TrainConfig]:
    """Try ``grid`` on ``n_folds`` validation folds of ``cohort``.

    Parameters
    ----------
    cohort : Cohort
        The training cohort.
    out : path-like
        Folder: ``tune.csv`` (one row per setting and fold), ``tuned.toml`` (the best setting on
        top of ``base``, for ``train --config``); fold runs in ``runs/`` while tuning.
    base : TrainConfig, optional
        Everything not in the grid (epochs, batch size, ...); default :class:`TrainConfig`.
    grid : tuple of dict
        Settings as ``{"loss.beta_salient": value, ...}`` overrides.
    n_folds : int
        Validation folds.
    keep_runs : bool
        Keep the fold runs (default: removed once scored).
    progress : callable, optional
        ``progress(done, total, label)`` after each fold run.

    Returns
    -------
    (pandas.DataFrame, TrainConfig)
        Per setting and fold: score, norm ratio, kept epoch, verdict; and the chosen config.
    """
    from sepclr_med.training.loop import train
    from sepclr_med.training.run_files import read_verdict

    base = base or TrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = folds(cohort, n_folds, base.seed)
    rows, total = [], len(grid) * n_folds
    for i, setting in enumerate(grid):
        config = base.override(**setting)
        for k, split in enumerate(splits):
            run_dir = out / "runs" / f"setting{i}_fold{k}"
            if run_dir.exists():
                shutil.rmtree(run_dir)
            train(cohort, run_dir, config, split=split)
            verdict = read_verdict(run_dir)
            rows.append(
                {
                    "setting": i,
                    "weights": _label(setting),
                    "fold": k,
                    "score": verdict.get("smoothed_val_auc", np.nan),
                    "val_auc": verdict.get("val_auc", np.nan),
                    "norm_ratio": verdict.get("val_norm_ratio", np.nan),
                    "epoch": verdict.get("epoch"),
                    "verdict": verdict["status"],
                    **setting,
                }
            )
            write_table(out / "tune.csv", pd.DataFrame(rows), float_format="%.4f")
            if not keep_runs:
                shutil.rmtree(run_dir)
            if progress is not None:
                progress(len(rows), total, _label(setting))
    table = pd.DataFrame(rows)
    ranking = (
        table.groupby("setting")[["score", "norm_ratio"]].mean().sort_values(["score", "norm_ratio"], ascending=False)
    )
    best = int(ranking.index[0])
    chosen = base.override(**grid[best])
    header = (
        f"# sepclr-med tune: best of {len(grid)} settings on {n_folds} folds of {cohort.source.name}\n"
        f"# ({_label(grid[best])}: mean fold score {ranking.iloc[0]['score']:.3f}); see tune.csv\n"
    )
    write_text(out / "tuned.toml", header + chosen.to_toml())
    if not keep_runs:
        shutil.rmtree(out / "runs", ignore_errors=True)
    return table, chosen


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """One row per setting: mean and minimum fold score, mean norm ratio, verdicts; best first."""
    summary = (
        table.groupby(["setting", "weights"])
        .agg(
            score=("score", "mean"),
            worst_fold=("score", "min"),
            norm_ratio=("norm_ratio", "mean"),
            separated=("verdict", lambda v: f"{(v == 'separated').sum()}/{len(v)}"),
        )
        .reset_index()
    )
    return summary.sort_values(["score", "norm_ratio"], ascending=False).reset_index(drop=True)
