"""The voxel grid a cohort lives on: shape and affine together, from cohort to report.

One :class:`Grid` carries the space of the model's input. Every change of grid (canonical axes,
another voxel size, a crop) is a method returning a new grid with its own affine, so an image made
on a grid always has the world positions of the voxels it holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Grid:
    """A voxel grid: ``shape`` voxels, voxel ``(i, j, k)`` at world ``affine @ (i, j, k, 1)`` mm.

    Parameters
    ----------
    affine : array-like
        4 x 4 voxel-to-world matrix (mm).
    shape : tuple of int
        Voxels along each axis.
    """

    affine: np.ndarray
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        affine = np.array(self.affine, dtype=float)  # a copy: the caller's array is never shared
        if affine.shape != (4, 4):
            raise ValueError(f"a grid's affine is 4 x 4, not {affine.shape}")
        affine.setflags(write=False)
        object.__setattr__(self, "affine", affine)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @classmethod
    def of(cls, img) -> Grid:
        """The grid of a NIfTI image (its first three axes), the affine rounded to 0.001 mm so
        that float noise in headers does not make two scans' grids differ."""
        return cls(np.round(np.asarray(img.affine, dtype=float), 3) + 0.0, tuple(img.shape[:3]))  # + 0.0: no -0.0

    @property
    def voxel_size(self) -> tuple[float, ...]:
        """Voxel edge lengths in mm, per axis."""
        return tuple(float(v) for v in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    def describe(self) -> str:
        """Short human description: shape and voxel size."""
        shape = "x".join(map(str, self.shape))
        vox = "x".join(f"{v:g}" for v in np.round(self.voxel_size, 3))
        return f"shape {shape}, voxels {vox} mm"

    def canonical(self) -> Grid:
        """The same field of view with axes reordered and flipped to RAS+ (like
        :func:`nibabel.as_closest_canonical`, without touching any voxel)."""
        from nibabel import orientations as ornt

        current = ornt.io_orientation(self.affine)
        to_ras = ornt.ornt_transform(current, ornt.axcodes2ornt("RAS"))
        shape = tuple(int(self.shape[int(ax)]) for ax in np.argsort(to_ras[:, 0]))
        return Grid(self.affine @ ornt.inv_ornt_aff(to_ras, self.shape), shape)

    def resized(self, voxel_size: float) -> Grid:
        """A grid of isotropic ``voxel_size`` mm covering the same field of view, same centre."""
        old = np.asarray(self.voxel_size)
        shape = tuple(int(np.ceil(s * o / voxel_size)) for s, o in zip(self.shape, old, strict=True))
        rot = self.affine[:3, :3] / old * voxel_size
        centre = self.affine[:3, :3] @ ((np.asarray(self.shape) - 1) / 2) + self.affine[:3, 3]
        new = np.eye(4)
        new[:3, :3] = rot
        new[:3, 3] = centre - rot @ ((np.asarray(shape) - 1) / 2)
        return Grid(new, shape)

    def cropped(self, size: tuple[int, ...]) -> Grid:
        """The grid of a centre crop (or zero pad) to ``size``, with its own affine.

        The start voxel follows MONAI's ``ResizeWithPadOrCrop`` (pad ``(size - n) // 2`` before, or
        crop from ``n // 2 - size // 2``), so an image resampled onto this grid has the voxels that
        resampling onto the full grid and then cropping would give, at the world positions they have.
        """
        start = np.array(
            [n // 2 - s // 2 if s <= n else -((s - n) // 2) for n, s in zip(self.shape, size, strict=True)]
        )
        return self.window(tuple(start), tuple(size))

    def window(self, start: tuple[int, ...], size: tuple[int, ...]) -> Grid:
        """The grid of the block of ``size`` voxels starting at voxel ``start`` (which may lie
        outside: zeros there), with its own affine: voxel ``v`` of the window is voxel
        ``start + v`` of this grid."""
        new = self.affine.copy()
        new[:3, 3] = self.affine[:3, :3] @ np.asarray(start, dtype=float) + self.affine[:3, 3]
        return Grid(new, tuple(int(s) for s in size))

    def image(self, data: np.ndarray, dtype=np.float32, code: int = 2):
        """A NIfTI image of ``data`` (shape :attr:`shape`) on this grid; see
        :func:`sepclr_med.io.nifti.grid_image`."""
        from sepclr_med.io.nifti import grid_image

        data = np.asarray(data)
        if data.shape[:3] != self.shape:
            raise ValueError(f"data of shape {data.shape} is not on a grid of shape {self.shape}")
        return grid_image(data, self.affine, dtype=dtype, code=code)

    def _key(self) -> tuple:
        return self.shape, tuple(np.round(self.affine, 3).ravel() + 0.0)

    def __eq__(self, other: object) -> bool:
        """Same shape and the same affine to 0.001 mm."""
        if not isinstance(other, Grid):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())
