"""Reps of preprocessed volumes from any encoder pair, and the latents table they make.

Training uses these for the reference latents it stores; :mod:`sepclr_med.embed` for any cohort.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from sepclr_med.data.store import VolumeStore, batches
from sepclr_med.io.cohort import Cohort
from sepclr_med.models.inference import inference_copy_of


@torch.no_grad()
def encode_dataset(
    model, data, *, batch_size: int = 16, device: str | torch.device = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Common and salient reps of a dataset of preprocessed volumes (dicts with ``image``).

    ``model`` is anything with ``encode(x) -> (common, salient)`` (SepCLR, cVAE); it runs in
    eval mode on ``device`` and is given back in its own mode, on its own device.
    """
    dev = torch.device(device)
    if isinstance(data, VolumeStore):  # batches gathered where the volumes are (GPU, pinned or memmap)
        chunks = [range(i, min(i + batch_size, len(data))) for i in range(0, len(data), batch_size)]
        images = (volumes.float() for _, volumes in batches(data, chunks, dev))
    else:
        loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False)
        images = (batch["image"].to(dev) for batch in loader)
    common, salient = [], []
    with inference_copy_of(model, dev) as encoder:  # the caller's mode and device restored after
        for image in images:
            c, s = encoder.encode(image)
            common.append(c.float().cpu().numpy())
            salient.append(s.float().cpu().numpy())
    return np.concatenate(common), np.concatenate(salient)


def latent_table(cohort: Cohort, common: np.ndarray, salient: np.ndarray) -> pd.DataFrame:
    """The latents table: ``subject_id``, ``group``, ``common_*``, ``salient_*``."""
    table = pd.DataFrame({"subject_id": cohort.subject_ids, "group": cohort.table["group"].tolist()})
    latents = pd.DataFrame(
        np.hstack([common, salient]),
        columns=[f"common_{i}" for i in range(common.shape[1])] + [f"salient_{i}" for i in range(salient.shape[1])],
    )
    return pd.concat([table, latents], axis=1)
