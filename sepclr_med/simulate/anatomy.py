"""Real anatomy for simulation: the MNI152 gray-matter template on a chosen grid, plus the
smooth random fields (deformations, bias fields) that make individual subjects."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass
class TemplateSpace:
    """The MNI152 2009 GM template and brain mask, on a grid cropped to the brain.

    Attributes
    ----------
    gm : numpy.ndarray
        Gray-matter probability (float32, 0..1).
    mask : numpy.ndarray
        Brain mask (bool).
    affine : numpy.ndarray
        4x4 voxel-to-MNI affine of the grid.
    resolution_mm : float
        Isotropic voxel size.
    """

    gm: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    resolution_mm: float

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid shape."""
        return tuple(self.gm.shape)

    def image(self, data: np.ndarray, dtype=np.float32):
        """A NIfTI image of ``data`` on this grid (qform and sform set, mm units, MNI152 space)."""
        from sepclr_med.io.nifti import grid_image

        return grid_image(data, self.affine, dtype, code=4)


def load_template_space(resolution_mm: float = 4.0, margin_vox: int = 1) -> TemplateSpace:
    """The nilearn-shipped MNI152 GM template resampled to ``resolution_mm`` and cropped.

    Parameters
    ----------
    resolution_mm : float
        Isotropic voxel size; 2 is the template's own grid (no interpolation).
    margin_vox : int
        Voxels kept around the brain mask's bounding box.

    Returns
    -------
    TemplateSpace
    """
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_gm_template
    from nilearn.image import resample_img

    gm_img = load_mni152_gm_template(resolution=2)
    mask_img = load_mni152_brain_mask(resolution=2)
    mask_img = nib.Nifti1Image(np.asarray(mask_img.dataobj, dtype=np.float32), mask_img.affine)
    if resolution_mm != 2.0:
        affine = np.diag([resolution_mm] * 3 + [1.0])
        affine[:3, 3] = gm_img.affine[:3, 3]
        shape = tuple(int(np.ceil(s * 2.0 / resolution_mm)) for s in gm_img.shape)
        gm_img = resample_img(
            gm_img,
            target_affine=affine,
            target_shape=shape,
            interpolation="continuous",
            force_resample=True,
            copy_header=True,
        )
        with warnings.catch_warnings():  # linear on purpose: thresholded at 0.5 below
            warnings.simplefilter("ignore", UserWarning)
            mask_img = resample_img(
                mask_img,
                target_affine=affine,
                target_shape=shape,
                interpolation="linear",
                force_resample=True,
                copy_header=True,
            )
    gm = np.clip(np.asarray(gm_img.get_fdata(), dtype=np.float32), 0, 1)
    mask = np.asarray(mask_img.get_fdata()) > 0.5
    lo = np.maximum(np.argwhere(mask).min(axis=0) - margin_vox, 0)
    hi = np.minimum(np.argwhere(mask).max(axis=0) + margin_vox + 1, mask.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    affine = gm_img.affine.copy()
    affine[:3, 3] = gm_img.affine[:3, :3] @ lo + gm_img.affine[:3, 3]
    return TemplateSpace(gm[crop] * mask[crop], mask[crop], affine, float(resolution_mm))


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], sigma_vox: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_vox, mode="wrap")
    return field / (field.std() + 1e-12)


def warp(
    volume: np.ndarray,
    rng: np.random.Generator,
    *,
    amplitude_vox: float,
    sigma_vox: float,
    scale: float,
    center: np.ndarray,
    order: int = 1,
) -> np.ndarray:
    """Resample ``volume`` through a smooth random deformation and an isotropic scaling.

    The output voxel ``x`` takes the input at ``center + (x - center) / scale + d(x)``, where
    each component of ``d`` is a smooth Gaussian field of typical size ``amplitude_vox``.
    """
    grid = np.indices(volume.shape, dtype=np.float32)
    coords = [
        center[i] + (grid[i] - center[i]) / scale + amplitude_vox * smooth_field(rng, volume.shape, sigma_vox)
        for i in range(3)
    ]
    return ndimage.map_coordinates(volume, coords, order=order, mode="constant", cval=0.0)


def bias_field(rng: np.random.Generator, shape: tuple[int, ...], strength: float) -> np.ndarray:
    """Smooth multiplicative field ``exp(strength * p(x))``, ``p`` a random quadratic polynomial."""
    axes = [np.linspace(-1, 1, n, dtype=np.float32) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    terms = [x, y, z, x * y, x * z, y * z, x**2 - 1 / 3, y**2 - 1 / 3, z**2 - 1 / 3]
    coeffs = rng.standard_normal(len(terms)) / np.sqrt(len(terms))
    poly = sum(c * t for c, t in zip(coeffs, terms, strict=True))
    return np.exp(strength * poly / (poly.std() + 1e-12)).astype(np.float32)
