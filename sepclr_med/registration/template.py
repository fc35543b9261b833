"""The registration target: the MNI152 template nilearn ships, on a chosen grid."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from sepclr_med.io.grid import Grid

# nilearn's template is the ICBM152 2009 nonlinear asymmetric template, release a (its docs); the
# BIDS name of that space.
TEMPLATE_SPACE = "MNI152NLin2009aAsym"


@dataclass(frozen=True)
class Template:
    """The skull-stripped MNI152 T1 template and its brain mask on an isotropic grid.

    Parameters
    ----------
    resolution : float
        Voxel size in mm of the output grid (1.5 mm gives 121 x 145 x 121 voxels, the grid of
        published VBM studies at that resolution).
    """

    resolution: float = 1.5

    @property
    def space(self) -> str:
        """The BIDS ``space-`` entity of images on this template."""
        return TEMPLATE_SPACE

    def images(self):
        """``(t1, brain_mask)`` as nibabel images on :attr:`grid` (float32 T1 scaled to a brain
        median of 1, uint8 mask); made from nilearn's files, nothing is downloaded."""
        return _template_images(float(self.resolution))

    @property
    def grid(self) -> Grid:
        """The output grid."""
        return Grid.of(self.images()[0])


@lru_cache(maxsize=4)
def _template_images(resolution: float):
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask, load_mni152_template
    from nilearn.image import resample_img

    t1 = load_mni152_template(resolution=1)
    mask = load_mni152_brain_mask(resolution=1)
    if resolution != 1.0:
        grid = Grid.of(t1).resized(resolution)
        kw = {"target_affine": grid.affine, "target_shape": grid.shape, "force_resample": True, "copy_header": True}
        t1 = resample_img(t1, interpolation="continuous", **kw)
        mask = resample_img(mask, interpolation="nearest", **kw)
    inside = np.asarray(mask.dataobj) > 0.5
    data = np.asarray(t1.dataobj, dtype=np.float32)
    data = np.where(inside, data / np.median(data[inside]), 0.0).astype(np.float32)
    grid = Grid.of(t1)
    return grid.image(data, code=4), nib.Nifti1Image(inside.astype(np.uint8), grid.affine)
