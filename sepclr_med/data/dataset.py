"""Cached preprocessing and the per-sample MONAI two-view dataset.

:func:`cached_dataset` is the one door to preprocessed volumes (a
:class:`~sepclr_med.data.store.VolumeStore`). Training makes its views on whole batches where the
model runs (:mod:`sepclr_med.data.batch_views`); :class:`TwoViewDataset` keeps MONAI's per-sample
views, the reference the batch views are tested against.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from sepclr_med.data.augment import ContrastiveViewsd
from sepclr_med.data.preprocess import PreprocessConfig
from sepclr_med.data.store import CACHE_MODES, VolumeStore

__all__ = ["CACHE_MODES", "TwoViewDataset", "cached_dataset"]


def cached_dataset(
    records: list[dict],
    config: PreprocessConfig,
    *,
    cache: str = "memory",
    cache_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
) -> VolumeStore:
    """The preprocessed volumes of ``records`` (items: dicts with ``image`` of shape ``(1, *shape)``).

    Parameters
    ----------
    records : list of dict
        ``Cohort.records()``: ``image`` path plus metadata kept as is.
    config : PreprocessConfig
        Resolved preprocessing settings.
    cache : {"memory", "disk", "none"}
        Where preprocessed volumes are kept between epochs (:class:`VolumeStore`).
    cache_dir : path-like, optional
        Root of the disk cache (required for ``"disk"``).
    num_workers : int
        Threads that decode images while the cache fills.
    """
    return VolumeStore(records, config, cache=cache, cache_dir=cache_dir, num_workers=num_workers)


class TwoViewDataset(torch.utils.data.Dataset):
    """Two augmented views of each cached volume; augmentation is a pure function of
    ``(seed, epoch, index)``, so runs resume, and workers and ranks agree, exactly.

    Parameters
    ----------
    base : torch.utils.data.Dataset
        Yields dicts with ``image`` (e.g. :func:`cached_dataset`).
    views : ContrastiveViewsd
        Makes ``view1``/``view2`` from ``image``.
    seed : int
        Base seed of the augmentation.
    """

    def __init__(self, base, views: ContrastiveViewsd, seed: int = 0) -> None:
        self.base = base
        self.views = views
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation draws of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.base[index])
        item["image"] = item["image"].clone()  # some MONAI transforms write in place: keep the cache intact
        seed = np.random.SeedSequence([self.seed, self.epoch, int(index)]).generate_state(1)[0]
        self.views.set_random_state(seed=int(seed))
        out = self.views(item)
        out["index"] = int(index)
        return out
