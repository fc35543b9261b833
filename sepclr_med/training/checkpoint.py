"""Checkpoints: plain dictionaries of tensors and numbers, written atomically, loadable with
``torch.load(..., weights_only=True)`` (never a pickled module)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from sepclr_med.atomic import atomic_path


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    extra: dict | None = None,
) -> Path:
    """Write model and optimizer state after ``epoch`` (1-based count of finished epochs)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": int(epoch), **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint safely (tensors and plain types only).

    Raises :class:`~sepclr_med.errors.SepclrError` naming the file when it is not a safe state
    dictionary (a pickled object, a truncated or corrupt file).
    """
    from sepclr_med.errors import SepclrError

    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (OSError, EOFError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
        raise SepclrError(
            f"{path}: not a readable weights file (truncated, corrupt, or not a plain state dict "
            f"of tensors; {type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
        ) from None
    except Exception as exc:  # pickle.UnpicklingError and friends from a file that is not ours
        raise SepclrError(f"{path}: refused: not a plain state dict of tensors ({type(exc).__name__})") from None
    if not isinstance(state, dict):
        raise SepclrError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return state
