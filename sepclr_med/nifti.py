"""NIfTI images on a voxel grid (nibabel only: importing this module does not load torch)."""

from __future__ import annotations

import numpy as np


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
