"""Batches that always hold both groups: every batch has >= ``min_per_group`` controls and
patients, on every rank, so that the SepCLR loss terms are always defined."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from sepclr_med.errors import SepclrError


class GroupStratifiedBatchSampler(Sampler[list[int]]):
    """Yield batches of indices with at least ``min_per_group`` of each group.

    All subjects are used once per epoch: each group is shuffled and split into as many near-equal
    chunks as there are batches, and chunks are paired largest-with-smallest so that batch sizes
    differ by at most one or two. With very imbalanced groups the number of batches is capped by
    the smaller group, so batches grow beyond ``batch_size`` (a warning says so). Under DDP each
    rank takes every ``num_replicas``-th batch of the
    same global draw (same ``seed`` and epoch on all ranks).

    Parameters
    ----------
    is_target : array-like of bool
        True for patients, False for controls, one per dataset index.
    batch_size : int
        Target batch size per rank (batches may be up to ~1 larger or smaller).
    min_per_group : int
        Minimum number of subjects of each group in every batch.
    shuffle : bool
        Shuffle each epoch (seeded by ``seed`` and ``set_epoch``).
    seed : int
        Base seed.
    num_replicas, rank : int
        DDP world size and this rank.
    """

    def __init__(
        self,
        is_target,
        batch_size: int,
        *,
        min_per_group: int = 2,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        self.is_target = np.asarray(is_target, dtype=bool)
        self.batch_size = int(batch_size)
        self.min_per_group = int(min_per_group)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        if self.batch_size < 2 * self.min_per_group:
            raise SepclrError(
                f"batch_size {batch_size} is too small: each batch needs "
                f"{self.min_per_group} controls and {self.min_per_group} patients"
            )
        n_small = min(int(self.is_target.sum()), int((~self.is_target).sum()))
        if n_small // self.min_per_group < self.num_replicas:
            raise SepclrError(
                f"too few subjects in the smaller group ({n_small}) for "
                f"{self.num_replicas} rank(s) x {self.min_per_group} per batch"
            )
        self.n_batches = self._count_batches(n_small)
        mean_size = len(self.is_target) / self.n_batches
        if mean_size > 1.5 * self.batch_size:
            warnings.warn(
                f"groups are imbalanced ({n_small} subjects in the smaller group): to keep "
                f">= {self.min_per_group} of each group per batch, batches hold ~{mean_size:.0f} "
                f"subjects instead of {self.batch_size}",
                stacklevel=2,
            )

    def _count_batches(self, n_small: int) -> int:
        world = self.num_replicas
        wanted = -(-len(self.is_target) // self.batch_size)  # ceil
        wanted = -(-wanted // world) * world  # round up to a multiple of the world size
        cap = n_small // self.min_per_group // world * world
        return max(world, min(wanted, cap))

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of ``epoch`` (call before iterating, on every rank)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n_batches // self.num_replicas

    def global_batches(self) -> list[list[int]]:
        """All batches of this epoch, for all ranks."""
        rng = np.random.default_rng([self.seed, self.epoch])
        chunks = []
        for group in (False, True):
            idx = np.flatnonzero(self.is_target == group)
            if self.shuffle:
                idx = rng.permutation(idx)
            chunks.append(np.array_split(idx, self.n_batches))
        batches = [np.concatenate([c, t]) for c, t in zip(chunks[0], chunks[1][::-1], strict=True)]
        if self.shuffle:
            batches = [rng.permutation(b) for b in batches]
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return [b.tolist() for b in batches]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.global_batches()[self.rank :: self.num_replicas]
