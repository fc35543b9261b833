"""Two augmented views of a whole batch, made where the batch lives (CPU or GPU).

The same augmentations as :meth:`AugmentConfig.compose` (MONAI's ``RandAffined``,
``RandGaussianNoised``, ``RandGaussianSmoothd``, ``RandCoarseDropoutd``), drawn the way MONAI
draws them, but applied to a ``(B, 1, *shape)`` batch at once on the model's device:

- affine: MONAI's own matrices (``create_rotate``/``create_translate``/``create_scale``, composed
  as its ``AffineGrid``), sampled by ``torch.nn.functional.affine_grid``/``grid_sample``;
- noise: per-subject generators on the device;
- blur: MONAI's erf Gaussian kernels (``gaussian_1d``), one separable grouped convolution;
- cutout: a box mask built by broadcasting.

Every draw of subject ``index`` in ``epoch`` comes from ``(seed, epoch, index, view)`` only, so a
view does not depend on the batch it falls in (to float rounding: the blur's kernel width follows
the batch's largest sigma), the worker or the rank; the same batch gives the same views bit for
bit, so runs resume exactly. The
noise stream of a CPU and of a CUDA generator differ: one device gives the same views every time,
two devices give equally distributed ones. Per-sample MONAI views on the CPU cost 196 ms each at
1.5 mm (issue 16); ``benchmarks/throughput.py`` measures these.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.layers.convutils import gaussian_1d
from monai.transforms.utils import create_rotate, create_scale, create_translate

from sepclr_med.data.augment import AugmentConfig

UNSUPPORTED = ("intensity_prob", "bias_prob", "flip_prob")  # off by default; the MONAI views keep them


@dataclass(frozen=True)
class ViewDraws:
    """Random parameters of one view of each subject of a batch (NumPy, on the host).

    ``affine`` holds 4 x 4 output-to-input matrices in centred voxel coordinates (MONAI's
    convention), the identity where the affine was not drawn; ``noise_std`` is 0, ``blur_sigma``
    NaN and ``cutout_start`` -1 where those steps were not drawn.
    """

    affine: np.ndarray  # (B, 4, 4)
    noise_std: np.ndarray  # (B,)
    noise_seed: np.ndarray  # (B,)
    blur_sigma: np.ndarray  # (B, 3)
    cutout_start: np.ndarray  # (B, 3)


class BatchViews:
    """Make two augmented views of a batch on its own device.

    Parameters
    ----------
    config : AugmentConfig
        Strengths and probabilities (the same as the MONAI views').
    spatial_shape : tuple of int
        Shape of the volumes (the cutout's size follows it, as in :meth:`AugmentConfig.compose`).
    seed : int
        Base seed: views are a function of ``(seed, epoch, index, view)``.
    """

    def __init__(self, config: AugmentConfig, spatial_shape: Sequence[int], seed: int = 0) -> None:
        used = [name for name in UNSUPPORTED if getattr(config, name) > 0]
        if used:
            raise ValueError(f"batch views do not implement {used}; set them to 0 or use AugmentConfig.compose")
        self.config = config
        self.spatial_shape = tuple(int(s) for s in spatial_shape)
        self.cutout_size = np.array([max(1, int(round(s * config.cutout_fraction))) for s in self.spatial_shape])
        self.seed = int(seed)

    # -- draws (host) ------------------------------------------------------------------------
    def draw(self, indices: Sequence[int], epoch: int, view: int) -> ViewDraws:
        """The random parameters of ``view`` (0 or 1) of subjects ``indices`` in ``epoch``."""
        rows = [self._draw_one(np.random.default_rng([self.seed, epoch, int(i), view])) for i in indices]
        return ViewDraws(*(np.stack(column) for column in zip(*rows, strict=True)))

    def _draw_one(self, rng: np.random.Generator) -> tuple:
        c = self.config
        rad = np.deg2rad(c.rotate_deg)
        # every draw is made whatever the gates say: one subject's stream never shifts
        gates = rng.uniform(size=4) < (c.affine_prob, c.noise_prob, c.blur_prob, c.cutout_prob)
        angles, shifts = rng.uniform(-rad, rad, 3), rng.uniform(-c.translate_vox, c.translate_vox, 3)
        factors = 1.0 + rng.uniform(-c.scale, c.scale, 3)
        std, noise_seed = rng.uniform(0.0, c.noise_std), rng.integers(2**62)
        sigma = rng.uniform(c.blur_sigma[0], c.blur_sigma[1], 3)
        start = np.array(
            [rng.integers(0, n - k + 1) for n, k in zip(self.spatial_shape, self.cutout_size, strict=True)]
        )
        affine = np.eye(4)
        if gates[0]:  # MONAI's AffineGrid order: rotate @ translate @ scale
            rotate, translate, scale = (
                np.asarray(make(3, values.tolist()), dtype=float)
                for make, values in ((create_rotate, angles), (create_translate, shifts), (create_scale, factors))
            )
            affine = rotate @ translate @ scale
        return (
            affine,
            std if gates[1] else 0.0,
            noise_seed,
            sigma if gates[2] else np.full(3, np.nan),
            start if gates[3] else np.full(3, -1),
        )

    # -- application (device) ----------------------------------------------------------------
    def __call__(self, x: torch.Tensor, indices: Sequence[int], epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Two views of ``x`` (``(B, 1, *shape)``, float) for subjects ``indices`` in ``epoch``."""
        return self.apply(x, self.draw(indices, epoch, 0)), self.apply(x, self.draw(indices, epoch, 1))

    def apply(self, x: torch.Tensor, draws: ViewDraws) -> torch.Tensor:
        """One view: affine, noise, blur and cutout of ``x`` with ``draws``; ``x`` is not changed."""
        if x.ndim != 5 or x.shape[1] != 1 or tuple(x.shape[2:]) != self.spatial_shape:
            raise ValueError(f"expected a (B, 1, {self.spatial_shape}) batch, not {tuple(x.shape)}")
        x = x.float()
        x = resample_affine(x, draws.affine)
        x = add_noise(x, draws.noise_std, draws.noise_seed)
        x = gaussian_blur(x, draws.blur_sigma)
        return cut_out(x, draws.cutout_start, self.cutout_size)


def resample_affine(x: torch.Tensor, affine: np.ndarray) -> torch.Tensor:
    """Bilinear resampling, zeros outside: output voxel ``p`` takes input ``affine @ p`` (centred
    voxel coordinates, as MONAI's ``Affine``); identity rows are passed through untouched."""
    moved = ~np.all(np.isclose(affine, np.eye(4)), axis=(1, 2))
    if not moved.any():
        return x
    shape = np.array(x.shape[2:], dtype=float)
    # centred voxels -> normalised coordinates (align_corners=False: n = 2 c / N), axes reversed for torch
    to_norm = np.diag([*(2.0 / shape), 1.0])
    theta = to_norm @ affine[moved] @ np.linalg.inv(to_norm)
    order = [2, 1, 0]
    theta = np.concatenate([theta[:, order][:, :, order], theta[:, order, 3:4]], axis=2)
    theta_t = torch.as_tensor(theta, dtype=x.dtype).to(x.device, non_blocking=True)
    index = torch.as_tensor(np.flatnonzero(moved)).to(x.device, non_blocking=True)
    part = x.index_select(0, index)
    grid = F.affine_grid(theta_t, list(part.shape), align_corners=False)
    warped = F.grid_sample(part, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x.index_copy(0, index, warped)


def add_noise(x: torch.Tensor, std: np.ndarray, seeds: np.ndarray) -> torch.Tensor:
    """Add zero-mean Gaussian noise of ``std[b]`` to sample ``b`` (none where ``std`` is 0); each
    sample's noise comes from its own generator seeded with ``seeds[b]``."""
    if not (std > 0).any():
        return x
    noise = torch.zeros_like(x)
    for b in np.flatnonzero(std > 0):
        generator = torch.Generator(device=x.device).manual_seed(int(seeds[b]))
        noise[b] = torch.randn(x.shape[1:], generator=generator, device=x.device, dtype=x.dtype) * float(std[b])
    return x + noise


def gaussian_blur(x: torch.Tensor, sigma: np.ndarray) -> torch.Tensor:
    """Separable Gaussian blur with per-sample, per-axis ``sigma`` (voxels; NaN rows: no blur),
    MONAI's erf kernels truncated at 4 sigma, zero padding; one grouped convolution per axis."""
    blurred = np.flatnonzero(~np.isnan(sigma).any(axis=1))
    if not len(blurred):
        return x
    index = torch.as_tensor(blurred).to(x.device, non_blocking=True)
    part = x.index_select(0, index).transpose(0, 1)  # (1, n, *shape): the samples as channels
    n = len(blurred)
    for axis in range(3):
        kernels = [gaussian_1d(torch.tensor(float(s)), truncated=4.0, approx="erf") for s in sigma[blurred, axis]]
        radius = max(len(k) for k in kernels) // 2
        weight = torch.zeros(n, 2 * radius + 1, dtype=torch.float64)
        for row, k in enumerate(kernels):
            weight[row, radius - len(k) // 2 : radius + len(k) // 2 + 1] = k
        size = [1, 1, 1]
        size[axis] = 2 * radius + 1
        padding = [0, 0, 0]
        padding[axis] = radius
        weight_t = weight.to(part.dtype).reshape(n, 1, *size).to(x.device, non_blocking=True)
        part = F.conv3d(part, weight_t, padding=tuple(padding), groups=n)
    return x.index_copy(0, index, part.transpose(0, 1))


def cut_out(x: torch.Tensor, start: np.ndarray, size: np.ndarray) -> torch.Tensor:
    """Zero a box of ``size`` voxels starting at ``start[b]`` in sample ``b`` (rows of -1: none)."""
    if not (start >= 0).all(axis=1).any():
        return x
    keep = torch.ones(x.shape[0], *x.shape[2:], dtype=torch.bool, device=x.device)
    starts = torch.as_tensor(start).to(x.device, non_blocking=True)
    inside = []
    for axis, n in enumerate(x.shape[2:]):
        coords = torch.arange(n, device=x.device)
        low = starts[:, axis : axis + 1]
        inside.append((coords >= low) & (coords < low + int(size[axis])) & (low >= 0))
    box = inside[0][:, :, None, None] & inside[1][:, None, :, None] & inside[2][:, None, None, :]
    keep &= ~box
    return x * keep.unsqueeze(1)
