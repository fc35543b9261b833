"""Use a caller's model for inference and give it back as it was (mode, gradients, device)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

import torch

M = TypeVar("M")


@contextmanager
def inference_copy_of(model: M, device: str | torch.device | None = None) -> Iterator[M]:
    """``model`` in eval mode, without parameter gradients, on ``device``, for the block.

    On exit the model's training mode, each parameter's ``requires_grad`` and its device are
    restored: the caller's object is left as it was found.

    Parameters
    ----------
    model : torch.nn.Module
        The caller's model.
    device : str or torch.device, optional
        Where to run (default: where the model is).
    """
    if not isinstance(model, torch.nn.Module):  # anything with encode() (a fitted baseline, a test double)
        yield model
        return
    training = model.training
    grads = [p.requires_grad for p in model.parameters()]
    first = next(model.parameters(), None)
    home = first.device if first is not None else None
    target = torch.device(device) if device is not None else home
    try:
        if target is not None and target != home:
            model.to(target)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        yield model
    finally:
        model.train(training)
        for p, g in zip(model.parameters(), grads, strict=True):
            p.requires_grad_(g)
        if home is not None and target != home:
            model.to(home)
