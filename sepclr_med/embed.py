"""Latent representations of any cohort with a trained run's own preprocessing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from sepclr_med.io.cohort import Cohort
from sepclr_med.run import Run
from sepclr_med.training.encode import encode_dataset, latent_table

__all__ = ["embed", "encode_cohort", "encode_dataset", "latent_table", "write_latents", "write_latents_bids"]


@torch.no_grad()
def embed(run: Run, cohort: Cohort, *, batch_size: int = 16, device: str = "cpu") -> pd.DataFrame:
    """Common and salient reps (eval mode) of every subject of ``cohort``.

    The cohort may hold subjects the model never saw, and only patients or only controls.

    Parameters
    ----------
    run : Run
        A trained run directory.
    cohort : Cohort
        Subjects to embed (validated).
    batch_size : int
        Volumes per forward pass.
    device : str
        ``cpu``, ``cuda`` or ``auto``.

    Returns
    -------
    pandas.DataFrame
        ``subject_id``, ``group``, ``common_0..common_{dc-1}``, ``salient_0..salient_{ds-1}``.
    """
    from sepclr_med.training.distributed import resolve_device

    dev = resolve_device(device)
    return encode_cohort(run.load_model(dev), run.config.preprocess, cohort, batch_size=batch_size, device=dev)


@torch.no_grad()
def encode_cohort(
    model, preprocess, cohort: Cohort, *, batch_size: int = 16, device: str | torch.device = "cpu"
) -> pd.DataFrame:
    """Reps of ``cohort`` from any :class:`~sepclr_med.models.SepCLRModel` (e.g. untrained).

    Parameters
    ----------
    model : SepCLRModel
        The encoders (put in eval mode here).
    preprocess : PreprocessConfig
        Resolved preprocessing (the grid and scale the model was trained with).
    cohort : Cohort
        Subjects to embed.

    Returns
    -------
    pandas.DataFrame
        As :func:`embed`.
    """
    from sepclr_med.data import cached_dataset

    data = cached_dataset(cohort.records(), preprocess, cache="none")
    return latent_table(cohort, *encode_dataset(model, data, batch_size=batch_size, device=device))


def write_latents(latents: pd.DataFrame, path) -> None:
    """Write the latents CSV (tab-separated for ``.tsv``) atomically."""
    from sepclr_med.atomic import write_table
    from sepclr_med.locking import output_lock

    path = Path(path)
    with output_lock(path.parent, target=path.name):
        write_table(path, latents, float_format="%.6g")


def write_latents_bids(latents: pd.DataFrame, cohort: Cohort, out) -> list:
    """Write latents as a BIDS-derivatives dataset (see :func:`_write_latents_bids`), holding ``out``'s lock."""
    from sepclr_med.locking import output_lock

    with output_lock(out):
        return _write_latents_bids(latents, cohort, out)


def _write_latents_bids(latents: pd.DataFrame, cohort: Cohort, out) -> list:
    """Write latents as a BIDS-derivatives dataset: one ``..._desc-sepclr_latents.tsv`` per
    subject (beside its image's entities) and ``dataset_description.json``; returns the paths."""
    from sepclr_med.atomic import write_table
    from sepclr_med.errors import SepclrError
    from sepclr_med.io.bids import derivative_path, write_dataset_description

    if cohort.bids_root is None:
        raise SepclrError(f"--out {out}: a folder of BIDS derivatives needs a BIDS cohort; give a .csv or .tsv file")
    out = Path(out)
    write_dataset_description(out, cohort.bids_root)
    images = dict(zip(cohort.subject_ids, cohort.table["image"], strict=True))
    paths = []
    for _, row in latents.iterrows():
        path = derivative_path(out, images[row["subject_id"]], desc="sepclr", suffix="latents", extension=".tsv")
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.append(write_table(path, row.to_frame().T, float_format="%.6g"))
    return paths
