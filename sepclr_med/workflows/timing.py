"""Timed passes over a cohort through the training data path (store, batches, batch views on
the CPU), used by the demo and ``sepclr-med data time``."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from sepclr_med.data.augment import AugmentConfig
from sepclr_med.data.batch_views import BatchViews
from sepclr_med.data.dataset import cached_dataset
from sepclr_med.data.preprocess import PreprocessConfig
from sepclr_med.data.sampler import GroupStratifiedBatchSampler
from sepclr_med.data.store import batches


@dataclass
class PassTiming:
    """One pass over the cohort: what it did and how long it took."""

    label: str
    seconds: float
    volumes: int
    batches: int
    batch_shape: tuple[int, ...]

    @property
    def volumes_per_second(self) -> float:
        """Throughput in subjects per second."""
        return self.volumes / self.seconds if self.seconds > 0 else float("inf")


def timed_passes(
    cohort,
    config: PreprocessConfig | None = None,
    *,
    epochs: int = 2,
    batch_size: int = 16,
    cache: str = "memory",
    cache_dir=None,
    augment: AugmentConfig | None = None,
    seed: int = 0,
) -> list[PassTiming]:
    """Run ``epochs`` passes of two-view stratified batches and time each.

    The first pass fills the cache (decodes every NIfTI); later passes read from the cache.

    Returns
    -------
    list of PassTiming
    """
    is_target = cohort.is_target
    config = (
        config
        if config is not None and config.resolved
        else (config or PreprocessConfig()).resolve(
            cohort.table["image"].tolist(), cohort.table["image"][~is_target].tolist()
        )
    )
    timings = []
    start = time.perf_counter()
    store = cached_dataset(cohort.records(), config, cache=cache, cache_dir=cache_dir)
    build = time.perf_counter() - start
    views = BatchViews(augment or AugmentConfig(), config.output_shape, seed=seed)
    sampler = GroupStratifiedBatchSampler(is_target, batch_size, seed=seed)
    cpu = torch.device("cpu")
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        start = time.perf_counter()
        n_batches = 0
        shape: tuple[int, ...] = ()
        for indices, volumes in batches(store, sampler, cpu):
            first, _ = views(volumes, indices, epoch)
            n_batches += 1
            shape = tuple(first.shape)
        seconds = time.perf_counter() - start + (build if epoch == 0 else 0.0)
        label = (
            f"pass 1: fills the {cache} cache (unless already full) + views"
            if epoch == 0
            else f"pass {epoch + 1}: from the {cache} cache + views"
        )
        timings.append(PassTiming(label, seconds, len(store), n_batches, shape))
    return timings
