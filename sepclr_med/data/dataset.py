"""Cached preprocessing and the two-view dataset fed to the model.

The cache holds only deterministic preprocessing (one decoded, resampled, normalised volume per
subject); augmentation runs after it. ``cache="memory"`` keeps volumes in RAM (MONAI
``CacheDataset``); ``cache="disk"`` stores them under ``cache_dir/<settings hash>/`` (MONAI
``PersistentDataset``), so a changed preprocessing setting never reuses a stale cache and a
changed image file (new size or modification time) gets a new entry.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset, Dataset, PersistentDataset
from monai.transforms import Compose

from sepclr_med.data.augment import ContrastiveViewsd
from sepclr_med.data.preprocess import PreprocessConfig, preprocessing
from sepclr_med.errors import SepclrError

CACHE_MODES = ("memory", "disk", "none")


def _with_file_stamp(record: dict) -> dict:
    """Add the image's size and mtime so that the disk cache key follows file changes."""
    stat = os.stat(record["image"])
    return {**record, "file_size": stat.st_size, "file_mtime_ns": stat.st_mtime_ns}


def cached_dataset(
    records: list[dict],
    config: PreprocessConfig,
    *,
    cache: str = "memory",
    cache_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    progress: bool = False,
) -> Dataset:
    """A dataset of preprocessed volumes (dicts with ``image`` of shape ``(1, *shape)``).

    Parameters
    ----------
    records : list of dict
        ``Cohort.records()``: ``image`` path plus metadata kept as is.
    config : PreprocessConfig
        Resolved preprocessing settings.
    cache : {"memory", "disk", "none"}
        Where preprocessed volumes are kept between epochs.
    cache_dir : path-like, optional
        Root of the disk cache (required for ``"disk"``).
    num_workers : int
        Threads used to fill the memory cache.
    progress : bool
        Show MONAI's progress bar while caching.
    """
    if cache not in CACHE_MODES:
        raise SepclrError(f"cache must be one of {CACHE_MODES}, not {cache!r}")
    transform = Compose(preprocessing(config))
    if cache == "memory":
        return CacheDataset(
            records, transform, cache_rate=1.0, num_workers=max(num_workers, 1), progress=progress, copy_cache=False
        )
    if cache == "disk":
        if cache_dir is None:
            raise SepclrError("cache='disk' needs a cache_dir")
        folder = Path(cache_dir) / config.hash()
        folder.mkdir(parents=True, exist_ok=True)
        return PersistentDataset([_with_file_stamp(r) for r in records], transform, cache_dir=folder)
    return Dataset(records, transform)


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
