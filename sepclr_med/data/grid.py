"""Voxel grids: the reference grid of a cohort, made canonical (RAS+) and resized."""

from __future__ import annotations

import numpy as np


def canonical_grid(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """The same field of view with axes reordered and flipped to RAS+ (like
    :func:`nibabel.as_closest_canonical`, without touching any voxel)."""
    from nibabel import orientations as ornt

    current = ornt.io_orientation(affine)
    to_ras = ornt.ornt_transform(current, ornt.axcodes2ornt("RAS"))
    new_shape = tuple(int(shape[int(ax)]) for ax in np.argsort(to_ras[:, 0]))
    new_affine = affine @ ornt.inv_ornt_aff(to_ras, shape)
    return new_affine, new_shape


def resize_grid(affine: np.ndarray, shape: tuple[int, ...], voxel_size: float) -> tuple[np.ndarray, tuple[int, ...]]:
    """A grid with isotropic ``voxel_size`` covering the same field of view, same centre."""
    affine = np.asarray(affine, dtype=float)
    old = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    new_shape = tuple(int(np.ceil(s * o / voxel_size)) for s, o in zip(shape, old, strict=True))
    rot = affine[:3, :3] / old * voxel_size
    centre = affine[:3, :3] @ ((np.asarray(shape) - 1) / 2) + affine[:3, 3]
    new = np.eye(4)
    new[:3, :3] = rot
    new[:3, 3] = centre - rot @ ((np.asarray(new_shape) - 1) / 2)
    return new, new_shape


def crop_grid(affine, shape: tuple[int, ...], size: tuple[int, ...]) -> tuple[np.ndarray, tuple[int, ...]]:
    """The grid of a centre crop (or zero pad) of ``shape`` to ``size``, with its own affine.

    The start voxel follows MONAI's ``ResizeWithPadOrCrop`` (pad ``(size - n) // 2`` before, or
    crop from ``n // 2 - size // 2``), so an image resampled onto this grid has the voxels that
    resampling onto the full grid and then cropping would give, at the world positions they have.
    """
    affine = np.asarray(affine, dtype=float)
    start = np.array([n // 2 - s // 2 if s <= n else -((s - n) // 2) for n, s in zip(shape, size, strict=True)])
    new = affine.copy()
    new[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    return new, tuple(int(s) for s in size)
