"""Voxel saliency of salient directions, batched over subjects.

For a subject ``x`` and a unit direction ``u`` in the salient space, the explained quantity is the
projection ``<u, s_rep(x)>``. Attributions are taken against healthy references:

- ``"eg"``: expected gradients (Captum ``GradientShap``): integrated gradients averaged over
  baselines drawn from the controls' own images, each path sampled at a random point; in
  expectation they sum to ``<u, s(x)> - E_c <u, s(c)>``. Every reference is a real brain, so the
  comparison stays on the data; the controls' mean image is smoother than any brain, and
  ``x - mean`` carries that difference at every sharp boundary (ventricles, caudate), which
  integrated gradients then attribute;
- ``"ig"``: integrated gradients (Captum) from the controls' mean image,
  ``(x - baseline) * mean gradient along the path``; they sum to ``<u, s(x)> - <u, s(baseline)>``
  (completeness);
- ``"grad"``: the plain gradient of the projection at ``x``.

Each subject may have its own direction (e.g. its deviation from the controls' mean).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import torch

from sepclr_med.models.inference import inference_copy_of

log = logging.getLogger(__name__)
MAX_VOLUMES = 64  # volumes in one forward-backward pass on the CPU (path points or samples x subjects)
GPU_SHARE = 0.6  # on CUDA a pass may take this share of the free memory (measured per volume, see volumes_per_pass)
PRECISIONS = ("float32", "bfloat16")


class Projection(torch.nn.Module):
    """``x -> <u_i, s_rep(x_i)>`` for a batch, with one direction per row (or one shared)."""

    def __init__(self, model, precision: str = "float32") -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.encoder = model.salient_encoder
        self.precision = precision

    def forward(self, x: torch.Tensor, directions: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            rep = self.encoder(x)
        return (rep.float() * directions).sum(dim=1)


def volumes_per_pass(
    projection: Projection, volumes: torch.Tensor, directions: torch.Tensor, device: torch.device
) -> int:
    """How many volumes one forward-backward pass may hold: ``MAX_VOLUMES`` on the CPU; on CUDA,
    measured: the peak memory of a pass over 2 volumes (along the first of ``directions``),
    scaled to ``GPU_SHARE`` of the free memory."""
    if device.type != "cuda":
        return MAX_VOLUMES
    probe = volumes[:1].float().to(device).expand(2, *volumes.shape[1:]).clone().requires_grad_()
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    u = directions[:1].expand(2, -1)
    (grad,) = torch.autograd.grad(projection(probe, u).sum(), probe)
    per_volume = max((torch.cuda.max_memory_allocated(device) - before) / 2, 1)
    del probe, grad
    free, _ = torch.cuda.mem_get_info(device)
    capacity = int(max(2, min(4096, GPU_SHARE * free // per_volume)))
    log.debug("attribution passes: %.0f MiB per volume, %d volumes per pass", per_volume / 2**20, capacity)
    return capacity


def _device_of(module) -> torch.device:
    """Where a module's parameters are (CPU for one without parameters)."""
    first = next(module.parameters(), None) if isinstance(module, torch.nn.Module) else None
    return first.device if first is not None else torch.device("cpu")


def _directions(directions: np.ndarray | torch.Tensor, n: int) -> torch.Tensor:
    u = torch.as_tensor(np.asarray(directions), dtype=torch.float32)
    return u.expand(n, -1).contiguous() if u.ndim == 1 else u


