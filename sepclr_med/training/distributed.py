"""Distributed data parallel (DDP) helpers: process group from ``torchrun``'s environment,
gathering with gradients, and "only rank 0 writes"."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    """Where this process stands: rank, world size and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        """True under DDP with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and prints."""
        return self.rank == 0

    def _sizes(self, x: torch.Tensor) -> list[int]:
        size = torch.tensor([x.shape[0]], device=x.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        dist.all_gather(sizes, size)
        return [int(s) for s in sizes]

    @staticmethod
    def _pad(x: torch.Tensor, rows: int) -> torch.Tensor:
        return torch.cat([x, x.new_zeros((rows - x.shape[0], *x.shape[1:]))]) if rows > x.shape[0] else x

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate ``x`` from all ranks in rank order, keeping gradients to every input.

        Ranks may hold different numbers of rows (stratified batches differ by one or two):
        rows are padded to the largest size for the collective, then the padding is dropped.
        """
        if not self.enabled:
            return x
        from torch.distributed.nn.functional import all_gather

        sizes = self._sizes(x)
        parts = all_gather(self._pad(x, max(sizes)))
        return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)], dim=0)

    def gather_nograd(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenate ``x`` from all ranks (no autograd), e.g. labels; sizes may differ."""
        if not self.enabled:
            return x
        sizes = self._sizes(x)
        padded = self._pad(x.contiguous(), max(sizes))
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)], dim=0)

    def mean(self, value: float) -> float:
        """Average a Python number over ranks."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def barrier(self) -> None:
        """Wait for all ranks."""
        if self.enabled:
            dist.barrier()


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    from sepclr_med.errors import SepclrError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise SepclrError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SepclrError("device 'cuda' requested but no CUDA GPU is available; use --device cpu")
    return torch.device(name)


def init_distributed(device_name: str = "auto") -> DistContext:
    """Start the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1).

    gloo on CPU, NCCL on GPU; each process uses the GPU of its ``LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world <= 1:
        return DistContext(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world, local, device)


def shutdown(ctx: DistContext) -> None:
    """Destroy the process group if this module started one."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
