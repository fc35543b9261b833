"""Every method of the benchmark behind one call: train on a cohort, embed another.

Each method returns the same latents table as ``sepclr-med embed`` (``subject_id``, ``group``,
``common_*``, ``salient_*``), so every method meets the same probes. Single-space methods
(SimCLR, which has one space) put that space in both column groups.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sepclr_med.errors import SepclrError
from sepclr_med.training.distributed import resolve_device


@dataclass(frozen=True)
class Method:
    """A benchmarked method: how it is trained and what it is."""

    name: str
    kind: str
    description: str
    overrides: dict = field(default_factory=dict)


# the paper's objective and MRI-like weights (1, 10, 10), without sepclr-med's leakage penalty
PAPER = {"loss.lambda_independence": 0.0, "loss.beta_salient": 1.0}

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("sepclr", "sepclr", "SepCLR, sepclr-med defaults (TrainConfig())"),
        Method(
            "sepclr-paper",
            "sepclr",
            "SepCLR, the paper's objective with weights (1, 10, 10), no leakage penalty",
            PAPER,
        ),
        Method(
            "sepclr-adversary",
            "sepclr",
            "paper objective + gradient-reversal adversary predicting patients' "
            "salient reps from their common reps (leakage option)",
            {**PAPER, "loss.lambda_adversary": 10.0},
        ),
        Method(
            "sepclr-no-jem",
            "sepclr",
            "paper objective without k-JEM (lambda_jem = 0)",
            {**PAPER, "loss.lambda_jem": 0.0},
        ),
        Method(
            "sepclr-no-infoless",
            "sepclr",
            "paper objective without the info-less term (beta_infoless = 0)",
            {**PAPER, "loss.beta_infoless": 0.0},
        ),
        Method(
            "simclr",
            "simclr",
            "SimCLR on all subjects, one space (common loss only)",
            {**PAPER, "loss.beta_salient": 0.0, "loss.beta_infoless": 0.0, "loss.lambda_jem": 0.0},
        ),
        Method("untrained", "untrained", "the SepCLR encoders, randomly initialised, not trained"),
        Method("cpca", "cpca", "contrastive PCA on voxels in the brain mask (10 + 10 components)"),
        Method("cvae", "cvae", "3D contrastive VAE (Abid & Zou)"),
        Method("mm-cvae", "cvae", "3D moment-matching contrastive VAE (Weinberger et al.)", {"mmd_weight": 1000.0}),
    )
}


def _voxels(cohort, preprocess) -> np.ndarray:
    from sepclr_med.data import cached_dataset

    data = cached_dataset(cohort.records(), preprocess, cache="none")
    mask = preprocess.mask_array()
    rows = []
    for i in range(len(data)):
        volume = data[i]["image"][0].numpy()
        rows.append(volume[mask] if mask is not None and mask.shape == volume.shape else volume.ravel())
    return np.stack(rows)


def fit_and_embed(
    name: str, train_cohort, test_cohort, out: str | Path, *, seed: int = 0, epochs: int | None = None, console=None
) -> tuple[pd.DataFrame, float]:
    """Train method ``name`` on ``train_cohort`` and return the latents of ``test_cohort``.

    Parameters
    ----------
    name : str
        A key of :data:`METHODS`.
    train_cohort, test_cohort : Cohort
        Training subjects and held-out subjects to embed.
    out : path-like
        Folder for this method's run directory (SepCLR-family methods).
    seed : int
        Seed of the method.
    epochs : int, optional
        Training budget (epochs) of the deep methods; default: ``TrainConfig``'s.

    Returns
    -------
    (pandas.DataFrame, float)
        Latents of ``test_cohort`` and the wall time of fitting, in seconds.
    """
    from sepclr_med.embed import embed, encode_cohort, latent_table
    from sepclr_med.models import SepCLRModel
    from sepclr_med.run import Run
    from sepclr_med.training import TrainConfig
    from sepclr_med.training.loop import train

    if name not in METHODS:
        raise SepclrError(f"unknown method {name!r}; choose from {', '.join(METHODS)}")
    method = METHODS[name]
    base = TrainConfig().override(**{"seed": seed, "optim.epochs": epochs, "device": "auto"})
    preprocess = base.preprocess.resolve(
        train_cohort.table["image"].tolist(), train_cohort.table["image"][~train_cohort.is_target].tolist()
    )
    tic = time.perf_counter()
    if method.kind in ("sepclr", "simclr"):
        config = base.override(**method.overrides)
        run_dir = Path(out)
        if (run_dir / "config.toml").is_file():  # a finished or interrupted run is reused: same objective?
            stored = TrainConfig.load_run(run_dir)
            if (stored.loss, stored.model, stored.seed) != (config.loss, config.model, config.seed):
                raise SepclrError(
                    f"{run_dir} holds a run trained with another configuration than method "
                    f"{name!r} (loss {stored.loss}); use another --out"
                )
        if not (run_dir / "model.pt").is_file():
            train(
                train_cohort, run_dir, config, resume=(run_dir / "checkpoints" / "last.pt").is_file(), console=console
            )
        seconds = time.perf_counter() - tic
        latents = embed(Run(run_dir), test_cohort)
        if method.kind == "simclr":
            common = latents.filter(like="common_").to_numpy()
            latents = latent_table(test_cohort, common, common)
        return latents, seconds
    if method.kind == "untrained":
        torch.manual_seed(seed)
        return encode_cohort(SepCLRModel(base.model), preprocess, test_cohort), time.perf_counter() - tic
    if method.kind == "cpca":
        from sepclr_med.baselines.cpca import ContrastivePCA

        cpca = ContrastivePCA(random_state=seed).fit(_voxels(train_cohort, preprocess), train_cohort.is_target)
        seconds = time.perf_counter() - tic
        return latent_table(test_cohort, *cpca.transform(_voxels(test_cohort, preprocess))), seconds
    from sepclr_med.baselines.cvae_training import train_cvae

    log = console.print if console is not None else None
    model = train_cvae(
        train_cohort,
        preprocess,
        mmd_weight=method.overrides.get("mmd_weight", 0.0),
        epochs=base.optim.epochs,
        seed=seed,
        device=str(resolve_device(base.device)),
        log=log,
    )
    seconds = time.perf_counter() - tic
    return encode_cohort(model, preprocess, test_cohort, device=resolve_device(base.device)), seconds
