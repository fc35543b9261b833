"""NIfTI images on a voxel grid (nibabel only: importing this module does not load torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np

if TYPE_CHECKING:
    from nibabel.spatialimages import SpatialImage


def grid_image(data: np.ndarray, affine, dtype=np.float32, code: int = 2):
    """A NIfTI image of ``data`` on a grid (sform and qform set, mm units).

    ``code`` is the NIfTI space code: 2 = aligned to another file's space, 4 = MNI152.
    """
    import nibabel as nib

    affine = np.asarray(affine, dtype=float)
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code=code)
    img.set_sform(affine, code=code)
    return img


def load_image(path) -> SpatialImage:
    """``nibabel.load`` of an image file, typed as the spatial image (affine, shape, ``dataobj``)
    every NIfTI file gives: nibabel annotates ``load`` with its base class, which has none of them."""
    import nibabel as nib

    return cast("SpatialImage", nib.load(str(path)))