def attribute(
    model,
    volumes: torch.Tensor,
    directions,
    baseline: torch.Tensor,
    *,
    method: str = "eg",
    n_steps: int = 24,
    batch_size: int = 8,
    seed: int = 0,
    precision: str = "float32",
) -> np.ndarray:
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
        ``"eg"``: ``(m, 1, X, Y, Z)`` reference volumes (the controls); ``"ig"`` and ``"grad"``:
        ``(1, X, Y, Z)`` or ``(1, 1, X, Y, Z)`` reference image (the controls' mean), or a batch
        of references, whose mean is taken.
    method : {"eg", "ig", "grad"}
        Expected gradients, integrated gradients or plain gradients.
    n_steps : int
        The budget, in forward-backward passes per subject: samples (baseline, path point) of
        ``"eg"``, integration steps of ``"ig"``.
    batch_size : int
        Subjects per call; internal passes hold at most :func:`volumes_per_pass` volumes
        (``MAX_VOLUMES`` on the CPU, sized to the free memory on CUDA; then ``batch_size`` grows to fill it).
    seed : int
        Seed of the draws of ``"eg"`` (the global NumPy and torch states are restored afterwards).
    precision : {"float32", "bfloat16"}
        The encoder's forward and backward under bfloat16 autocast (inputs, directions and maps
        stay float32); docs/explain.md states how far bf16 maps are from float32 ones.

    Returns
    -------
    numpy.ndarray
        ``(n, X, Y, Z)`` float32 attributions.
    """
    if method not in ("eg", "ig", "grad"):
        raise ValueError(f"unknown attribution method {method!r} (eg, ig or grad)")
    with inference_copy_of(model):  # eval mode, no parameter gradients; the caller's model restored after
        projection = Projection(model, precision)
        return _attribute(projection, volumes, directions, baseline, method, n_steps, batch_size, seed)


def _attribute(
    projection, volumes, directions, baseline, method: str, n_steps: int, batch_size: int, seed: int
) -> np.ndarray:
    from captum.attr import IntegratedGradients, Saliency

    device = _device_of(projection)  # volumes stay where they are; each batch goes to the model
    u = _directions(directions, len(volumes)).to(device)
    capacity = volumes_per_pass(projection, volumes, u, device)
    if device.type == "cuda":  # sized to the device: as many subjects per pass as fit
        batch_size = max(batch_size, capacity // n_steps)
    references = baseline.reshape(-1, *volumes.shape[1:]).float().to(device)
    if method == "eg":
        if len(references) < 2:
            raise ValueError(
                "expected gradients draw baselines from several reference volumes (the controls); "
                "with a single baseline image use method='ig'"
            )
        batch_size = max(1, min(batch_size, capacity // n_steps))
        return _expected_gradients(projection, volumes, u, references, n_steps, batch_size, seed, capacity)
    base = references.mean(dim=0, keepdim=True)
    maps = []
    for start in range(0, len(volumes), batch_size):
        x = volumes[start : start + batch_size].float().to(device)
        ub = u[start : start + batch_size]
        if method == "ig":
            a = IntegratedGradients(projection).attribute(
                x,
                baselines=base.expand_as(x),
                additional_forward_args=(ub,),
                n_steps=n_steps,
                internal_batch_size=min(capacity, len(x) * n_steps),
            )
        else:
            a = Saliency(projection).attribute(x.clone().requires_grad_(), additional_forward_args=(ub,), abs=False)
        maps.append(a.detach()[:, 0].cpu().numpy().astype(np.float32))
    return np.concatenate(maps)


def _expected_gradients(
    projection, volumes, u, references, n_samples: int, batch_size: int, seed: int, capacity: int = MAX_VOLUMES
) -> np.ndarray:
    """Captum ``GradientShap`` (no input noise) in chunks of at most ``capacity`` volumes, seeded.

    Captum draws the baselines and path points from NumPy's global generator (and calls torch's
    for its zero-width noise): both states are restored afterwards.
    """
    from captum.attr import GradientShap

    explainer = GradientShap(projection)
    state = np.random.get_state()
    np.random.seed(seed)
    maps = []
    try:
        with torch.random.fork_rng(devices=[]):
            for start in range(0, len(volumes), batch_size):
                x = volumes[start : start + batch_size].float().to(references.device)
                ub = u[start : start + batch_size]
                total, left = torch.zeros_like(x), n_samples
                while left:
                    k = min(left, max(1, capacity // len(x)))
                    total += (
                        k
                        * explainer.attribute(
                            x, baselines=references, n_samples=k, stdevs=0.0, additional_forward_args=(ub,)
                        ).detach()
                    )
                    left -= k
                maps.append((total / n_samples)[:, 0].cpu().numpy().astype(np.float32))
    finally:
        np.random.set_state(state)
    return np.concatenate(maps)


def group_attributions(
    model,
    volumes: torch.Tensor,
    groups: dict[str, np.ndarray],
    directions: dict[str, np.ndarray],
    baseline: torch.Tensor,
    *,
    method: str = "eg",
    n_steps: int = 24,
    precision: str = "float32",
) -> Iterator[tuple[str, np.ndarray]]:
    """Each group's members' maps, all along the group's shared direction (yielded group by group).

    Summarising members' maps along their *own* deviation directions would not cancel their
    idiosyncratic deviations: along its own direction, a subject's deviation in any dimension
    contributes with the same sign as itself, so every such dimension adds up. Along the group's
    direction (controls' mean -> group mean) only what the members share does.

    Parameters
    ----------
    model, volumes, baseline, method, n_steps, precision
        As for :func:`attribute`.
    groups : dict of str -> numpy.ndarray
        Boolean row masks over ``volumes``; disjoint groups share one batched pass.
    directions : dict of str -> numpy.ndarray
        Unit direction ``(d,)`` of each group.

    Yields
    ------
    name, numpy.ndarray
        Each group's ``(n_members, X, Y, Z)`` maps, members in the order of ``volumes``; disjoint
        groups are computed together, and only one pass is held in memory.
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
    for part in passes:
        rows = np.zeros((len(volumes), len(next(iter(directions.values())))), np.float32)
        for name, mask in part.items():
            rows[mask] = directions[name]
        covered = np.flatnonzero(np.any(list(part.values()), axis=0))
        maps = attribute(
            model, volumes[covered], rows[covered], baseline, method=method, n_steps=n_steps, precision=precision
        )
        for name, mask in part.items():
            yield name, maps[mask[covered]]


@torch.no_grad()
def region_rep_changes(
    model,
    volumes: torch.Tensor,
    baseline: torch.Tensor,
    labels: np.ndarray,
    region_ids: list[int],
    batch_size: int = 32,
) -> np.ndarray:
    """Change of the salient rep when each region is replaced by the baseline image.

    Returns
    -------
    numpy.ndarray
        ``(n_subjects, n_regions, d)``: ``s_rep(x) - s_rep(x with region r from baseline)``. The
        drop along any direction ``u`` is its projection on ``u`` (the projection is linear in ``u``),
        so one pass serves every direction.

    Notes
    -----
    The values are Captum's ``FeatureAblation(feature_mask=labels, baselines=baseline)`` of
    :class:`Projection` (max difference 5e-7, ``tests/test_library_equivalents.py``), kept
    hand-written because Captum ablates for one scalar output: each direction set is another full
    pass (and the background label another region). Explain needs the patients' own directions
    and one per group; with 3 direction sets this is 3.3x faster (1.01 s vs 3.33 s, 8 subjects,
    24 regions, 40 x 48 x 40, one thread, AMD EPYC: ``benchmarks/library_equivalents.py``).
    """
    device = _device_of(model.salient_encoder)
    base = baseline.reshape(volumes.shape[1:]).float().to(device)
    masks = [torch.as_tensor(labels == rid, device=device) for rid in region_ids]
    out = []
    with inference_copy_of(model.salient_encoder) as encoder:
        for start in range(0, len(volumes), batch_size):
            x = volumes[start : start + batch_size].float().to(device)
            reference = encoder(x)
            drops = torch.stack([reference - encoder(torch.where(mask, base, x)) for mask in masks], dim=1)
            out.append(drops.cpu().numpy())
    return np.concatenate(out).astype(np.float32)


def region_ablation(
    model,
    volumes: torch.Tensor,
    directions,
    baseline: torch.Tensor,
    labels: np.ndarray,
    region_ids: list[int],
    batch_size: int = 32,
) -> np.ndarray:
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
