"""Checkpoints: plain dictionaries of tensors and numbers, written atomically, loadable with
``torch.load(..., weights_only=True)`` (never a pickled module)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sepclr_med.atomic import atomic_path


def save_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module,
                    optimizer: torch.optim.Optimizer, epoch: int, extra: dict | None = None) -> Path:
    """Write model and optimizer state after ``epoch`` (1-based count of finished epochs)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": int(epoch),
             **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely (tensors and plain types only)."""
    return torch.load(path, map_location=map_location, weights_only=True)
