"""Voxel saliency of salient directions, batched over subjects.

For a subject ``x`` and a unit direction ``u`` in the salient space, the explained quantity is the
projection ``<u, s_rep(x)>``. Attributions use a healthy baseline, the controls' mean image:

- ``"ig"``: integrated gradients (Captum), ``(x - baseline) * mean gradient along the path``;
  they sum to ``<u, s(x)> - <u, s(baseline)>`` (completeness);
- ``"grad"``: the plain gradient of the projection at ``x``.

Each subject may have its own direction (e.g. its deviation from the controls' mean).
"""

from __future__ import annotations

import numpy as np
import torch


class Projection(torch.nn.Module):
    """``x -> <u_i, s_rep(x_i)>`` for a batch, with one direction per row (or one shared)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.encoder = model.salient_encoder

    def forward(self, x: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        return (self.encoder(x) * directions).sum(dim=1)


def _directions(directions: np.ndarray | torch.Tensor, n: int) -> torch.Tensor:
    u = torch.as_tensor(np.asarray(directions), dtype=torch.float32)
    return u.expand(n, -1).contiguous() if u.ndim == 1 else u


def attribute(model, volumes: torch.Tensor, directions, baseline: torch.Tensor, *, method: str = "ig",
              n_steps: int = 24, batch_size: int = 8) -> np.ndarray:
    """Attributions of ``<u, s_rep(x)>`` to voxels for a batch of volumes.

    Parameters
    ----------
    model : SepCLRModel
        Trained model (eval mode is set here).
    volumes : torch.Tensor
        ``(n, 1, X, Y, Z)`` preprocessed volumes.
    directions : array-like
        ``(d,)`` shared or ``(n, d)`` per-subject unit directions.
    baseline : torch.Tensor
        ``(1, X, Y, Z)`` or ``(1, 1, X, Y, Z)`` reference image (the controls' mean).
    method : {"ig", "grad"}
        Integrated gradients or plain gradients.
    n_steps : int
        Integration steps of ``"ig"`` (the budget: cost ~ n_steps forward-backward passes).
    batch_size : int
        Subjects per call; with ``"ig"`` the internal batch is ``batch_size * n_steps`` volumes
        split into chunks of at most 64.

    Returns
    -------
    numpy.ndarray
        ``(n, X, Y, Z)`` float32 attributions.
    """
    from captum.attr import IntegratedGradients, Saliency

    projection = Projection(model).eval()
    for p in projection.parameters():
        p.requires_grad_(False)
    u = _directions(directions, len(volumes))
    base = baseline.reshape(1, *volumes.shape[1:]).float()
    maps = []
    for start in range(0, len(volumes), batch_size):
        x = volumes[start:start + batch_size].float()
        ub = u[start:start + batch_size]
        if method == "ig":
            explainer = IntegratedGradients(projection)
            a = explainer.attribute(x, baselines=base.expand_as(x), additional_forward_args=(ub,),
                                    n_steps=n_steps, internal_batch_size=min(64, len(x) * n_steps))
        elif method == "grad":
            a = Saliency(projection).attribute(x.clone().requires_grad_(), additional_forward_args=(ub,), abs=False)
        else:
            raise ValueError(f"unknown attribution method {method!r} (ig or grad)")
        maps.append(a.detach()[:, 0].numpy().astype(np.float32))
    return np.concatenate(maps)


def group_maps(model, volumes: torch.Tensor, groups: dict[str, np.ndarray], directions: dict[str, np.ndarray],
               baseline: torch.Tensor, *, method: str = "ig", n_steps: int = 24) -> dict[str, np.ndarray]:
    """Mean attribution over each group's members along the group's shared direction.

    Averaging members' maps along their *own* deviation directions would not cancel their
    idiosyncratic deviations: along its own direction, a subject's deviation in any dimension
    contributes with the same sign as itself, so every such dimension adds up. Along the group's
    direction (controls' mean -> group mean) only what the members share does.

    Parameters
    ----------
    groups : dict of str -> numpy.ndarray
        Boolean row masks over ``volumes``; disjoint groups share one batched pass.
    directions : dict of str -> numpy.ndarray
        Unit direction ``(d,)`` of each group.

    Returns
    -------
    dict of str -> numpy.ndarray
        Mean ``(X, Y, Z)`` map of each group.
    """
    passes: list[dict[str, np.ndarray]] = []
    for name, mask in groups.items():
        mask = np.asarray(mask, bool)
        if not mask.any():
            raise ValueError(f"group {name!r} has no members")
        for part in passes:
            if not any((mask & other).any() for other in part.values()):
                part[name] = mask
                break
        else:
            passes.append({name: mask})
    out = {}
    for part in passes:
        rows = np.zeros((len(volumes), len(next(iter(directions.values())))), np.float32)
        for name, mask in part.items():
            rows[mask] = directions[name]
        covered = np.flatnonzero(np.any(list(part.values()), axis=0))
        maps = attribute(model, volumes[covered], rows[covered], baseline, method=method, n_steps=n_steps)
        for name, mask in part.items():
            out[name] = maps[mask[covered]].mean(axis=0)
    return out


@torch.no_grad()
def region_rep_changes(model, volumes: torch.Tensor, baseline: torch.Tensor, labels: np.ndarray,
                       region_ids: list[int], batch_size: int = 32) -> np.ndarray:
    """Change of the salient rep when each region is replaced by the baseline image.

    Returns
    -------
    numpy.ndarray
        ``(n_subjects, n_regions, d)``: ``s_rep(x) - s_rep(x with region r from baseline)``. The
        drop along any direction ``u`` is its projection on ``u`` (the projection is linear in ``u``),
        so one pass serves every direction.
    """
    encoder = model.salient_encoder.eval()
    base = baseline.reshape(volumes.shape[1:]).float()
    masks = [torch.as_tensor(labels == rid) for rid in region_ids]
    out = []
    for start in range(0, len(volumes), batch_size):
        x = volumes[start:start + batch_size].float()
        reference = encoder(x)
        out.append(torch.stack([reference - encoder(torch.where(mask, base, x)) for mask in masks], dim=1).numpy())
    return np.concatenate(out).astype(np.float32)


def region_ablation(model, volumes: torch.Tensor, directions, baseline: torch.Tensor, labels: np.ndarray,
                    region_ids: list[int], batch_size: int = 32) -> np.ndarray:
    """Drop of ``<u, s_rep(x)>`` when each region is replaced by the baseline image.

    Returns
    -------
    numpy.ndarray
        ``(n_subjects, n_regions)``: projection(x) - projection(x with region r from baseline);
        positive when the region pushes the subject along ``u``.
    """
    changes = region_rep_changes(model, volumes, baseline, labels, region_ids, batch_size)
    u = _directions(directions, len(volumes)).numpy()
    return np.einsum("nrd,nd->nr", changes, u)
