"""Training loop of the contrastive VAE baselines (same cache and stratified batches as SepCLR)."""

from __future__ import annotations

import numpy as np
import torch

from sepclr_med.baselines.cvae import ContrastiveVAE
from sepclr_med.data import GroupStratifiedBatchSampler, batches, cached_dataset


def train_cvae(
    cohort,
    preprocess,
    *,
    mmd_weight: float = 0.0,
    epochs: int = 30,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    latent_dims: tuple[int, int] = (32, 32),
    device: str = "cpu",
    log=None,
) -> ContrastiveVAE:
    """Train a cVAE (``mmd_weight=0``) or MM-cVAE on ``cohort`` (on ``device``, as the SepCLR
    runs it is compared with) and return it in eval mode."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    data = cached_dataset(cohort.records(), preprocess, cache="memory")
    sampler = GroupStratifiedBatchSampler(cohort.is_target, batch_size, seed=seed)
    labels = torch.tensor(np.asarray(cohort.is_target, dtype=bool))
    dev = torch.device(device)
    data.place(dev)
    model = ContrastiveVAE(preprocess.output_shape, *latent_dims, mmd_weight=mmd_weight).to(device)
    model = model.to(memory_format=torch.channels_last_3d)  # type: ignore[call-overload]  # torch's stub omits it
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        totals = []
        for indices, volumes in batches(data, sampler, dev):  # gathered where the store is
            x = volumes.float().contiguous(memory_format=torch.channels_last_3d)
            total, _ = model.loss(x, labels[indices].to(dev))
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            totals.append(total.detach().item())
        if log is not None:
            log(f"{'MM-cVAE' if mmd_weight else 'cVAE'} epoch {epoch + 1}/{epochs}: loss {np.mean(totals):.1f}")
    return model.eval()
